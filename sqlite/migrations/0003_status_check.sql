-- queuert for SQLite 0003: the job table's status CHECK written as equalities
-- joined by OR instead of `status IN (six names)`.
--
-- SQLite evaluates a CHECK on every INSERT and on every UPDATE that changes
-- a column it names. For an IN list of more than two constants it builds a
-- small temporary b-tree of the list first, each time the statement runs:
-- about 2 us per inserted row and per claim or completion on the
-- development machine, 40% of a bulk start's SQL. The OR form says the same
-- and compares in place. The rows and their order are unchanged (seq is
-- copied), and every row satisfies the new CHECK since it satisfied the old.
--
-- SQLite cannot change a CHECK in place (ALTER TABLE has no such form), so
-- this is its documented table rebuild: a new table, the rows copied, the
-- old one dropped, the new one renamed, then the indexes, the trigger and
-- the views that name the table made again as 0001 and 0002 made them. It
-- rewrites the table once: on a large file it takes the write lock for as
-- long as the copy takes. migrate runs it with foreign key enforcement off
-- (as every migration): dropping the old table must not cascade to
-- job_blocker, whose rows stay and name the same ids.

DROP VIEW {{ schema }}_chain;

DROP VIEW {{ schema }}_stats;

DROP TRIGGER {{ schema }}_job_blocker_marks_chain;

CREATE TABLE {{ schema }}_job_rebuilt (
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
    -- equalities, not IN (...): see the header
    status TEXT NOT NULL CHECK (
        status = 'blocked' OR status = 'pending' OR status = 'running'
        OR status = 'completed' OR status = 'failed' OR status = 'cancelled'
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
    -- Set on a root that some job waits on (0002).
    has_dependents INTEGER NOT NULL DEFAULT 0 CHECK (has_dependents IN (0, 1)),
    CONSTRAINT job_root_is_chain CHECK ((chain_index = 0) = (id = chain_id)),
    CONSTRAINT job_lease_only_when_running CHECK (
        (status = 'running') = (leased_by IS NOT NULL AND leased_until IS NOT NULL)
    )
);

INSERT INTO {{ schema }}_job_rebuilt (
    seq, id, type_name, chain_id, chain_type_name, chain_index, input, output,
    status, priority, attempt, scheduled_at, created_at, completed_at,
    completed_by, leased_by, leased_until, last_attempt_at, last_attempt_error,
    continued_to, dedup_key, trace_context, open_blockers, blocker_count,
    chain_completed_at, has_dependents
)
SELECT
    seq, id, type_name, chain_id, chain_type_name, chain_index, input, output,
    status, priority, attempt, scheduled_at, created_at, completed_at,
    completed_by, leased_by, leased_until, last_attempt_at, last_attempt_error,
    continued_to, dedup_key, trace_context, open_blockers, blocker_count,
    chain_completed_at, has_dependents
FROM {{ schema }}_job
ORDER BY seq;

DROP TABLE {{ schema }}_job;

ALTER TABLE {{ schema }}_job_rebuilt RENAME TO {{ schema }}_job;

-- The indexes of 0001, as they were.
CREATE UNIQUE INDEX {{ schema }}_job_chain_position_idx
ON {{ schema }}_job (chain_id, chain_index)
WHERE chain_index > 0;

CREATE INDEX {{ schema }}_job_claim_idx
ON {{ schema }}_job (priority DESC, scheduled_at, seq)
WHERE status = 'pending';

CREATE INDEX {{ schema }}_job_lease_idx
ON {{ schema }}_job (leased_until)
WHERE status = 'running';

CREATE INDEX {{ schema }}_job_dedup_idx
ON {{ schema }}_job (chain_type_name, dedup_key, created_at DESC)
WHERE dedup_key IS NOT NULL AND chain_index = 0;

CREATE INDEX {{ schema }}_job_chain_root_created_idx
ON {{ schema }}_job (created_at DESC, id DESC)
WHERE chain_index = 0;

-- The trigger of 0002, as it was.
CREATE TRIGGER {{ schema }}_job_blocker_marks_chain
AFTER INSERT ON {{ schema }}_job_blocker
BEGIN
    UPDATE {{ schema }}_job
    SET has_dependents = 1
    WHERE id = new.blocker_chain_id AND has_dependents = 0;
END;

-- The views of 0001, as they were.
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
