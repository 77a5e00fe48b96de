-- queuert 0001: jobs, blocker edges, job type policies.
-- Tables only; every function lives in sql/ and is re-applied on each migrate.

CREATE TYPE {{ schema }}.job_status AS ENUM (
    'blocked', 'pending', 'running', 'completed', 'failed', 'cancelled'
);

CREATE TABLE {{ schema }}.job_type (
    type_name text PRIMARY KEY
    CHECK (length(type_name) BETWEEN 1 AND 255),
    max_attempts integer CHECK (max_attempts IS NULL OR max_attempts > 0),
    backoff_initial interval NOT NULL DEFAULT '10 seconds'
    CHECK (backoff_initial >= '0'::interval),
    backoff_multiplier float8 NOT NULL DEFAULT 2
    CHECK (backoff_multiplier >= 1),
    backoff_max interval NOT NULL DEFAULT '5 minutes'
    CHECK (backoff_max >= '0'::interval),
    lease interval NOT NULL DEFAULT '60 seconds'
    CHECK (lease > '0'::interval),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{ schema }}.job (
    id uuid PRIMARY KEY,
    -- FIFO tiebreak: now() is fixed inside a transaction, a sequence is not.
    seq bigint GENERATED ALWAYS AS IDENTITY,
    type_name text NOT NULL CHECK (length(type_name) BETWEEN 1 AND 255),
    chain_id uuid NOT NULL,
    chain_type_name text NOT NULL,
    chain_index integer NOT NULL CHECK (chain_index >= 0),
    input jsonb,
    output jsonb,
    status {{ schema }}.job_status NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    scheduled_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    completed_by text,
    leased_by text,
    leased_until timestamptz,
    last_attempt_at timestamptz,
    last_attempt_error text,
    continued_to uuid,
    dedup_key text,
    trace_context text,
    -- Blocker chains of this job that are not complete yet (denormalised so
    -- that unblocking is a counter update, never a NOT EXISTS scan).
    open_blockers integer NOT NULL DEFAULT 0 CHECK (open_blockers >= 0),
    -- Set on the root row only, when the chain's last job completes: the
    -- root never moves, so "is this chain complete" is one primary-key read.
    chain_completed_at timestamptz,
    CONSTRAINT job_root_is_chain CHECK ((chain_index = 0) = (id = chain_id)),
    CONSTRAINT job_lease_only_when_running CHECK (
        (status = 'running') = (leased_by IS NOT NULL AND leased_until IS NOT NULL)
    )
) WITH (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- One job per chain position: makes a racing continuation idempotent.
CREATE UNIQUE INDEX job_chain_position_idx
ON {{ schema }}.job (chain_id, chain_index);

-- Claim order, over runnable rows only: stays small however many
-- completed or blocked rows the table holds. It is the only index over
-- pending rows: next_due_at walks it too (one probe per priority), and a
-- second one (by due time) tempted the planner into scanning every pending
-- row and sorting them for each claim.
CREATE INDEX job_claim_idx
ON {{ schema }}.job (priority DESC, scheduled_at, seq)
WHERE status = 'pending';

-- reap: expired leases.
CREATE INDEX job_lease_idx
ON {{ schema }}.job (leased_until)
WHERE status = 'running';

-- Deduplication looks only at chain roots that carry a key.
CREATE INDEX job_dedup_idx
ON {{ schema }}.job (chain_type_name, dedup_key, created_at DESC)
WHERE dedup_key IS NOT NULL AND chain_index = 0;

-- Listing chains by creation time (dashboard, list_chains).
CREATE INDEX job_chain_root_created_idx
ON {{ schema }}.job (created_at DESC, id DESC)
WHERE chain_index = 0;

CREATE TABLE {{ schema }}.job_blocker (
    job_id uuid NOT NULL
    REFERENCES {{ schema }}.job (id) ON DELETE CASCADE,
    position integer NOT NULL,
    blocker_chain_id uuid NOT NULL REFERENCES {{ schema }}.job (id),
    PRIMARY KEY (job_id, position),
    UNIQUE (job_id, blocker_chain_id)
);

-- Blocker resolution touches only the dependents of the completed chain.
CREATE INDEX job_blocker_chain_idx
ON {{ schema }}.job_blocker (blocker_chain_id);

-- Serialises concurrent starts with the same (type, dedup key). A fixed set
-- of hash buckets keeps the table bounded; an upsert (not an advisory lock)
-- makes a REPEATABLE READ caller fail with 40001 instead of creating a
-- second chain it cannot see.
CREATE TABLE {{ schema }}.dedup_guard (
    bucket integer PRIMARY KEY,
    touched_at timestamptz NOT NULL
);

-- Result rows of public functions whose argument names collide with their
-- column names (PostgreSQL forbids that in RETURNS TABLE).
CREATE TYPE {{ schema }}.start_chain_result AS (
    id uuid,
    chain_id uuid,
    type_name text,
    status {{ schema }}.job_status,
    scheduled_at timestamptz,
    created_at timestamptz,
    deduplicated boolean
);

CREATE TYPE {{ schema }}.continue_with_result AS (
    id uuid,
    chain_id uuid,
    chain_index integer,
    type_name text,
    status {{ schema }}.job_status,
    scheduled_at timestamptz,
    deduplicated boolean
);

CREATE TYPE {{ schema }}.fail_result AS (
    id uuid,
    status {{ schema }}.job_status,
    scheduled_at timestamptz,
    attempt integer
);

-- Working row of start_chains between its set-based statements.
CREATE TYPE {{ schema }}.chain_item AS (
    ord integer,
    id uuid,
    id_given boolean,
    type_name text,
    input jsonb,
    scheduled_at timestamptz,
    blockers uuid [],
    dedup_key text,
    dedup_scope text,
    dedup_window interval,
    priority integer,
    trace_context text,
    resolved_id uuid,
    deduplicated boolean,
    existing_status {{ schema }}.job_status,
    existing_scheduled_at timestamptz,
    existing_created_at timestamptz
);
