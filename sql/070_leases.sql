-- Leases: heartbeat (renew_leases), giving back jobs that never started
-- (release_jobs) and recovery of expired ones (reap).

CREATE OR REPLACE FUNCTION {{ schema }}.renew_leases(
    worker_id text,
    job_ids uuid [],
    lease interval DEFAULT NULL
)
RETURNS TABLE (job_id uuid, outcome text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    IF renew_leases.lease <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('lease must be positive, got %s', renew_leases.lease);
    END IF;
    IF renew_leases.lease > interval '1000 years' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('lease must be at most 1000 years, got %s', renew_leases.lease);
    END IF;

    PERFORM {{ schema }}._lock_worker_jobs(
        'renew_leases', renew_leases.worker_id, renew_leases.job_ids
    );

    RETURN QUERY
    WITH req AS (
        SELECT u.id, min(u.o) AS o
        FROM unnest(renew_leases.job_ids) WITH ORDINALITY AS u (id, o)
        GROUP BY u.id
    ),
    renewed AS (
        UPDATE {{ schema }}.job AS j
        SET leased_until = clock_timestamp() + coalesce(
            renew_leases.lease,
            (SELECT t.lease FROM {{ schema }}.job_type AS t WHERE t.type_name = j.type_name),
            interval '60 seconds'
        )
        FROM req
        WHERE j.id = req.id
            AND j.status = 'running'
            AND j.leased_by = renew_leases.worker_id
        RETURNING j.id
    )
    SELECT
        req.id,
        CASE
            WHEN r.id IS NOT NULL THEN 'renewed'
            WHEN j.id IS NULL THEN 'not_found'
            WHEN j.status = 'running' THEN 'taken'
            ELSE 'finished'
        END
    FROM req
    LEFT JOIN renewed AS r ON r.id = req.id
    LEFT JOIN {{ schema }}.job AS j ON j.id = req.id
    ORDER BY req.o;
END;
$$;

-- Gives back jobs a worker claimed but never started (claimed ahead and
-- still queued at shutdown, or claimed by a transaction whose answer was
-- lost): pending again at their old place in the queue, with the claim's
-- attempt taken back, so a job that never ran never uses up max_attempts
-- and gets no last_attempt_error. Fenced like complete_jobs; outcome per
-- job: 'released', 'taken' (another worker holds it, or a stale attempt),
-- 'finished' (no longer running), 'not_found'. A handler that did start
-- is failed instead (fail), since it may have had effects.
CREATE OR REPLACE FUNCTION {{ schema }}.release_jobs(
    worker_id text,
    job_ids uuid [],
    attempts integer [] DEFAULT NULL
)
RETURNS TABLE (job_id uuid, outcome text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_released uuid[];
    v_types text[];
    v_notified integer;
BEGIN
    IF cardinality(release_jobs.attempts) <> cardinality(release_jobs.job_ids) THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'attempts must have one element per job id';
    END IF;
    PERFORM {{ schema }}._lock_worker_jobs(
        'release_jobs', release_jobs.worker_id, release_jobs.job_ids
    );

    WITH req AS (
        SELECT DISTINCT ON (u.id) u.id, u.attempt
        FROM unnest(
            release_jobs.job_ids,
            coalesce(release_jobs.attempts, array_fill(NULL::integer, ARRAY[cardinality(release_jobs.job_ids)]))
        ) WITH ORDINALITY AS u (id, attempt, o)
        ORDER BY u.id, u.o
    ),
    released AS (
        UPDATE {{ schema }}.job AS j
        SET
            status = 'pending',
            attempt = greatest(j.attempt - 1, 0),
            leased_by = NULL,
            leased_until = NULL
        FROM req
        WHERE j.id = req.id
            AND j.status = 'running'
            AND j.leased_by = release_jobs.worker_id
            AND (req.attempt IS NULL OR j.attempt = req.attempt)
        RETURNING j.id, j.type_name
    )
    SELECT coalesce(array_agg(r.id), '{}'), coalesce(array_agg(DISTINCT r.type_name), '{}')
    INTO v_released, v_types
    FROM released AS r;

    v_notified := {{ schema }}._notify_batch('job_ready', v_types);

    RETURN QUERY
    SELECT o.job_id, o.outcome
    FROM {{ schema }}._batch_outcomes(release_jobs.job_ids, v_released, 'released') AS o;
END;
$$;

-- After a worker lost the answer of a claim: gives back (as release_jobs
-- does: pending again, attempt restored, fenced by the attempt read here)
-- the jobs running under worker_id that are not among known_ids, the jobs the
-- worker knows it holds. Returns the jobs released and their types. Rare (a
-- connection lost during a claim), so it walks the running jobs' index.
CREATE OR REPLACE FUNCTION {{ schema }}.release_unknown_jobs(
    worker_id text,
    known_ids uuid [] DEFAULT '{}'
)
RETURNS TABLE (job_id uuid, type_name text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids uuid[];
    v_attempts integer[];
    v_types text[];
BEGIN
    IF release_unknown_jobs.worker_id IS NULL
        OR array_ndims(release_unknown_jobs.known_ids) > 1
        OR array_position(release_unknown_jobs.known_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'release_unknown_jobs needs a worker_id and an array of job ids without NULLs';
    END IF;
    SELECT
        coalesce(array_agg(j.id ORDER BY j.id), '{}'),
        coalesce(array_agg(j.attempt ORDER BY j.id), '{}'),
        coalesce(array_agg(j.type_name ORDER BY j.id), '{}')
    INTO v_ids, v_attempts, v_types
    FROM {{ schema }}.job AS j
    WHERE j.status = 'running'
        AND j.leased_by = release_unknown_jobs.worker_id
        AND NOT j.id = ANY(coalesce(release_unknown_jobs.known_ids, '{}'));
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    -- release_jobs answers one row per id, in input order
    RETURN QUERY
    SELECT r.job_id, t.type_name
    FROM {{ schema }}.release_jobs(release_unknown_jobs.worker_id, v_ids, v_attempts)
        WITH ORDINALITY AS r (job_id, outcome, o)
    INNER JOIN unnest(v_types) WITH ORDINALITY AS t (type_name, o) ON t.o = r.o
    WHERE r.outcome = 'released'
    ORDER BY r.o;
END;
$$;

-- Running jobs whose lease expired go back to pending (keeping their place
-- in the queue) or to failed when attempts are exhausted. The UPDATE
-- re-checks status and lease, so a job that completed meanwhile is never
-- reopened. Safe to call from every worker at once. reap_jobs also returns
-- each job's type, for a worker that announces what it reaped through a
-- notifier of its own (job_ready per type) without reading job itself;
-- reap, below, is the same without it.
CREATE OR REPLACE FUNCTION {{ schema }}.reap_jobs(max_jobs integer DEFAULT 100)
RETURNS TABLE (job_id uuid, previous_worker text, status {{ schema }}.job_status, type_name text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_sort = off
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids uuid[];
    v_workers text[];
    v_statuses {{ schema }}.job_status[];
    v_types text[];
    v_ready text[];
    v_notified integer;
BEGIN
    IF reap_jobs.max_jobs < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('max_jobs must be at least 1, got %s', reap_jobs.max_jobs);
    END IF;

    WITH expired AS MATERIALIZED (
        SELECT j.id, j.leased_by
        FROM {{ schema }}.job AS j
        WHERE j.status = 'running' AND j.leased_until < clock_timestamp()
        ORDER BY j.leased_until
        LIMIT coalesce(reap_jobs.max_jobs, 100)
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    reaped AS (
        UPDATE {{ schema }}.job AS j
        SET
            status = CASE
                WHEN j.attempt >= (
                    SELECT t.max_attempts FROM {{ schema }}.job_type AS t
                    WHERE t.type_name = j.type_name
                ) THEN 'failed'::{{ schema }}.job_status
                ELSE 'pending'::{{ schema }}.job_status
            END,
            leased_by = NULL,
            leased_until = NULL,
            last_attempt_at = now(),
            last_attempt_error = format(
                'lease expired: worker %s stopped renewing it (attempt %s)',
                e.leased_by, j.attempt
            )
        FROM expired AS e
        WHERE j.id = e.id
            AND j.status = 'running'
            AND j.leased_until < clock_timestamp()
        RETURNING j.id, e.leased_by, j.status, j.type_name
    )
    SELECT
        coalesce(array_agg(r.id), '{}'),
        coalesce(array_agg(r.leased_by), '{}'),
        coalesce(array_agg(r.status), '{}'),
        coalesce(array_agg(r.type_name), '{}'),
        coalesce(array_agg(DISTINCT r.type_name) FILTER (WHERE r.status = 'pending'), '{}')
    INTO v_ids, v_workers, v_statuses, v_types, v_ready
    FROM reaped AS r;

    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    SELECT {{ schema }}._notify_batch('job_lost', array_agg(i::text)) INTO v_notified
    FROM unnest(v_ids) AS i;
    v_notified := {{ schema }}._notify_batch('job_ready', v_ready);

    RETURN QUERY
    SELECT x.id, x.w, x.s, x.t FROM unnest(v_ids, v_workers, v_statuses, v_types) AS x (id, w, s, t);
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}.reap(max_jobs integer DEFAULT 100)
RETURNS TABLE (job_id uuid, previous_worker text, status {{ schema }}.job_status)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_sort = off
SET enable_seqscan = off
SET jit = off
AS $$
    SELECT r.job_id, r.previous_worker, r.status FROM {{ schema }}.reap_jobs(reap.max_jobs) AS r
$$;
