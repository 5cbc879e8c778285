-- Version 2: completion callbacks, kept with their job. A job with a
-- callback has its URL, its delivery state ('pending', 'delivered',
-- 'failed') and the attempts recorded (the fencing token of delivery
-- claims). `callback_due` is set, by the database's clock, only while an
-- ended job's delivery is pending: its end sets it to now, a claim moves
-- it on by the hold, a retry to its time, and a delivery's end clears it.

ALTER TABLE {schema}.jobs
    ADD COLUMN callback_url text,
    ADD COLUMN callback_state text,
    ADD COLUMN callback_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN callback_due timestamptz;

-- Deliveries due, soonest first: empty but for ended jobs whose delivery
-- is pending, so a claim when nothing is due costs one index probe.
CREATE INDEX jobs_callback_due ON {schema}.jobs (callback_due) WHERE callback_due IS NOT NULL;
