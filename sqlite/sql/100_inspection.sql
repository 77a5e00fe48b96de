-- Read-only statements for the inspection functions, the CLI and the
-- dashboard. The views {{ schema }}_chain and {{ schema }}_stats (migration
-- 0001) serve readers of the database file directly.

-- name: chain
SELECT
    c.chain_id, c.type_name, c.status, c.current_job_id, c.current_type_name,
    c.job_count, c.created_at, c.completed_at, c.output
FROM {{ schema }}_chain AS c
WHERE c.chain_id = :chain_id;

-- name: chain_jobs
-- The chain's jobs in chain_index order: the root by id, later jobs
-- through job_chain_position_idx.
SELECT
    j.id, j.type_name, j.chain_id, j.chain_type_name, j.chain_index, j.input,
    j.output, j.status, j.priority, j.attempt, j.scheduled_at, j.created_at,
    j.completed_at, j.completed_by, j.leased_by, j.leased_until, j.last_attempt_at,
    j.last_attempt_error, j.continued_to, j.dedup_key, j.trace_context,
    j.seq, j.open_blockers, j.chain_completed_at
FROM {{ schema }}_job AS j
WHERE
    (j.chain_index > 0 AND j.chain_id = :chain_id)
    OR (j.chain_index = 0 AND j.id = :chain_id)
ORDER BY j.chain_index;

-- name: list_chains
-- Chains newest first, optionally of one type and some statuses, after a
-- (created_at, id) cursor; through job_chain_root_created_idx.
SELECT
    c.chain_id, c.type_name, c.status, c.current_job_id, c.current_type_name,
    c.job_count, c.created_at, c.completed_at, c.output
FROM {{ schema }}_job AS r
INNER JOIN {{ schema }}_chain AS c ON r.id = c.chain_id
WHERE
    r.chain_index = 0
    AND (:type_name IS NULL OR r.type_name = :type_name)
    AND (:statuses IS NULL OR c.status IN (SELECT s.value FROM json_each(:statuses) AS s))
    AND (:after_created_at IS NULL OR (r.created_at, r.id) < (:after_created_at, :after_id))
ORDER BY r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: stats
-- One row per type and status; oldest_due_age (microseconds) is how long
-- the oldest due pending job has waited, by the engine's clock.
SELECT
    j.type_name,
    j.status,
    count(*) AS count,
    :now - min(
        CASE WHEN j.status = 'pending' AND j.scheduled_at <= :now THEN j.scheduled_at END
    ) AS oldest_due_age
FROM {{ schema }}_job AS j
GROUP BY j.type_name, j.status
ORDER BY j.type_name, j.status;

-- name: chain_blockers
-- The blocker chains of the chain's jobs, by job and position (queuert
-- chain shows them).
SELECT b.job_id, b.blocker_chain_id
FROM {{ schema }}_job_blocker AS b
INNER JOIN {{ schema }}_job AS j ON b.job_id = j.id
WHERE
    (j.chain_index > 0 AND j.chain_id = :chain_id)
    OR (j.chain_index = 0 AND j.id = :chain_id)
ORDER BY b.job_id, b.position;
