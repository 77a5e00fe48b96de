-- complete and complete_jobs: finish a chain's last job with an output.
--
-- Completing the chain's last job completes the chain: in the same call
-- (the same transaction), complete_chain_roots records it on the roots of
-- the later jobs completed (a root records its own in the completing
-- UPDATE), and resolve_dependents unblocks the dependents whose blockers
-- are now all complete: at most two statements per call, whatever its
-- size, and none for chains that nothing waits on (has_dependents).

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
    -- by complete_chain_roots
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
RETURNING id, chain_id, chain_index, has_dependents;

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
RETURNING id, chain_id, chain_index, has_dependents;

-- name: complete_picked
-- complete_job for a job pick_for_worker read and nobody claimed yet (an
-- atomic slot whose handler never used job.conn, in the transaction of the
-- pick): pending to completed in one UPDATE, with the attempt the claim
-- would have counted. The same end state as claim_picked then complete_job,
-- one row write and two index changes fewer. No RETURNING (SQLite buffers
-- its rows in a temporary table: half this statement's time): the caller
-- knows the job's chain from the pick, or reads it with picked_job.
UPDATE {{ schema }}_job AS x
SET
    status = 'completed',
    attempt = :attempt,
    output = :output,
    completed_at = :now,
    completed_by = :worker_id,
    chain_completed_at = CASE WHEN x.chain_index = 0 THEN :now END
WHERE x.seq = :seq AND x.status = 'pending' AND x.attempt = :attempt - 1;

-- name: picked_job
-- The job at :seq as complete_job's RETURNING has it (complete_picked's
-- caller, when something was written since the pick).
SELECT id, chain_id, chain_index, has_dependents
FROM {{ schema }}_job
WHERE seq = :seq;

-- name: complete_chain_roots
-- The chains of the later jobs (chain_index > 0) just completed, :chain_ids
-- a JSON array, are complete: recorded on their roots, which say whether
-- anything waits on them.
UPDATE {{ schema }}_job
SET chain_completed_at = :now
WHERE
    id IN (SELECT c.value FROM json_each(:chain_ids) AS c)
    AND chain_completed_at IS NULL
RETURNING id, has_dependents;

-- name: resolve_dependents
-- The chains of :chain_ids (a JSON array, distinct) completed now: every
-- job waiting on them has as many open blockers less; a blocked job with
-- none left becomes pending, due no earlier than now. Through
-- job_blocker_chain_idx: nothing to do costs one index probe per chain.
-- Returns the status of each dependent touched ('pending' with no open
-- blocker: unblocked by this call).
UPDATE {{ schema }}_job AS j
SET
    open_blockers = j.open_blockers - d.done,
    status = CASE
        WHEN j.status = 'blocked' AND j.open_blockers = d.done THEN 'pending'
        ELSE j.status
    END,
    scheduled_at = CASE
        WHEN j.status = 'blocked' AND j.open_blockers = d.done
            THEN max(j.scheduled_at, :now)
        ELSE j.scheduled_at
    END
FROM (
    SELECT
        b.job_id,
        count(*) AS done
    FROM json_each(:chain_ids) AS c
    INNER JOIN {{ schema }}_job_blocker AS b ON c.value = b.blocker_chain_id
    GROUP BY b.job_id
) AS d
WHERE j.id = d.job_id
RETURNING status, open_blockers;

-- name: resolve_edges
-- Telemetry (migration 0004): the chains of :traces (a JSON object, chain id
-- -> the traceparent of the span that completed it) completed now; their
-- edges keep that traceparent, which the dependent's claim hands out.
UPDATE {{ schema }}_job_blocker
SET
    resolved_trace_context = (
        SELECT t.value FROM json_each(:traces) AS t
        WHERE t.key = {{ schema }}_job_blocker.blocker_chain_id
    )
WHERE blocker_chain_id IN (SELECT t.key FROM json_each(:traces) AS t);

-- name: blocker_dependents
-- The jobs waiting on the chains of :chain_ids (a JSON array), after their
-- resolution: per edge, the chain, the waiting job, its type, the edge's
-- trace_context and whether the job is now pending.
SELECT
    b.blocker_chain_id,
    b.job_id,
    d.type_name,
    b.trace_context,
    d.status = 'pending' AS pending
FROM json_each(:chain_ids) AS c
INNER JOIN {{ schema }}_job_blocker AS b ON c.value = b.blocker_chain_id
INNER JOIN {{ schema }}_job AS d ON b.job_id = d.id
ORDER BY b.blocker_chain_id, b.job_id;
