-- continue_with: hand a chain on to its next job in one step.

-- name: continue_insert
-- The chain's next job (chain_index + 1), after the job :job_id. Priority
-- and trace context default to the current job's. A given id that exists
-- already inserts nothing (QU006).
INSERT INTO {{ schema }}_job (
    id, type_name, chain_id, chain_type_name, chain_index, input, status,
    priority, scheduled_at, created_at, trace_context, open_blockers, blocker_count
)
SELECT
    :id AS id,
    :type_name AS type_name,
    c.chain_id,
    c.chain_type_name,
    c.chain_index + 1 AS chain_index,
    :input AS input,
    CASE WHEN :open_blockers > 0 THEN 'blocked' ELSE 'pending' END AS status,
    coalesce(:priority, c.priority) AS priority,
    max(coalesce(:schedule_at, :now + :schedule_after, :now), :now) AS scheduled_at,
    :now AS created_at,
    coalesce(:trace_context, c.trace_context) AS trace_context,
    :open_blockers AS open_blockers,
    :blocker_count AS blocker_count
FROM {{ schema }}_job AS c
WHERE c.id = :job_id
ON CONFLICT (id) DO NOTHING
RETURNING id, chain_id, chain_index, type_name, status, scheduled_at;

-- name: continue_hand_off
-- The current job completes as handed off: continued_to set, no output, so
-- the chain is not complete (the job_chain_end trigger skips it).
UPDATE {{ schema }}_job
SET
    status = 'completed',
    output = NULL,
    continued_to = :next_id,
    completed_at = :now,
    completed_by = :worker_id,
    leased_by = NULL,
    leased_until = NULL
WHERE id = :job_id;

-- name: next_job
-- A repeated continue_with returns the existing next job.
SELECT n.id, n.chain_id, n.chain_index, n.type_name, n.status, n.scheduled_at
FROM {{ schema }}_job AS n
WHERE n.id = :id;
