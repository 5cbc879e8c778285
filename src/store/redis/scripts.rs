//! The Lua scripts of [`RedisStore`](super::RedisStore): every change of
//! state that must be atomic, in one round trip each.
//!
//! Every key shares the namespace's hash tag `{ns}`, so that all the keys
//! a script touches sit in one slot of a Redis Cluster: a job's hash
//! `{ns}:job:<id>` and, once it ended, its tombstone `{ns}:gone:<id>`;
//! owner indexes `{ns}:owner:<owner>`, idempotency keys `{ns}:key:<scope>`,
//! the lease set `{ns}:leases`, the queues `{ns}:queue:<name>` and the
//! callback deliveries due `{ns}:deliveries` (ids scored with their due
//! time in ms by the server's clock). Scripts
//! that deal with jobs they find (claim, sweep) build their keys from the
//! id (`ARGV` carries the prefix); every other declares its keys.
//!
//! Leases are kept by Redis's clock, never a replica's: a lease is a member
//! of `{ns}:leases` (the job's id) scored with its expiry in ms, computed
//! inside the script from `TIME`. Replicas' clocks may disagree; the one
//! clock every replica shares is the server's.
//!
//! A claim (attempt `n` of job `id`) is held while the job's `at` field is
//! `n` and it does not wait in its queue (no `w` field): every write a
//! runner makes (start, progress, finish, renew, release) checks both and
//! changes nothing otherwise. The waiting mark matters as much as the
//! attempt: a sweep or a release that puts a job back in its queue leaves
//! `at` for the next claim to raise, and the runner that lost it must
//! already be fenced out.
//!
//! The hash's fields: `st` status, `c`/`u`/`s` created, updated, started
//! (ms), `p` progress, `m` message, `rs`/`rh`/`rb` the stored response,
//! `ec`/`em` the error, `o` owner, `ok`/`mb` its owner index and member,
//! `ik` the idempotency key it holds, `at` the attempt (0 while queued and
//! never claimed), `w` while it waits in its queue; a durable job adds `dq` its queue, `dx` its attempts,
//! and its request `qm`/`qu`/`qh`/`qb` (method, URI, headers, body), which
//! its end removes; a job with a completion callback adds `cu` its URL,
//! `cs` its delivery state (`pending`, `delivered`, `failed`) and `cn` the
//! attempts recorded (absent: 0).

/// Lua: `now_ms()`, the server's time in ms (`TIME`). Scripts may call
/// `TIME` before writing since Redis 5 (effects replication).
macro_rules! lua_now {
    () => {
        "local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"
    };
}

/// Lua: `keep(key, ms)`, a time to live of at least `ms` on a key several
/// jobs share (a lease set, a queue, an owner index): a write for one job
/// never shortens what another needs.
macro_rules! lua_keep {
    () => {
        "local function keep(key, ms)
  if redis.call('PTTL', key) < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
"
    };
}

/// Lua: `bump(u, now)`, the new `u` (updated, ms) of a job whose `u` is
/// `u`: `now`, or one past `u` when a replica's clock is behind or two
/// changes fall in one millisecond. Every change raises it, since event
/// streams tell changes, and name their events, by it.
macro_rules! lua_bump {
    () => {
        "local function bump(u, now)
  return math.max(tonumber(now), (tonumber(u) or 0) + 1)
end
"
    };
}

/// Lua: `held_by(at, w, token)`, whether attempt `token` holds a job
/// whose `at` and `w` fields are these: `at` is the token (a job written
/// before attempts were kept ran once) and the job is not waiting in its
/// queue (`w`, set when it is queued or put back, cleared by the claim that
/// takes it). One `HMGET` with the fields a script needs anyway, rather than
/// a read of its own.
macro_rules! lua_held {
    () => {
        "local function held_by(at, w, token)
  return (at or '1') == token and w ~= '1'
end
"
    };
}

