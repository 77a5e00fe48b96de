-- fail: record a failed attempt; retry with backoff or give up.

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
        PERFORM {{ schema }}._notify('job_ready', ARRAY[j.type_name]);
    END IF;
    IF fail.worker_id IS NULL AND j.status = 'running' THEN
        PERFORM {{ schema }}._notify('job_lost', ARRAY[j.id::text]);
    END IF;

    RETURN QUERY SELECT j.id, v_status, v_scheduled_at, j.attempt;
END;
$$;
