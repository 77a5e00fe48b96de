-- queuert 0006: per-type limits, recurring chains, retention (issue 17).
--
-- Limits are tokens that claim locks with SKIP LOCKED, so a limited type
-- never makes a claimer wait and never blocks other types:
-- * job_running_slot: max_running rows per type. A slot is free when the
--   job it names is no longer running at the attempt it was given, so a
--   completion, failure, reap, cancel or delete frees it without touching
--   this table.
-- * job_rate_slot: rate_limit rows per type, each the time of the start
--   that used it; free again rate_interval later (a sliding window).
-- set_job_type keeps both in step with the policy.
--
-- set_job_type gains three arguments; PostgreSQL would keep the old
-- signature as a second overload, so it is dropped here and sql/ creates
-- the new one in the same transaction (IF EXISTS: a first install has none).

DROP FUNCTION IF EXISTS {{ schema }}.set_job_type(
    text, integer, interval, float8, interval, interval
);

ALTER TABLE {{ schema }}.job_type
ADD COLUMN max_running integer
CHECK (max_running IS NULL OR max_running BETWEEN 0 AND 10000),
ADD COLUMN rate_limit integer
CHECK (rate_limit IS NULL OR rate_limit BETWEEN 1 AND 10000),
ADD COLUMN rate_interval interval
CHECK (rate_interval IS NULL OR rate_interval > '0'::interval),
ADD CONSTRAINT job_type_rate_pair CHECK ((rate_limit IS NULL) = (rate_interval IS NULL));

-- claim asks "which of these types are limited" on every call: the answer
-- for a queue without limits is an empty index.
CREATE INDEX job_type_limited_idx
ON {{ schema }}.job_type (type_name)
WHERE max_running IS NOT NULL OR rate_limit IS NOT NULL;

CREATE TABLE {{ schema }}.job_running_slot (
    type_name text NOT NULL
    REFERENCES {{ schema }}.job_type (type_name) ON DELETE CASCADE,
    slot integer NOT NULL CHECK (slot >= 1),
    job_id uuid,
    attempt integer,
    PRIMARY KEY (type_name, slot)
);

CREATE TABLE {{ schema }}.job_rate_slot (
    type_name text NOT NULL
    REFERENCES {{ schema }}.job_type (type_name) ON DELETE CASCADE,
    slot integer NOT NULL CHECK (slot >= 1),
    used_at timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (type_name, slot)
);

-- Recurring chains: one row per schedule; next_tick_at is computed by the
-- engine's cron reader (sql/017_cron.sql) in the schedule's time zone.
CREATE TABLE {{ schema }}.schedule (
    name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255),
    cron text NOT NULL,
    timezone text NOT NULL,
    type_name text NOT NULL CHECK (length(type_name) BETWEEN 1 AND 255),
    input jsonb,
    priority integer NOT NULL DEFAULT 0,
    next_tick_at timestamptz NOT NULL,
    last_tick_at timestamptz,
    last_chain_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX schedule_due_idx
ON {{ schema }}.schedule (next_tick_at);

-- Retention (prune): completed chains by completion time, on roots only.
-- Creating and claiming never touch it; a completion adds one entry.
CREATE INDEX job_completed_chain_idx
ON {{ schema }}.job (chain_completed_at)
WHERE chain_index = 0 AND chain_completed_at IS NOT NULL;

-- Cancelled jobs are few; prune finds cancelled chains through them.
CREATE INDEX job_cancelled_idx
ON {{ schema }}.job (created_at)
WHERE status = 'cancelled';