/// Lua: `end_job(...)`, the end of a job that has not ended (whose queue
/// `dq` and idempotency key `ik` the caller read already): its state,
/// response and error, in one write; its lease and queue entry go; its
/// request too (the
/// credentials among its headers are not kept longer than needed); its
/// time to live (and its idempotency key's), its tombstone, and the message
/// that wakes waiters on every replica; a pending callback delivery becomes
/// due at once in `dl` (by the server's clock: the macros `lua_now` and
/// `lua_keep` come first). Shared by the end and the sweep, so
/// that a lost job ends exactly as any other.
macro_rules! lua_end_job {
    () => {
        "local function end_job(job, gone, leases, qprefix, id, st, now, ttl, tomb, channel, rs, rh, rb, ec, em, dq, ik, dl)
  local fields = {'st', st, 'u', bump(redis.call('HGET', job, 'u'), now)}
  if rs ~= '' then
    fields[#fields + 1] = 'rs'; fields[#fields + 1] = rs
    fields[#fields + 1] = 'rh'; fields[#fields + 1] = rh
    fields[#fields + 1] = 'rb'; fields[#fields + 1] = rb
  end
  if ec ~= '' then
    fields[#fields + 1] = 'ec'; fields[#fields + 1] = ec
    fields[#fields + 1] = 'em'; fields[#fields + 1] = em
  end
  redis.call('HSET', job, unpack(fields))
  if dq then
    redis.call('HDEL', job, 'qm', 'qu', 'qh', 'qb', 'w')
    redis.call('ZREM', qprefix .. dq, id)
  end
  redis.call('ZREM', leases, id)
  redis.call('PEXPIRE', job, ttl)
  if ik then redis.call('PEXPIRE', ik, ttl) end
  redis.call('SET', gone, '1', 'PX', tomb)
  if redis.call('HGET', job, 'cs') == 'pending' then
    redis.call('ZADD', dl, now_ms(), id)
    keep(dl, ttl)
  end
  redis.call('PUBLISH', channel, id)
end
"
    };
}

// After the macros: a module sees the macros defined before it.
mod deliveries;
mod durable;

pub(super) use deliveries::{CLAIM_DELIVERIES, RECORD_DELIVERY};
pub(super) use durable::{CLAIM, RELEASE, RENEW, SWEEP};

/// Creates a job: its hash, its lease (a job run at once, attempt 1) or its
/// place in its queue (a queued durable job, attempt 0), and its
/// owner-index entry; with an idempotency key, only if the key is free
/// (else returns its holder as `"<id> <fingerprint>"`). A queued create
/// into a queue of `max queued` jobs or more answers `full` and writes
/// nothing.
///
/// Writing the owner index also trims it of the entries too old for their
/// job to exist: the index's time to live is refreshed by every create, so
/// an owner that keeps submitting would otherwise grow it without bound
/// (listing only clears the entries it shows). Members all score 0 and
/// begin with their creation time in 16 hex digits, so lexical order is age
/// order and `ZREMRANGEBYLEX - (bound` removes exactly the entries created
/// before the bound.
///
/// Idempotent for one id: a create run again for an id whose hash exists
/// (and, with a key, whose key this id holds for this fingerprint) answers
/// `new` again and changes nothing but pushing back the lease it took (the
/// tries took time). That is how a create whose reply was lost (a command
/// timeout while the script ran) is resolved: the store runs it again,
/// rather than answering the client an error and leaving a created job
/// nobody runs. A queued job is not queued twice (its id is one member).
///
/// A job created ended (not leased) with a pending callback has its
/// delivery due at once.
///
/// KEYS: job, gone, owner index, idempotency key, leases, queue, deliveries.
/// ARGV: running TTL ms, lease ms, owner-index member, has owner ('1'),
/// has key ('1'), fingerprint, id, trim bound (`(` and a creation time in
/// 16 hex digits), queued ('1'), max queued, leased ('1': the job has not
/// ended), then the hash's field/value pairs.
pub(super) const CREATE: &str = concat!(
    lua_now!(),
    lua_keep!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 1
  and (ARGV[5] ~= '1' or redis.call('GET', KEYS[4]) == ARGV[7] .. ' ' .. ARGV[6]) then
  if redis.call('HGET', KEYS[1], 'st') == 'pending' and redis.call('ZSCORE', KEYS[5], ARGV[7]) then
    redis.call('ZADD', KEYS[5], 'XX', now_ms() + tonumber(ARGV[2]), ARGV[7])
    keep(KEYS[5], ARGV[1])
  end
  return 'new'
end
if ARGV[5] == '1' then
  local held = redis.call('GET', KEYS[4])
  if held then return held end
end
if ARGV[9] == '1' and redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[10]) then return 'full' end
if ARGV[5] == '1' then redis.call('SET', KEYS[4], ARGV[7] .. ' ' .. ARGV[6], 'PX', ARGV[1]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 12))
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'ik', KEYS[4]) end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'ok', KEYS[3], 'mb', ARGV[3])
  redis.call('ZREMRANGEBYLEX', KEYS[3], '-', ARGV[8])
  redis.call('ZADD', KEYS[3], 0, ARGV[3])
  keep(KEYS[3], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[6], redis.call('HGET', KEYS[1], 'c'), ARGV[7])
  keep(KEYS[6], ARGV[1])
  redis.call('HSET', KEYS[1], 'w', '1')
elseif ARGV[11] == '1' then
  redis.call('ZADD', KEYS[5], now_ms() + tonumber(ARGV[2]), ARGV[7])
  -- A member needs the set for one lease at most, and every replica's
  -- running TTL is longer than its lease: a plain PEXPIRE never cuts a
  -- lease short (and saves the PTTL of `keep`).
  redis.call('PEXPIRE', KEYS[5], ARGV[1])
elseif redis.call('HGET', KEYS[1], 'cs') == 'pending' then
  redis.call('ZADD', KEYS[7], now_ms(), ARGV[7])
  keep(KEYS[7], ARGV[1])
end
return 'new'
"
);

/// Ends a job (finished or canceled) atomically, as `end_job` does. A
/// finish only ends a job its claim holds (else `fenced`); a cancel needs
/// no claim.
///
/// KEYS: job, gone, leases, deliveries. ARGV: mode (`finish` or `cancel`),
/// now, TTL ms, tombstone TTL ms, channel, id, status, result status,
/// headers, body, error code, message, attempt, queue key prefix.
pub(super) const END: &str = concat!(
    lua_now!(),
    lua_keep!(),
    lua_held!(),
    lua_bump!(),
    lua_end_job!(),
    r"
local f = redis.call('HMGET', KEYS[1], 'st', 'at', 'w', 'dq', 'ik')
local st = f[1]
if not st then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 'expired' end
  return 'unknown'
end
if st == 'succeeded' or st == 'failed' or st == 'canceled' then return 'terminal' end
if ARGV[1] == 'finish' and not held_by(f[2], f[3], ARGV[13]) then return 'fenced' end
end_job(KEYS[1], KEYS[2], KEYS[3], ARGV[14], ARGV[6], ARGV[7], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], f[4], f[5], KEYS[4])
return 'ended'
"
);

