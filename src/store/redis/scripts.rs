//! The Lua scripts of [`RedisStore`](super::RedisStore): every change of
//! state that must be atomic, in one round trip each.

/// Creates a job: its hash, lease and owner-index entry; with an
/// idempotency key, only if the key is free (else returns its holder as
/// `"<id> <fingerprint>"`). Writing the owner index also trims it of the
/// entries too old for their job to exist: the index's time to live is
/// refreshed by every create, so an owner that keeps submitting would
/// otherwise grow it without bound (listing only clears the entries it
/// shows). Members all score 0 and begin with their creation time in 16
/// hex digits, so lexical order is age order and `ZREMRANGEBYLEX - (bound`
/// removes exactly the entries created before the bound.
///
/// Idempotent for one id: a create run again for an id whose hash exists
/// (and, with a key, whose key this id holds for this fingerprint) answers
/// `new` again and changes nothing but the lease of a pending job. That is
/// how a create whose reply was lost (a command timeout while the script
/// ran) is resolved: the store runs it again, rather than answering the
/// client an error and leaving a created job nobody runs.
///
/// KEYS: job, lease, gone, owner index, idempotency key.
/// ARGV: running TTL ms, lease ms, owner-index member, has owner ('1'),
/// has key ('1'), fingerprint, id, trim bound (`(` and a creation time in
/// 16 hex digits), then the hash's field/value pairs.
pub(super) const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1
  and (ARGV[5] ~= '1' or redis.call('GET', KEYS[5]) == ARGV[7] .. ' ' .. ARGV[6]) then
  if redis.call('HGET', KEYS[1], 'st') == 'pending' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
  return 'new'
end
if ARGV[5] == '1' then
  local held = redis.call('GET', KEYS[5])
  if held then return held end
  redis.call('SET', KEYS[5], ARGV[7] .. ' ' .. ARGV[6], 'PX', ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'ik', KEYS[5]) end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'ok', KEYS[4], 'mb', ARGV[3])
  redis.call('ZREMRANGEBYLEX', KEYS[4], '-', ARGV[8])
  redis.call('ZADD', KEYS[4], 0, ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 'new'
";

/// Ends a job (finished, canceled or lost) atomically: its state, stored
/// response and error, its time to live (and its idempotency key's), its
/// tombstone, and the message that wakes waiters on every replica. `lost`
/// only ends a job whose lease lapsed.
///
/// KEYS: job, gone, lease. ARGV: mode, now, TTL ms, tombstone TTL ms,
/// channel, id, status, result status, headers, body, error code, message.
pub(super) const END: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if not st then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 'expired' end
  return 'unknown'
end
if st == 'succeeded' or st == 'failed' or st == 'canceled' then return 'terminal' end
if ARGV[1] == 'lost' and redis.call('EXISTS', KEYS[3]) == 1 then return 'alive' end
redis.call('HSET', KEYS[1], 'st', ARGV[7], 'u', ARGV[2])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'rs', ARGV[8], 'rh', ARGV[9], 'rb', ARGV[10]) end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'ec', ARGV[11], 'em', ARGV[12]) end
redis.call('DEL', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local ik = redis.call('HGET', KEYS[1], 'ik')
if ik then redis.call('PEXPIRE', ik, ARGV[3]) end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ended'
";

/// Removes a job with its lease, tombstone, idempotency key and owner-index
/// entry, and wakes its waiters. KEYS: job, gone, lease. ARGV: channel, id.
pub(super) const DELETE: &str = r"
local ik = redis.call('HGET', KEYS[1], 'ik')
local ok = redis.call('HGET', KEYS[1], 'ok')
local mb = redis.call('HGET', KEYS[1], 'mb')
local removed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
if ik then redis.call('DEL', ik) end
if ok and mb then redis.call('ZREM', ok, mb) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return removed
";

/// Moves a pending job to running, records when it started (`s`, the same
/// time as `u`) and takes its lease.
///
/// KEYS: job, lease. ARGV: now, lease ms.
pub(super) const START: &str = r"
if redis.call('HGET', KEYS[1], 'st') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'st', 'running', 'u', ARGV[1], 's', ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
";

/// Records progress and message on a job that has not ended.
pub(super) const PROGRESS: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if not st or st == 'succeeded' or st == 'failed' or st == 'canceled' then return 0 end
redis.call('HSET', KEYS[1], 'u', ARGV[1])
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'p') else redis.call('HSET', KEYS[1], 'p', ARGV[2]) end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'm') else redis.call('HSET', KEYS[1], 'm', ARGV[4]) end
return 1
";

/// Renews one job's lease and times to live, only while the job is pending
/// or running: a job that ended keeps the time to live its end gave it (a
/// renewal racing a cancel or another replica's end would otherwise keep
/// it, and its tombstone's companion keys, up to a lease longer). Returns
/// the job's status word, or nil when the job is gone.
///
/// KEYS: job, lease, then the keys that live as long as the job (owner
/// index, idempotency key). ARGV: running TTL ms, lease ms.
pub(super) const RENEW: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if st == 'pending' or st == 'running' then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return st
";
