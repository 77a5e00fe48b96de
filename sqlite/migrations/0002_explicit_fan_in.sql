-- queuert for SQLite 0002: fan-in is resolved by the completing call's own
-- statements (sqlite/sql/050_complete.sql: complete_chain_roots,
-- resolve_dependents), once per batch, instead of by two triggers that ran
-- per completed row. A trigger made SQLite build the old and new row of
-- every completed job and run a sub-program per row, even for the chains
-- nothing waits on: about half of a batched acknowledgement's time.

DROP TRIGGER {{ schema }}_job_chain_completed;

DROP TRIGGER {{ schema }}_job_chain_end;

-- A root that some job waits on (a blocker edge names its chain) says so,
-- so that completing a chain nothing waits on (most chains) skips
-- resolve_dependents altogether. Set by the trigger below when an edge is
-- written; never cleared (a stale 1 after its dependents were deleted
-- costs one resolve_dependents that finds nothing).
ALTER TABLE {{ schema }}_job ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0
CHECK (has_dependents IN (0, 1));

UPDATE {{ schema }}_job
SET has_dependents = 1
WHERE id IN (SELECT b.blocker_chain_id FROM {{ schema }}_job_blocker AS b);

CREATE TRIGGER {{ schema }}_job_blocker_marks_chain
AFTER INSERT ON {{ schema }}_job_blocker
BEGIN
    UPDATE {{ schema }}_job
    SET has_dependents = 1
    WHERE id = new.blocker_chain_id AND has_dependents = 0;
END;
