-- Who may act on a job: a missing job is QU001; a worker must hold the job
-- at the attempt it names (QU004), an outside caller finds it in an
-- allowed status (QU003). Single calls (complete, continue_with, fail) raise;
-- the worker's batch calls lock its jobs in the one order every writer uses
-- and answer per job instead.

-- QU001 for a job id that does not exist.
CREATE OR REPLACE FUNCTION {{ schema }}._job_not_found(job_id uuid)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'QU001',
        MESSAGE = format('job %s not found', job_id),
        DETAIL = format('job_id=%s', job_id);
END;
$$;

-- Ownership and fencing shared by complete, continue_with and fail. With a
-- worker the job must be running under it (an expired lease that nobody
-- reclaimed still counts); without one (a call from outside) the job must be
-- in one of outside_statuses. A given attempt must be the current one.
CREATE OR REPLACE FUNCTION {{ schema }}._check_owner(
    j {{ schema }}.job,
    worker_id text,
    attempt integer,
    outside_statuses {{ schema }}.job_status [],
    action text
)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF worker_id IS NOT NULL THEN
        IF j.status <> 'running' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'QU003',
                MESSAGE = format('cannot %s job %s: it is %s, not running', action, j.id, j.status),
                DETAIL = format('job_id=%s, status=%s', j.id, j.status);
        END IF;
        IF j.leased_by IS DISTINCT FROM worker_id THEN
            RAISE EXCEPTION USING
                ERRCODE = 'QU004',
                MESSAGE = format(
                    'cannot %s job %s: it is held by worker %s, not %s',
                    action, j.id, j.leased_by, worker_id
                ),
                DETAIL = format('job_id=%s, worker_id=%s', j.id, j.leased_by);
        END IF;
    ELSIF NOT (j.status = ANY(outside_statuses)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU003',
            MESSAGE = format('cannot %s job %s from outside: it is %s', action, j.id, j.status),
            DETAIL = format('job_id=%s, status=%s', j.id, j.status);
    END IF;
    IF attempt IS NOT NULL AND attempt <> j.attempt THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU004',
            MESSAGE = format(
                'cannot %s job %s: attempt %s is stale, the job is at attempt %s',
                action, j.id, attempt, j.attempt
            ),
            DETAIL = format('job_id=%s, attempt=%s', j.id, j.attempt);
    END IF;
END;
$$;

-- Shared by renew_leases, release_jobs and fail_jobs: checks the worker id
-- and the job id array (QU006 naming the caller), then locks the jobs in the
-- order every writer uses (roots, then the rest, by id; complete_jobs too),
-- so a flush, a heartbeat and a release never deadlock.
CREATE OR REPLACE FUNCTION {{ schema }}._lock_worker_jobs(
    caller text, worker_id text, job_ids uuid []
)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF worker_id IS NULL OR job_ids IS NULL
        OR array_ndims(job_ids) > 1
        OR array_position(job_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('%s needs a worker_id and an array of job ids without NULLs', caller);
    END IF;
    PERFORM 1
    FROM {{ schema }}.job AS j
    WHERE j.id = ANY(_lock_worker_jobs.job_ids)
    ORDER BY j.chain_index > 0, j.id
    FOR NO KEY UPDATE;
END;
$$;

-- The per-job answer of a fenced batch call (complete_jobs, release_jobs,
-- fail_jobs), in input order: done_outcome for the jobs it changed, else why not:
-- 'not_found', 'taken' (running under another worker or attempt) or
-- 'finished' (no longer running). Inlined into the caller's statement.
CREATE OR REPLACE FUNCTION {{ schema }}._batch_outcomes(
    job_ids uuid [], done uuid [], done_outcome text
)
RETURNS TABLE (job_id uuid, outcome text)
LANGUAGE sql STABLE
AS $$
    -- A lookup per refused id, not a join: with few statistics a join to
    -- job may be planned as a merge join walking the whole primary key.
    SELECT
        u.id,
        CASE
            WHEN u.id = ANY(_batch_outcomes.done) THEN _batch_outcomes.done_outcome
            ELSE coalesce((
                SELECT CASE WHEN x.status = 'running' THEN 'taken' ELSE 'finished' END
                FROM {{ schema }}.job AS x
                WHERE x.id = u.id
            ), 'not_found')
        END
    FROM unnest(_batch_outcomes.job_ids) WITH ORDINALITY AS u (id, o)
    ORDER BY u.o
$$;
