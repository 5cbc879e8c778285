//! The scripts of claims: taking a queued job, renewing leases, handing a
//! job back, and sweeping the leases that lapsed. Each deals with many
//! jobs or with a queue, so job keys are built from ids: `ARGV[1]` is the
//! prefix `{ns}:`, a job's hash is `prefix .. 'job:' .. id` and its
//! tombstone `prefix .. 'gone:' .. id`, in the one slot of the namespace.

/// Takes the oldest job of a queue: pops members (oldest first) and passes
/// by those whose job is gone, not `pending` or not waiting, at most 16 per
/// call so that a queue of dead entries never holds Redis long. A job whose
/// next attempt would be past its attempts (`dx`) ends `failed` with
/// `lost`, as any end (`end_job`), and is passed by too. The job taken gets
/// attempt `at + 1`, its lease (by the server's clock) and its times to
/// live pushed back as a running job's.
///
/// Returns `{}` when the queue is empty, `{'again'}` after 16 passed-by
/// entries (the caller calls again), else the id followed by the values of
/// the fields in `ARGV[10..]` (the record's, then the request's).
///
/// KEYS: queue, leases, deliveries. ARGV: job key prefix, lease ms, running TTL ms,
/// queue key prefix, TTL ms, tombstone TTL ms, channel, lost code, out of
/// attempts message, then the fields to read.
pub(in crate::store::redis) const CLAIM: &str = concat!(
    lua_now!(),
    lua_keep!(),
    lua_bump!(),
    lua_end_job!(),
    r"
local now = now_ms()
for _ = 1, 16 do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then return {} end
  local id = popped[1]
  local job = ARGV[1] .. 'job:' .. id
  local f = redis.call('HMGET', job, 'st', 'at', 'w', 'dx', 'dq', 'ik', 'ok')
  if f[1] == 'pending' and f[3] == '1' then
    local at = tonumber(f[2] or '0') + 1
    if at > tonumber(f[4] or '1') then
      end_job(job, ARGV[1] .. 'gone:' .. id, KEYS[2], ARGV[4], id, 'failed', now, ARGV[5], ARGV[6], ARGV[7],
        '', '', '', ARGV[8], ARGV[9], f[5], f[6], KEYS[3])
    else
      redis.call('HSET', job, 'at', at, 'u', bump(redis.call('HGET', job, 'u'), now))
      redis.call('HDEL', job, 'w')
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
      keep(KEYS[2], ARGV[3])
      redis.call('PEXPIRE', job, ARGV[3])
      if f[6] then redis.call('PEXPIRE', f[6], ARGV[3]) end
      if f[7] then keep(f[7], ARGV[3]) end
      local values = redis.call('HMGET', job, unpack(ARGV, 10))
      local out = {id}
      for i = 1, #ARGV - 9 do out[i + 1] = values[i] end
      return out
    end
  end
end
return {'again'}
"
);

