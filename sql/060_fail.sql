-- fail and fail_jobs: record failed attempts; retry with backoff or give up.

-- Backoff before the next attempt, computed in log space so that a large
-- attempt count saturates at backoff_max instead of overflowing.
CREATE OR REPLACE FUNCTION {{ schema }}._backoff(
    attempt integer,
    backoff_initial interval,
    backoff_multiplier float8,
    backoff_max interval
)
RETURNS interval
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN extract(epoch FROM backoff_initial) <= 0 THEN interval '0'
        WHEN greatest(attempt - 1, 0) * ln(backoff_multiplier)
            + ln(extract(epoch FROM backoff_initial)::float8)
            >= ln(greatest(extract(epoch FROM backoff_max)::float8, 1e-6))
            THEN backoff_max
        ELSE least(
            backoff_initial * power(backoff_multiplier, greatest(attempt - 1, 0)),
            backoff_max
        )
    END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}.fail(
    job_id uuid,
    worker_id text,
    error text,
    retry_at timestamptz DEFAULT NULL,
    attempt integer DEFAULT NULL
)
RETURNS SETOF {{ schema }}.fail_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    j {{ schema }}.job;
    t {{ schema }}.job_type;
    v_status {{ schema }}.job_status;
    v_scheduled_at timestamptz;
BEGIN
    IF fail.retry_at >= timestamptz '10000-01-01 00:00:00+00' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('retry_at must be before the year 10000, got %s', fail.retry_at);
    END IF;
    SELECT * INTO j FROM {{ schema }}.job AS x WHERE x.id = fail.job_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM {{ schema }}._job_not_found(fail.job_id);
    END IF;
    PERFORM {{ schema }}._check_owner(
        j, fail.worker_id, fail.attempt,
        '{pending,running}'::{{ schema }}.job_status[], 'fail'
    );
    SELECT * INTO t FROM {{ schema }}.job_type AS y WHERE y.type_name = j.type_name;

    IF t.max_attempts IS NOT NULL AND j.attempt >= t.max_attempts THEN
        v_status := 'failed';
        v_scheduled_at := j.scheduled_at;
    ELSE
        v_status := 'pending';
        v_scheduled_at := greatest(coalesce(
            fail.retry_at,
            now() + {{ schema }}._backoff(
                j.attempt,
                coalesce(t.backoff_initial, interval '10 seconds'),
                coalesce(t.backoff_multiplier, 2),
                coalesce(t.backoff_max, interval '5 minutes')
            )
        ), now());
    END IF;

    UPDATE {{ schema }}.job AS x
    SET
        status = v_status,
        scheduled_at = v_scheduled_at,
        last_attempt_error = fail.error,
        last_attempt_at = now(),
        leased_by = NULL,
        leased_until = NULL
    WHERE x.id = j.id;

    IF v_status = 'pending' THEN
        PERFORM {{ schema }}._notify_batch('job_ready', ARRAY[j.type_name]);
    END IF;
    IF fail.worker_id IS NULL AND j.status = 'running' THEN
        PERFORM {{ schema }}._notify_batch('job_lost', ARRAY[j.id::text]);
    END IF;

    RETURN QUERY SELECT j.id, v_status, v_scheduled_at, j.attempt;
END;
$$;

