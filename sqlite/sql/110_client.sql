-- Statements of the client functions that the engine's operations do not
-- cover: which job of a chain complete_chain acts on, and what
-- wait_for_chain polls.

-- name: current_job
-- A chain's current job is its last one (the highest chain_index): a later
-- job through job_chain_position_idx, else the root by its id.
-- trace_context and chain_type_name: for the settle span (queuert.telemetry)
SELECT j.id, j.type_name, j.status, j.trace_context, j.chain_type_name
FROM {{ schema }}_job AS j
WHERE
    (j.chain_index > 0 AND j.chain_id = :chain_id)
    OR (j.chain_index = 0 AND j.id = :chain_id)
ORDER BY j.chain_index DESC
LIMIT 1;

-- name: chain_job
-- The job :job_id, if it belongs to chain :chain_id.
SELECT j.id, j.type_name, j.status, j.trace_context, j.chain_type_name
FROM {{ schema }}_job AS j
WHERE j.id = :job_id AND j.chain_id = :chain_id;

-- name: wait_probe
-- The chain view's row, with the last error of the chain's current job (a
-- failed chain reports it).
SELECT
    c.chain_id, c.type_name, c.status, c.current_job_id, c.current_type_name,
    c.job_count, c.created_at, c.completed_at, c.output,
    (
        SELECT j.last_attempt_error FROM {{ schema }}_job AS j
        WHERE j.id = c.current_job_id
    ) AS last_attempt_error
FROM {{ schema }}_chain AS c
WHERE c.chain_id = :chain_id;

-- name: root_trace_context
-- The traceparent stored on a chain's root (its creation span's): what a
-- deduplicated start's span links to (queuert.telemetry).
SELECT j.trace_context
FROM {{ schema }}_job AS j
WHERE j.id = :chain_id;
