//! The scripts of completion-callback deliveries: claiming the due ones
//! with a hold, and recording an attempt under a claim's token. Due times
//! and holds are kept by the server's clock, as leases are.

/// Lua: `keep_until(key, at)`, a key's expiry moved to no earlier than `at`
/// (ms by the server's clock `now`); a key without an expiry, or gone, is
/// left alone.
macro_rules! lua_keep_until {
    () => {
        "local function keep_until(key, now, at)
  local t = redis.call('PTTL', key)
  if t >= 0 and now + t < at then redis.call('PEXPIREAT', key, at) end
end
"
    };
}

/// Takes up to `limit` deliveries due by the server's clock, soonest
/// first. A delivery whose job is gone, not ended, or whose callback is no
/// longer pending leaves the set; each other is held (its score moves to
/// now + hold) and its job's keys (hash, idempotency key, owner index) are
/// kept at least hold + TTL from now, its tombstone as long again as its
/// tombstone TTL.
///
/// Returns one array per delivery: the id, then the values of the fields
/// in `ARGV[6..]` (the record's, which carry the callback's attempts: the
/// token).
///
/// KEYS: deliveries. ARGV: job key prefix, limit, hold ms, TTL ms,
/// tombstone TTL ms, then the fields to read.
pub(in crate::store::redis) const CLAIM_DELIVERIES: &str = concat!(
    lua_now!(),
    lua_keep!(),
    lua_keep_until!(),
    r"
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
if #due == 0 then return {} end
local hold, ttl, tomb = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for _, id in ipairs(due) do
  local job = ARGV[1] .. 'job:' .. id
  local f = redis.call('HMGET', job, 'cs', 'st', 'ik', 'ok')
  local st = f[2]
  if f[1] == 'pending' and (st == 'succeeded' or st == 'failed' or st == 'canceled') then
    redis.call('ZADD', KEYS[1], now + hold, id)
    keep_until(job, now, now + hold + ttl)
    if f[3] then keep_until(f[3], now, now + hold + ttl) end
    if f[4] then keep(f[4], hold + ttl) end
    keep_until(ARGV[1] .. 'gone:' .. id, now, now + hold + ttl + tomb)
    local values = redis.call('HMGET', job, unpack(ARGV, 6))
    local row = {id}
    for i = 1, #ARGV - 5 do row[i + 1] = values[i] end
    out[#out + 1] = row
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
if #out > 0 then keep(KEYS[1], hold + ttl) end
return out
"
);

/// Records an attempt at the delivery of an ended job, under the claim
/// whose token is `ARGV[2]`: answers 0 and changes nothing unless the job
/// ended, its callback is pending and its attempts (`cn`, absent: 0) are
/// the token. Then `cn` becomes token + 1 and: `delivered` or `failed` set
/// the state (`cs`) and take the delivery off the set; `retry` keeps it
/// pending, due at `ARGV[4]`, and the job's keys at least TTL past it
/// (its tombstone as long again as its tombstone TTL). Never `u`: a
/// terminal record stays as it ended.
///
/// KEYS: job, deliveries, gone. ARGV: id, token, mode (`delivered`,
/// `failed` or `retry`), due ms (for `retry`), TTL ms, tombstone TTL ms.
pub(in crate::store::redis) const RECORD_DELIVERY: &str = concat!(
    lua_now!(),
    lua_keep!(),
    lua_keep_until!(),
    r"
local f = redis.call('HMGET', KEYS[1], 'cs', 'cn', 'st', 'ik', 'ok')
local st = f[3]
if f[1] ~= 'pending' or (f[2] or '0') ~= ARGV[2] then return 0 end
if st ~= 'succeeded' and st ~= 'failed' and st ~= 'canceled' then return 0 end
redis.call('HSET', KEYS[1], 'cn', tonumber(ARGV[2]) + 1)
if ARGV[3] ~= 'retry' then
  redis.call('HSET', KEYS[1], 'cs', ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
local now = now_ms()
local at = tonumber(ARGV[4])
local until_ms = math.max(at, now) + tonumber(ARGV[5])
redis.call('ZADD', KEYS[2], at, ARGV[1])
keep_until(KEYS[1], now, until_ms)
if f[4] then keep_until(f[4], now, until_ms) end
if f[5] then keep(f[5], until_ms - now) end
keep_until(KEYS[3], now, until_ms + tonumber(ARGV[6]))
keep(KEYS[2], until_ms - now)
return 1
"
);