/// Renews the leases of many claims: for each claim that holds its job
/// (pending or running), its lease moves to now + lease by the server's
/// clock (put back if it went missing: a held job always has one) and the job's keys (hash, idempotency key, owner index) live a
/// running job's time to live again; answers 1. Any other claim (its job
/// ended, is gone, or another attempt or a sweep took it) changes nothing
/// and answers 0: a renewal never touches another attempt's lease, nor the
/// time to live an end gave.
///
/// KEYS: leases, then the hash of each claim's job (declared: their ids
/// are known). ARGV: job key prefix, lease ms, running TTL ms, then id and
/// attempt pairs, in the order of the hashes.
pub(in crate::store::redis) const RENEW: &str = concat!(
    lua_now!(),
    lua_keep!(),
    lua_held!(),
    r"
local now = now_ms()
local out = {}
local any = false
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local job = KEYS[i / 2]
  local f = redis.call('HMGET', job, 'st', 'at', 'w', 'ik', 'ok')
  local st = f[1]
  if (st == 'pending' or st == 'running') and held_by(f[2], f[3], token) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    redis.call('PEXPIRE', job, ARGV[3])
    if f[4] then redis.call('PEXPIRE', f[4], ARGV[3]) end
    if f[5] then keep(f[5], ARGV[3]) end
    out[#out + 1] = 1
    any = true
  else
    out[#out + 1] = 0
  end
end
if any then keep(KEYS[1], ARGV[3]) end
return out
"
);

/// Hands a durable job its claim holds back to its queue: `pending` again,
/// without a start time or a lease, in its queue at its creation time. Its
/// attempt stays: the next claim counts on from it. Answers 0 and changes
/// nothing when the job ended, is gone, is not durable or the claim does
/// not hold it.
///
/// KEYS: job, leases. ARGV: id, attempt, queue key prefix, running TTL ms.
pub(in crate::store::redis) const RELEASE: &str = concat!(
    lua_now!(),
    lua_keep!(),
    lua_held!(),
    lua_bump!(),
    r"
local f = redis.call('HMGET', KEYS[1], 'st', 'at', 'w', 'dq', 'ik', 'ok')
local st, dq = f[1], f[4]
if st ~= 'pending' and st ~= 'running' then return 0 end
if not held_by(f[2], f[3], ARGV[2]) then return 0 end
if not dq or redis.call('HEXISTS', KEYS[1], 'qm') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'st', 'pending', 'u', bump(redis.call('HGET', KEYS[1], 'u'), now_ms()), 'w', '1')
redis.call('HDEL', KEYS[1], 's')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', ARGV[3] .. dq, redis.call('HGET', KEYS[1], 'c'), ARGV[1])
keep(ARGV[3] .. dq, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
-- The idempotency key and owner index live as long as the job waits: a
-- keyed retry meanwhile finds it rather than making another.
if f[5] then redis.call('PEXPIRE', f[5], ARGV[4]) end
if f[6] then keep(f[6], ARGV[4]) end
return 1
"
);

/// Deals with up to `limit` leases that lapsed by the server's clock: each
/// leaves the set; a job gone or ended is passed by; a durable job with
/// attempts left goes back to its queue (`pending`, no start time); any
/// other ends `failed` with `error.code = "lost"`, exactly as any end
/// (`end_job`). Returns `{requeued, lost, leases looked at}`.
///
/// KEYS: leases, deliveries. ARGV: job key prefix, queue key prefix, TTL ms, tombstone
/// TTL ms, channel, running TTL ms, lost code, lost message, limit.
pub(in crate::store::redis) const SWEEP: &str = concat!(
    lua_now!(),
    lua_keep!(),
    lua_bump!(),
    lua_end_job!(),
    r"
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[9]))
local requeued, lost = 0, 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local job = ARGV[1] .. 'job:' .. id
  local f = redis.call('HMGET', job, 'st', 'dq', 'at', 'dx', 'ik', 'w', 'ok')
  local st, dq = f[1], f[2]
  -- A job waiting in its queue holds no lease: one left behind is stale.
  if (st == 'pending' or st == 'running') and f[6] ~= '1' then
    local at = tonumber(f[3] or '1')
    local dx = tonumber(f[4] or '1')
    if dq and redis.call('HEXISTS', job, 'qm') == 1 and at < dx then
      redis.call('HSET', job, 'st', 'pending', 'u', bump(redis.call('HGET', job, 'u'), now), 'w', '1')
      redis.call('PUBLISH', ARGV[5], '~' .. id)
      redis.call('HDEL', job, 's')
      redis.call('ZADD', ARGV[2] .. dq, redis.call('HGET', job, 'c'), id)
      keep(ARGV[2] .. dq, ARGV[6])
      redis.call('PEXPIRE', job, ARGV[6])
      if f[5] then redis.call('PEXPIRE', f[5], ARGV[6]) end
      if f[7] then keep(f[7], ARGV[6]) end
      requeued = requeued + 1
    else
      end_job(job, ARGV[1] .. 'gone:' .. id, KEYS[1], ARGV[2], id, 'failed', now, ARGV[3], ARGV[4], ARGV[5],
        '', '', '', ARGV[7], ARGV[8], dq, f[5], KEYS[2])
      lost = lost + 1
    end
  end
end
return {requeued, lost, #due}
"
);
