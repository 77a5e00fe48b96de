-- trigger_jobs and retry_jobs: all-or-nothing operations on explicit jobs.

-- name: job_not_allowed
-- The first of the jobs :job_ids that does not exist (reported first) or
-- whose status is not in :allowed; no row when all may go ahead.
SELECT u.value AS id, x.status
FROM json_each(:job_ids) AS u
LEFT JOIN {{ schema }}_job AS x ON u.value = x.id
WHERE x.id IS NULL OR x.status NOT IN (SELECT a.value FROM json_each(:allowed) AS a)
ORDER BY x.id IS NOT NULL, u.key
LIMIT 1;

-- name: trigger_jobs
-- Pending jobs due now (an overdue one keeps its earlier time).
UPDATE {{ schema }}_job
SET scheduled_at = min(scheduled_at, :now)
WHERE id IN (SELECT u.value FROM json_each(:job_ids) AS u)
RETURNING type_name;

-- name: retry_jobs
-- Failed or cancelled jobs run again: attempt back to 0 so max_attempts
-- applies afresh, due now, blocked again while a blocker chain is
-- incomplete (counted afresh).
UPDATE {{ schema }}_job AS j
SET
    status = CASE WHEN o.n > 0 THEN 'blocked' ELSE 'pending' END,
    open_blockers = o.n,
    attempt = 0,
    scheduled_at = :now,
    leased_by = NULL,
    leased_until = NULL
FROM (
    SELECT
        u.value AS id,
        (
            SELECT count(*) FROM {{ schema }}_job_blocker AS b
            INNER JOIN {{ schema }}_job AS r ON b.blocker_chain_id = r.id
            WHERE b.job_id = u.value AND r.chain_completed_at IS NULL
        ) AS n
    FROM json_each(:job_ids) AS u
) AS o
WHERE j.id = o.id
RETURNING type_name, status;
