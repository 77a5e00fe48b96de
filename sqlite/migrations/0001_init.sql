-- queuert for SQLite 0001: jobs, blocker edges, job type policies, the two
-- triggers that resolve fan-in, and the inspection views.
--
-- SQLite has no schemas inside one database file, and the jobs must live in
-- the application's own file (a transaction spanning an ATTACHed file is not
-- atomic in WAL mode), so every name carries the prefix `{{ schema }}_`.
--
-- Values, chosen so that ordering and comparison are exact:
--   times      integer microseconds since 1970-01-01 UTC (scheduled_at, ...)
--   durations  integer microseconds (job_type.backoff_initial, lease, ...)
--   ids        UUID text, lower case with hyphens
--   payloads   JSON text
-- The Python layer (queuert._sqlite) converts them to aware datetimes,
-- timedeltas, UUIDs and Python values.

CREATE TABLE {{ schema }}_job_type (
    type_name TEXT PRIMARY KEY
    CHECK (length(type_name) BETWEEN 1 AND 255),
    max_attempts INTEGER CHECK (max_attempts IS NULL OR max_attempts > 0),
    backoff_initial INTEGER NOT NULL DEFAULT 10000000
    CHECK (backoff_initial >= 0),
    backoff_multiplier REAL NOT NULL DEFAULT 2
    CHECK (backoff_multiplier >= 1),
    backoff_max INTEGER NOT NULL DEFAULT 300000000
    CHECK (backoff_max >= 0),
    lease INTEGER NOT NULL DEFAULT 60000000
    CHECK (lease > 0),
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE {{ schema }}_job (
    -- FIFO tiebreak and insertion order: the rowid. A new row always gets a
    -- higher seq than every row in the table.
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type_name TEXT NOT NULL CHECK (length(type_name) BETWEEN 1 AND 255),
    chain_id TEXT NOT NULL,
    chain_type_name TEXT NOT NULL,
    chain_index INTEGER NOT NULL CHECK (chain_index >= 0),
    input TEXT CHECK (input IS NULL OR json_valid(input)),
    output TEXT CHECK (output IS NULL OR json_valid(output)),
    status TEXT NOT NULL CHECK (
        status IN ('blocked', 'pending', 'running', 'completed', 'failed', 'cancelled')
    ),
    priority INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    scheduled_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    completed_by TEXT,
    leased_by TEXT,
    leased_until INTEGER,
    last_attempt_at INTEGER,
    last_attempt_error TEXT,
    continued_to TEXT,
    dedup_key TEXT,
    trace_context TEXT,
    -- Blocker chains of this job that are not complete yet (denormalised so
    -- that unblocking is a counter update, never a NOT EXISTS scan).
    open_blockers INTEGER NOT NULL DEFAULT 0 CHECK (open_blockers >= 0),
    -- Blocker edges of this job, complete or not (SQLite only): claim reads
    -- job_blocker for the jobs that have some, and only for them.
    blocker_count INTEGER NOT NULL DEFAULT 0 CHECK (blocker_count >= 0),
    -- Set on the root row only, when the chain's last job completes: the
    -- root never moves, so "is this chain complete" is one lookup by id.
    chain_completed_at INTEGER,
    CONSTRAINT job_root_is_chain CHECK ((chain_index = 0) = (id = chain_id)),
    CONSTRAINT job_lease_only_when_running CHECK (
        (status = 'running') = (leased_by IS NOT NULL AND leased_until IS NOT NULL)
    )
);

-- One job per later chain position: makes a racing continuation idempotent
-- (a root is unique by its id).
CREATE UNIQUE INDEX {{ schema }}_job_chain_position_idx
ON {{ schema }}_job (chain_id, chain_index)
WHERE chain_index > 0;

-- Claim order, over runnable rows only: stays small however many completed
-- or blocked rows the table holds. next_due_at walks it too.
CREATE INDEX {{ schema }}_job_claim_idx
ON {{ schema }}_job (priority DESC, scheduled_at, seq)
WHERE status = 'pending';

-- reap: expired leases.
CREATE INDEX {{ schema }}_job_lease_idx
ON {{ schema }}_job (leased_until)
WHERE status = 'running';

-- Deduplication looks only at chain roots that carry a key.
CREATE INDEX {{ schema }}_job_dedup_idx
ON {{ schema }}_job (chain_type_name, dedup_key, created_at DESC)
WHERE dedup_key IS NOT NULL AND chain_index = 0;

-- Listing chains by creation time (dashboard, list_chains).
CREATE INDEX {{ schema }}_job_chain_root_created_idx
ON {{ schema }}_job (created_at DESC, id DESC)
WHERE chain_index = 0;

CREATE TABLE {{ schema }}_job_blocker (
    job_id TEXT NOT NULL
    REFERENCES {{ schema }}_job (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    blocker_chain_id TEXT NOT NULL REFERENCES {{ schema }}_job (id),
    PRIMARY KEY (job_id, position),
    UNIQUE (job_id, blocker_chain_id)
) WITHOUT ROWID;

-- Blocker resolution touches only the dependents of the completed chain.
CREATE INDEX {{ schema }}_job_blocker_chain_idx
ON {{ schema }}_job_blocker (blocker_chain_id);

-- Fan-in, resolved inside the completing statement, whoever writes it.
--
-- 1. A job completes without a continuation: its chain is complete, which is
--    recorded on the root. A continuation (continued_to set in the same
--    UPDATE) does not fire it; nor does a root whose completing UPDATE set
--    chain_completed_at itself (the engine does, saving a second write).
CREATE TRIGGER {{ schema }}_job_chain_end
AFTER UPDATE OF status ON {{ schema }}_job
WHEN
    new.status = 'completed' AND old.status <> 'completed'
    AND new.continued_to IS NULL AND new.chain_completed_at IS NULL
BEGIN
    UPDATE {{ schema }}_job
    SET chain_completed_at = new.completed_at
    WHERE id = new.chain_id AND chain_completed_at IS NULL;
END;

-- 2. A chain completed: every job waiting on it has one open blocker less;
--    a blocked job with none left becomes pending, due no earlier than the
--    completion. Touches only the dependents, through job_blocker_chain_idx.
CREATE TRIGGER {{ schema }}_job_chain_completed
AFTER UPDATE OF chain_completed_at ON {{ schema }}_job
WHEN old.chain_completed_at IS NULL AND new.chain_completed_at IS NOT NULL
BEGIN
    UPDATE {{ schema }}_job
    SET
        open_blockers = open_blockers - 1,
        status = CASE
            WHEN status = 'blocked' AND open_blockers = 1 THEN 'pending'
            ELSE status
        END,
        scheduled_at = CASE
            WHEN status = 'blocked' AND open_blockers = 1
                THEN max(scheduled_at, new.chain_completed_at)
            ELSE scheduled_at
        END
    WHERE id IN (
        SELECT b.job_id FROM {{ schema }}_job_blocker AS b
        WHERE b.blocker_chain_id = new.id
    );
END;

-- One row per chain; its status is the status of its last job (a later job
-- through job_chain_position_idx, else the root itself).
CREATE VIEW {{ schema }}_chain AS
SELECT
    r.id AS chain_id,
    r.type_name,
    t.status,
    t.id AS current_job_id,
    t.type_name AS current_type_name,
    t.chain_index + 1 AS job_count,
    r.created_at,
    r.chain_completed_at AS completed_at,
    CASE WHEN r.chain_completed_at IS NOT NULL THEN t.output END AS output
FROM {{ schema }}_job AS r
INNER JOIN {{ schema }}_job AS t
    ON t.seq = coalesce((
        SELECT l.seq FROM {{ schema }}_job AS l
        WHERE l.chain_id = r.id AND l.chain_index > 0
        ORDER BY l.chain_index DESC
        LIMIT 1
    ), r.seq)
WHERE r.chain_index = 0;

-- One row per type and status; oldest_due_age (microseconds) is how long the
-- oldest due pending job has waited, by SQLite's clock (millisecond
-- precision; queuert._sqlite.stats() uses the engine's clock instead).
CREATE VIEW {{ schema }}_stats AS
WITH clock AS (
    SELECT cast(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000 AS now
)

SELECT
    j.type_name,
    j.status,
    count(*) AS count,
    c.now - min(CASE
        WHEN j.status = 'pending' AND j.scheduled_at <= c.now THEN j.scheduled_at
    END) AS oldest_due_age
FROM {{ schema }}_job AS j
CROSS JOIN clock AS c
GROUP BY j.type_name, j.status;
