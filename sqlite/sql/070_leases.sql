-- Leases: heartbeat (renew_leases), giving back jobs that never started
-- (release_jobs) and recovery of expired ones (reap).

-- name: renew_leases
-- Extends the leases of the jobs running under :worker_id: by :lease, else
-- by each type's lease (60 s for a type never set).
UPDATE {{ schema }}_job AS j
SET leased_until = :now + coalesce(
    :lease,
    (
        SELECT t.lease FROM {{ schema }}_job_type AS t
        WHERE t.type_name = j.type_name
    ),
    60000000
)
WHERE
    j.id IN (SELECT u.value FROM json_each(:job_ids) AS u)
    AND j.status = 'running'
    AND j.leased_by = :worker_id
RETURNING id;

-- name: release_jobs
-- :requests is a JSON array of [job_id, attempt]. Jobs claimed but never
-- started go back to pending at their old place in the queue, with the
-- claim's attempt taken back (a job that never ran never uses up
-- max_attempts) and no error recorded. Fenced like complete_jobs.
UPDATE {{ schema }}_job AS x
SET
    status = 'pending',
    attempt = max(x.attempt - 1, 0),
    leased_by = NULL,
    leased_until = NULL
FROM (
    SELECT
        json_extract(q.value, '$[0]') AS id,
        json_extract(q.value, '$[1]') AS attempt
    FROM json_each(:requests) AS q
) AS r
WHERE
    x.id = r.id
    AND x.status = 'running'
    AND x.leased_by = :worker_id
    AND (r.attempt IS NULL OR x.attempt = r.attempt)
RETURNING id, type_name;

-- name: reap_expired
-- Running jobs whose lease expired, oldest lease first, with the worker
-- that held them (reap's UPDATE cannot return a value it overwrites).
SELECT j.seq, j.id, j.leased_by
FROM {{ schema }}_job AS j
WHERE j.status = 'running' AND j.leased_until < :now
ORDER BY j.leased_until
LIMIT :max_jobs;

-- name: reap
-- Those jobs go back to pending, keeping their scheduled_at (their place in
-- the queue), or to failed when attempts are exhausted; lease cleared. The
-- UPDATE re-checks status and lease, so it never reopens a finished job.
UPDATE {{ schema }}_job AS j
SET
    status = CASE
        WHEN j.attempt >= (
            SELECT t.max_attempts FROM {{ schema }}_job_type AS t
            WHERE t.type_name = j.type_name
        ) THEN 'failed'
        ELSE 'pending'
    END,
    leased_by = NULL,
    leased_until = NULL,
    last_attempt_at = :now,
    last_attempt_error = printf(
        'lease expired: worker %s stopped renewing it (attempt %d)', j.leased_by, j.attempt
    )
WHERE
    j.seq IN (SELECT s.value FROM json_each(:seqs) AS s)
    AND j.status = 'running'
    AND j.leased_until < :now
RETURNING id, status, type_name;

-- name: running_jobs
-- The jobs running under :worker_id: a worker gives back those it does not
-- know of (claimed by a transaction whose answer it never saw).
SELECT j.id, j.attempt, j.type_name
FROM {{ schema }}_job AS j
WHERE j.status = 'running' AND j.leased_by = :worker_id;