/// Removes a job with its tombstone, lease, queue entry, idempotency key,
/// owner-index entry and callback delivery, and wakes its waiters.
///
/// KEYS: job, gone, leases, deliveries. ARGV: channel, id, queue key prefix.
pub(super) const DELETE: &str = r"
local ik = redis.call('HGET', KEYS[1], 'ik')
local ok = redis.call('HGET', KEYS[1], 'ok')
local mb = redis.call('HGET', KEYS[1], 'mb')
local dq = redis.call('HGET', KEYS[1], 'dq')
local removed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
if dq then redis.call('ZREM', ARGV[3] .. dq, ARGV[2]) end
if ik then redis.call('DEL', ik) end
if ok and mb then redis.call('ZREM', ok, mb) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return removed
";

/// Moves a pending job its claim holds to running, records when it
/// started (`s`, the same time as `u`), and announces the change (`~` and
/// the id, on the channel ends use).
///
/// KEYS: job, leases. ARGV: now, id, attempt, channel.
pub(super) const START: &str = concat!(
    lua_held!(),
    lua_bump!(),
    r"
local f = redis.call('HMGET', KEYS[1], 'st', 'at', 'w', 'u')
if f[1] ~= 'pending' or not held_by(f[2], f[3], ARGV[3]) then return 0 end
local u = bump(f[4], ARGV[1])
redis.call('HSET', KEYS[1], 'st', 'running', 'u', u, 's', u)
redis.call('PUBLISH', ARGV[4], '~' .. ARGV[2])
return 1
"
);

/// Records progress and message on a job that has not ended, for the
/// claim that holds it, and announces the change (`~` and the id).
///
/// KEYS: job, leases. ARGV: now, progress (`''`: none), has message
/// ('1'), message, id, attempt, channel.
pub(super) const PROGRESS: &str = concat!(
    lua_held!(),
    lua_bump!(),
    r"
local f = redis.call('HMGET', KEYS[1], 'st', 'at', 'w', 'u')
local st = f[1]
if not st or st == 'succeeded' or st == 'failed' or st == 'canceled' then return 0 end
if not held_by(f[2], f[3], ARGV[6]) then return 0 end
redis.call('HSET', KEYS[1], 'u', bump(f[4], ARGV[1]))
redis.call('PUBLISH', ARGV[7], '~' .. ARGV[5])
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'p') else redis.call('HSET', KEYS[1], 'p', ARGV[2]) end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'm') else redis.call('HSET', KEYS[1], 'm', ARGV[4]) end
return 1
"
);
