-- Version 1: jobs, with their results, idempotency keys, durable requests
-- and leases, and the tombstones of expired jobs. `{schema}` is the
-- store's schema, quoted. Plain CREATE (not IF NOT EXISTS): a table of the
-- same name that the store did not create fails the migration rather than
-- being used.

CREATE TABLE {schema}.jobs (
    id uuid PRIMARY KEY,
    status text NOT NULL,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    started_at_ms bigint,
    progress real,
    message text,
    owner text,
    -- The attempt under way or last made: the fencing token of claims.
    attempt integer NOT NULL,
    result_status integer,
    result_headers bytea,
    result_body bytea,
    error_code text,
    error_message text,
    -- The idempotency key's scope (owner and key): unique, so that of
    -- concurrent creates with one key exactly one inserts.
    idempotency_scope text UNIQUE,
    idempotency_fingerprint text,
    -- A durable job: its queue, attempts and request (removed at its end).
    queue text,
    max_attempts integer,
    waiting boolean NOT NULL DEFAULT false,
    request_method text,
    request_uri text,
    request_headers bytea,
    request_body bytea,
    -- By the database's clock: when the lease of a job not ended lapses,
    -- and, once it ended, when it expires and when its id is forgotten.
    lease_until timestamptz,
    expires_at timestamptz,
    forget_at timestamptz
);

-- An owner's jobs, newest first, by keyset pagination.
CREATE INDEX jobs_owner ON {schema}.jobs (owner, created_at_ms, id) WHERE owner IS NOT NULL;
-- The jobs waiting in each queue, oldest first (claims).
CREATE INDEX jobs_queue ON {schema}.jobs (queue, created_at_ms, id) WHERE waiting;
-- Leases, for the sweep of those that lapsed.
CREATE INDEX jobs_lease ON {schema}.jobs (lease_until) WHERE lease_until IS NOT NULL;
-- Ended jobs, for the expiry sweeper.
CREATE INDEX jobs_expiry ON {schema}.jobs (expires_at) WHERE expires_at IS NOT NULL;

-- Ids of jobs that expired, answered `410 Gone` until `forget_at`.
CREATE TABLE {schema}.tombstones (
    id uuid PRIMARY KEY,
    forget_at timestamptz NOT NULL
);
CREATE INDEX tombstones_forget ON {schema}.tombstones (forget_at);
