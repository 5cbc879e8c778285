//! The store's SQL: one statement per operation, written once per store
//! with its schema, channel and durations in it, so that each is one
//! prepared statement on every connection.
//!
//! Every statement a request can run finds its rows through an index: the
//! primary key, the idempotency key's unique index, the owner index (keyset
//! pagination), the queue index (claims). The sweeps use the lease and
//! expiry indexes and take at most a batch. `tests/it/postgres_plans.rs`
//! checks each plan with `EXPLAIN` (no sequential scan).
//!
//! A claim (attempt `n` of a job) holds the job while the row's `attempt`
//! is `n`, it does not wait in its queue and it has not ended: the
//! condition [`HELD`] of every write a runner makes.

/// The record's columns, in the order `rows::record` reads them.
pub(super) const RECORD: &str = "j.status, j.created_at_ms, j.updated_at_ms, j.started_at_ms, j.progress, j.message, \
     j.result_status, j.error_code, j.error_message, j.owner, j.attempt, j.callback_url, j.callback_state, \
     j.callback_attempts";

/// The request's columns, after the record's in a claim.
const REQUEST: &str = "j.request_method, j.request_uri, j.request_headers, j.request_body";

/// Whether the claim `(id, attempt)` given as `$1`, `$2` holds the job.
const HELD: &str = "j.id = $1 AND j.attempt = $2 AND NOT j.waiting AND j.status IN ('pending', 'running')";

/// Whether a row is kept (not past its time to live).
const KEPT: &str = "(j.expires_at IS NULL OR j.expires_at > now())";

/// The statements of one store.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) create: String,
    pub(super) key_holder: String,
    pub(super) free_key: String,
    pub(super) get: String,
    pub(super) tombstone: String,
    pub(super) list_first: String,
    pub(super) list_after: String,
    pub(super) start: String,
    pub(super) progress: String,
    pub(super) finish: String,
    pub(super) cancel: String,
    pub(super) delete: String,
    pub(super) response: String,
    pub(super) claim: String,
    pub(super) renew: String,
    pub(super) release: String,
    pub(super) sweep: String,
    pub(super) expire: String,
    pub(super) forget: String,
    pub(super) claim_deliveries: String,
    pub(super) record_delivery: String,
}

/// What the statements are written with.
pub(super) struct Settings<'a> {
    /// The schema's name (valid: needs no escaping).
    pub(super) schema: &'a str,
    /// The channel of ended jobs.
    pub(super) channel: &'a str,
    /// How long an ended job is kept, in ms.
    pub(super) ttl_ms: u64,
    /// How long past its expiry an id answers `410`, in ms.
    pub(super) tombstone_ms: u64,
    /// How long a claim lasts without renewal, in ms.
    pub(super) lease_ms: u64,
}