-- Batched failure for workers: records a failed attempt of each job that is
-- running under worker_id at the given attempt, in one transaction, and
-- reports the others instead of failing the batch (as complete_jobs does):
-- outcome 'failed' for the jobs it changed, else 'taken' (another worker, or
-- a stale attempt), 'finished' (no longer running) or 'not_found'. A changed
-- job goes where fail() would send it: 'pending' at retry_at (clamped to
-- now) or at now + its type's backoff, or 'failed' once its type's
-- max_attempts is reached; status and scheduled_at say which (NULL on the
-- other rows).
CREATE OR REPLACE FUNCTION {{ schema }}.fail_jobs(
    worker_id text,
    job_ids uuid [],
    errors text [],
    retry_ats timestamptz [] DEFAULT NULL,
    attempts integer [] DEFAULT NULL
)
RETURNS TABLE (
    job_id uuid, outcome text, status {{ schema }}.job_status, scheduled_at timestamptz
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_done uuid[];
    v_statuses {{ schema }}.job_status[];
    v_scheduled timestamptz[];
    v_ready text[];
    v_notified integer;
BEGIN
    IF cardinality(fail_jobs.errors) IS DISTINCT FROM cardinality(fail_jobs.job_ids)
        OR cardinality(fail_jobs.retry_ats) <> cardinality(fail_jobs.job_ids)
        OR cardinality(fail_jobs.attempts) <> cardinality(fail_jobs.job_ids) THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'errors, retry_ats and attempts must have one element per job id';
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(fail_jobs.retry_ats) AS r (at)
        WHERE r.at >= timestamptz '10000-01-01 00:00:00+00'
    ) THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'retry_ats must be before the year 10000';
    END IF;
    PERFORM {{ schema }}._lock_worker_jobs('fail_jobs', fail_jobs.worker_id, fail_jobs.job_ids);

    WITH req AS (
        SELECT DISTINCT ON (u.id) u.id, u.error, u.retry_at, u.attempt
        FROM unnest(
            fail_jobs.job_ids,
            fail_jobs.errors,
            coalesce(fail_jobs.retry_ats, array_fill(NULL::timestamptz, ARRAY[cardinality(fail_jobs.job_ids)])),
            coalesce(fail_jobs.attempts, array_fill(NULL::integer, ARRAY[cardinality(fail_jobs.job_ids)]))
        ) WITH ORDINALITY AS u (id, error, retry_at, attempt, o)
        ORDER BY u.id, u.o
    ),
    -- The jobs are locked above: read each with its type's policy first.
    owned AS (
        SELECT
            x.id,
            req.error,
            t.max_attempts IS NOT NULL AND x.attempt >= t.max_attempts AS exhausted,
            greatest(coalesce(
                req.retry_at,
                now() + {{ schema }}._backoff(
                    x.attempt,
                    coalesce(t.backoff_initial, interval '10 seconds'),
                    coalesce(t.backoff_multiplier, 2),
                    coalesce(t.backoff_max, interval '5 minutes')
                )
            ), now()) AS retry_at
        FROM req
        JOIN {{ schema }}.job AS x ON x.id = req.id
        LEFT JOIN {{ schema }}.job_type AS t ON t.type_name = x.type_name
        WHERE x.status = 'running'
            AND x.leased_by = fail_jobs.worker_id
            AND (req.attempt IS NULL OR x.attempt = req.attempt)
    ),
    done AS (
        UPDATE {{ schema }}.job AS x
        SET
            status = CASE WHEN o.exhausted THEN 'failed' ELSE 'pending' END::{{ schema }}.job_status,
            scheduled_at = CASE WHEN o.exhausted THEN x.scheduled_at ELSE o.retry_at END,
            last_attempt_error = o.error,
            last_attempt_at = now(),
            leased_by = NULL,
            leased_until = NULL
        FROM owned AS o
        WHERE x.id = o.id
        RETURNING x.id, x.type_name, x.status, x.scheduled_at
    )
    SELECT
        coalesce(array_agg(d.id), '{}'),
        coalesce(array_agg(d.status), '{}'),
        coalesce(array_agg(d.scheduled_at), '{}'),
        coalesce(array_agg(DISTINCT d.type_name) FILTER (WHERE d.status = 'pending'), '{}')
    INTO v_done, v_statuses, v_scheduled, v_ready
    FROM done AS d;

    v_notified := {{ schema }}._notify_batch('job_ready', v_ready);

    RETURN QUERY
    SELECT
        o.job_id,
        o.outcome,
        v_statuses[array_position(v_done, o.job_id)],
        v_scheduled[array_position(v_done, o.job_id)]
    FROM {{ schema }}._batch_outcomes(fail_jobs.job_ids, v_done, 'failed') AS o;
END;
$$;
