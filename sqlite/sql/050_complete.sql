-- complete and complete_jobs: finish a chain's last job with an output.
--
-- Completing the chain's last job completes the chain: the triggers of
-- migration 0001 record it on the root and unblock the dependents whose
-- blockers are now all complete, in this same statement.

-- name: complete_jobs
-- :requests is a JSON array of [job_id, output JSON text, attempt]. With a
-- :worker_id, only jobs running under it at the given attempt (when given)
-- complete: the worker's batched acknowledgement. Without one it is the
-- outside completion of complete(), whose job the caller has checked.
UPDATE {{ schema }}_job AS x
SET
    status = 'completed',
    output = r.output,
    completed_at = :now,
    completed_by = :worker_id,
    leased_by = NULL,
    leased_until = NULL,
    -- a root completes its chain right here; a later job's root is marked
    -- by the job_chain_end trigger
    chain_completed_at = CASE WHEN x.chain_index = 0 THEN :now END
FROM (
    SELECT
        json_extract(q.value, '$[0]') AS id,
        json_extract(q.value, '$[1]') AS output,
        json_extract(q.value, '$[2]') AS attempt
    FROM json_each(:requests) AS q
) AS r
WHERE
    x.id = r.id
    AND (
        :worker_id IS NULL
        OR (
            x.status = 'running'
            AND x.leased_by = :worker_id
            AND (r.attempt IS NULL OR x.attempt = r.attempt)
        )
    )
RETURNING id, chain_id, chain_index;

-- name: complete_job
-- complete_jobs for one job (the common acknowledgement of a worker that
-- completes each job in its own transaction): the same UPDATE without the
-- JSON list.
UPDATE {{ schema }}_job AS x
SET
    status = 'completed',
    output = :output,
    completed_at = :now,
    completed_by = :worker_id,
    leased_by = NULL,
    leased_until = NULL,
    chain_completed_at = CASE WHEN x.chain_index = 0 THEN :now END
WHERE
    x.id = :id
    AND (
        :worker_id IS NULL
        OR (
            x.status = 'running'
            AND x.leased_by = :worker_id
            AND (:attempt IS NULL OR x.attempt = :attempt)
        )
    )
RETURNING id, chain_id, chain_index;