impl Statements {
    /// Every statement by its name.
    pub(super) fn all(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("create", &self.create),
            ("key_holder", &self.key_holder),
            ("free_key", &self.free_key),
            ("get", &self.get),
            ("tombstone", &self.tombstone),
            ("list_first", &self.list_first),
            ("list_after", &self.list_after),
            ("start", &self.start),
            ("progress", &self.progress),
            ("finish", &self.finish),
            ("cancel", &self.cancel),
            ("delete", &self.delete),
            ("response", &self.response),
            ("claim", &self.claim),
            ("renew", &self.renew),
            ("release", &self.release),
            ("sweep", &self.sweep),
            ("expire", &self.expire),
            ("forget", &self.forget),
            ("claim_deliveries", &self.claim_deliveries),
            ("record_delivery", &self.record_delivery),
        ]
    }

    /// The statements of a store with `settings`.
    pub(super) fn new(settings: &Settings<'_>) -> Self {
        let jobs = format!("\"{}\".jobs", settings.schema);
        let tombstones = format!("\"{}\".tombstones", settings.schema);
        let channel = settings.channel;
        let ttl = settings.ttl_ms;
        let forget = settings.ttl_ms.saturating_add(settings.tombstone_ms);
        let lease = format!("now() + interval '{} milliseconds'", settings.lease_ms);
        // What every end writes besides its state: no lease, no place in a
        // queue, no stored request (its credentials are kept no longer
        // than needed), and the row's time to live.
        let end = format!(
            "lease_until = NULL, waiting = false, request_method = NULL, request_uri = NULL, \
             request_headers = NULL, request_body = NULL, \
             expires_at = now() + interval '{ttl} milliseconds', \
             forget_at = now() + interval '{forget} milliseconds', \
             callback_due = CASE WHEN j.callback_state = 'pending' THEN now() END"
        );
        // The database's clock in ms, for the writes of the sweep.
        let now_ms = "(extract(epoch FROM now()) * 1000)::bigint";
        // Whether a job whose lease lapsed goes back to its queue: durable
        // (its request is kept) with attempts left. Never NULL, so that the
        // sweep's two updates take every row between them.
        let again = "(j.request_method IS NOT NULL AND j.attempt < coalesce(j.max_attempts, 1))";
        // One row for any id, with what is known of it: the job (kept or
        // expired) and its tombstone (for a cancel, which must tell them
        // apart in the statement that cancels).
        let lookup = format!(
            "SELECT {RECORD}, (j.expires_at IS NOT NULL AND j.expires_at <= now()) AS expired, \
             coalesce(j.forget_at, t.forget_at) > now() AS remembered \
             FROM (VALUES ($1::uuid)) AS k(id) LEFT JOIN {jobs} j ON j.id = k.id \
             LEFT JOIN {tombstones} t ON t.id = k.id"
        );
        Self {
            // $1 id, $2 status, $3 created, $4 updated, $5 started, $6
            // progress, $7 message, $8 owner, $9 attempt, $10 key scope,
            // $11 fingerprint, $12 queue, $13 max attempts, $14 waiting,
            // $15..$18 request, $19 leased, $20 ended, $21 max queued, $22
            // callback URL, $23 its state, $24 its attempts (a job created
            // ended has its pending delivery due at once).
            // Answers whether the queue had room and whether a row went in.
            create: format!(
                "WITH room AS (SELECT NOT $14 OR count(*) < $21 AS ok FROM \
                 (SELECT 1 FROM {jobs} j WHERE $14 AND j.queue = $12 AND j.waiting LIMIT $21) AS q), \
                 inserted AS (INSERT INTO {jobs} AS j (id, status, created_at_ms, updated_at_ms, started_at_ms, \
                 progress, message, owner, attempt, idempotency_scope, idempotency_fingerprint, queue, \
                 max_attempts, waiting, request_method, request_uri, request_headers, request_body, \
                 lease_until, expires_at, forget_at, callback_url, callback_state, callback_attempts, callback_due) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 CASE WHEN $19 THEN {lease} END, \
                 CASE WHEN $20 THEN now() + interval '{ttl} milliseconds' END, \
                 CASE WHEN $20 THEN now() + interval '{forget} milliseconds' END, \
                 $22, $23, $24, CASE WHEN $20 AND $23 = 'pending' THEN now() END \
                 FROM room WHERE room.ok ON CONFLICT DO NOTHING RETURNING 1) \
                 SELECT (SELECT ok FROM room), (SELECT count(*) FROM inserted) > 0"
            ),
            key_holder: format!(
                "SELECT j.id, j.idempotency_fingerprint, {KEPT} AS kept, {RECORD} FROM {jobs} j \
                 WHERE j.idempotency_scope = $1"
            ),
            free_key: format!("UPDATE {jobs} j SET idempotency_scope = NULL WHERE j.id = $1 AND NOT {KEPT}"),
            get: format!(
                "SELECT {RECORD}, (j.expires_at IS NOT NULL AND j.expires_at <= now()) AS expired, \
                 j.forget_at > now() AS remembered FROM {jobs} j WHERE j.id = $1"
            ),
            tombstone: format!("SELECT t.forget_at > now() FROM {tombstones} t WHERE t.id = $1"),
            list_first: format!(
                "SELECT j.id, {RECORD} FROM {jobs} j WHERE j.owner = $1 AND {KEPT} \
                 ORDER BY j.created_at_ms DESC, j.id DESC LIMIT $2"
            ),
            list_after: format!(
                "SELECT j.id, {RECORD} FROM {jobs} j WHERE j.owner = $1 AND {KEPT} \
                 AND (j.created_at_ms, j.id) < ($3, $4) ORDER BY j.created_at_ms DESC, j.id DESC LIMIT $2"
            ),
            // Both announce the change (`~` and the id) for event streams.
            start: format!(
                "WITH started AS (UPDATE {jobs} j SET status = 'running', updated_at_ms = greatest(j.updated_at_ms + 1, $3), \
                 started_at_ms = greatest(j.created_at_ms, $3) \
                 WHERE {HELD} AND j.status = 'pending' RETURNING j.id) \
                 SELECT pg_notify('{channel}', '~' || id::text) FROM started"
            ),
            progress: format!(
                "WITH changed AS (UPDATE {jobs} j SET progress = $3, message = $4, updated_at_ms = greatest(j.updated_at_ms + 1, $5) \
                 WHERE {HELD} RETURNING j.id) \
                 SELECT pg_notify('{channel}', '~' || id::text) FROM changed"
            ),
            // $3 status, $4 updated, $5..$7 response, $8 code, $9 message.
            finish: format!(
                "WITH ended AS (UPDATE {jobs} j SET status = $3, updated_at_ms = greatest(j.updated_at_ms + 1, $4), result_status = $5, \
                 result_headers = $6, result_body = $7, error_code = $8, error_message = $9, {end} \
                 WHERE {HELD} RETURNING j.id) \
                 SELECT pg_notify('{channel}', id::text) FROM ended"
            ),
            // $2 updated. Answers whether it canceled, and the row as it
            // was before (the statement's snapshot).
            cancel: format!(
                "WITH ended AS (UPDATE {jobs} j SET status = 'canceled', updated_at_ms = greatest(j.updated_at_ms + 1, $2), {end} \
                 WHERE j.id = $1 AND j.status IN ('pending', 'running') RETURNING j.id), \
                 woken AS (SELECT pg_notify('{channel}', id::text) FROM ended) \
                 SELECT (SELECT count(*) FROM woken) > 0 AS canceled, l.* FROM ({lookup}) AS l"
            ),
            delete: format!(
                "WITH gone AS (DELETE FROM {jobs} j WHERE j.id = $1 RETURNING j.id, {KEPT} AS kept), \
                 forgotten AS (DELETE FROM {tombstones} t WHERE t.id = $1), \
                 woken AS (SELECT pg_notify('{channel}', id::text) FROM gone) \
                 SELECT coalesce((SELECT kept FROM gone), false) AND (SELECT count(*) FROM woken) > 0"
            ),
            response: format!(
                "SELECT j.result_status, j.result_headers, j.result_body FROM {jobs} j WHERE j.id = $1 AND {KEPT}"
            ),
            // $1 queue, $2 updated.
            claim: format!(
                "WITH next AS (SELECT j.id FROM {jobs} j WHERE j.queue = $1 AND j.waiting \
                 ORDER BY j.created_at_ms, j.id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 UPDATE {jobs} j SET attempt = j.attempt + 1, waiting = false, lease_until = {lease}, \
                 updated_at_ms = greatest(j.updated_at_ms + 1, $2) FROM next WHERE j.id = next.id \
                 RETURNING j.id, {RECORD}, j.max_attempts, {REQUEST}"
            ),
            // $1 ids, $2 attempts.
            renew: format!(
                "UPDATE {jobs} j SET lease_until = {lease} FROM unnest($1::uuid[], $2::integer[]) AS c(id, attempt) \
                 WHERE j.id = c.id AND j.attempt = c.attempt AND NOT j.waiting \
                 AND j.status IN ('pending', 'running') RETURNING j.id, j.attempt"
            ),
            // $3 updated.
            release: format!(
                "UPDATE {jobs} j SET status = 'pending', waiting = true, started_at_ms = NULL, lease_until = NULL, \
                 updated_at_ms = greatest(j.updated_at_ms + 1, $3) WHERE {HELD} AND j.queue IS NOT NULL AND j.request_method IS NOT NULL"
            ),
            // $1 batch, $2 lost code, $3 lost message. Answers how many
            // were requeued and lost.
            sweep: format!(
                "WITH due AS (SELECT j.id FROM {jobs} j WHERE j.lease_until < now() \
                 AND j.status IN ('pending', 'running') AND NOT j.waiting \
                 ORDER BY j.lease_until LIMIT $1 FOR UPDATE SKIP LOCKED), \
                 requeued AS (UPDATE {jobs} j SET status = 'pending', waiting = true, started_at_ms = NULL, \
                 lease_until = NULL, updated_at_ms = greatest(j.updated_at_ms + 1, {now_ms}) FROM due \
                 WHERE j.id = due.id AND {again} RETURNING j.id), \
                 lost AS (UPDATE {jobs} j SET status = 'failed', error_code = $2, error_message = $3, \
                 updated_at_ms = greatest(j.updated_at_ms + 1, {now_ms}), {end} FROM due \
                 WHERE j.id = due.id AND NOT {again} \
                 RETURNING j.id), \
                 woken AS (SELECT pg_notify('{channel}', id::text) FROM lost) \
                 SELECT (SELECT count(*) FROM requeued), (SELECT count(*) FROM woken)"
            ),
            // $1 batch. Ended jobs past their time to live leave the table;
            // their ids stay as tombstones until forgotten.
            expire: format!(
                "WITH due AS (SELECT j.id FROM {jobs} j WHERE j.expires_at <= now() \
                 ORDER BY j.expires_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
                 gone AS (DELETE FROM {jobs} j USING due WHERE j.id = due.id RETURNING j.id, j.forget_at), \
                 kept AS (INSERT INTO {tombstones} (id, forget_at) SELECT id, forget_at FROM gone \
                 WHERE forget_at > now() ON CONFLICT (id) DO UPDATE SET forget_at = EXCLUDED.forget_at RETURNING 1) \
                 SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM kept)"
            ),
            // $1 limit, $2 hold ms. Due deliveries of kept jobs, soonest
            // first, each held (due again after the hold) and its job kept
            // at least hold + TTL; answers the row and when it was due.
            claim_deliveries: format!(
                "WITH due AS (SELECT j.id, j.callback_due AS was FROM {jobs} j WHERE j.callback_due <= now() \
                 AND {KEPT} ORDER BY j.callback_due LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 UPDATE {jobs} j SET callback_due = now() + $2 * interval '1 millisecond', \
                 expires_at = greatest(j.expires_at, now() + ($2 + {ttl}) * interval '1 millisecond'), \
                 forget_at = greatest(j.forget_at, now() + ($2 + {forget}) * interval '1 millisecond') \
                 FROM due WHERE j.id = due.id \
                 RETURNING j.id, {RECORD}, (extract(epoch FROM due.was) * 1000)::bigint"
            ),
            // $1 id, $2 token, $3 state after, $4 due ms (a retry: state
            // `pending`). Never `updated_at_ms`: an ended record stays as it
            // ended.
            record_delivery: format!(
                "UPDATE {jobs} j SET callback_attempts = j.callback_attempts + 1, callback_state = $3, \
                 callback_due = CASE WHEN $3 = 'pending' THEN to_timestamp($4::bigint / 1000.0) END, \
                 expires_at = CASE WHEN $3 = 'pending' THEN greatest(j.expires_at, \
                 greatest(to_timestamp($4::bigint / 1000.0), now()) + interval '{ttl} milliseconds') \
                 ELSE j.expires_at END, \
                 forget_at = CASE WHEN $3 = 'pending' THEN greatest(j.forget_at, \
                 greatest(to_timestamp($4::bigint / 1000.0), now()) + interval '{forget} milliseconds') \
                 ELSE j.forget_at END \
                 WHERE j.id = $1 AND j.callback_state = 'pending' AND j.callback_attempts = $2 \
                 AND j.status IN ('succeeded', 'failed', 'canceled')"
            ),
            // $1 batch.
            forget: format!(
                "DELETE FROM {tombstones} t WHERE t.id IN (SELECT id FROM {tombstones} \
                 WHERE forget_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}
