-- Retry, lease and limit policy per job type.

CREATE OR REPLACE FUNCTION {{ schema }}.set_job_type(
    type_name text,
    max_attempts integer DEFAULT NULL,
    backoff_initial interval DEFAULT '10 seconds',
    backoff_multiplier float8 DEFAULT 2,
    backoff_max interval DEFAULT '5 minutes',
    lease interval DEFAULT '60 seconds',
    max_running integer DEFAULT NULL,
    rate_limit integer DEFAULT NULL,
    rate_interval interval DEFAULT NULL
)
RETURNS {{ schema }}.job_type
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_row {{ schema }}.job_type;
    v_initial interval := coalesce(set_job_type.backoff_initial, interval '10 seconds');
    v_multiplier float8 := coalesce(set_job_type.backoff_multiplier, 2);
    v_max interval := coalesce(set_job_type.backoff_max, interval '5 minutes');
    v_lease interval := coalesce(set_job_type.lease, interval '60 seconds');
BEGIN
    PERFORM {{ schema }}._check_type_name(set_job_type.type_name);
    IF set_job_type.max_attempts < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('max_attempts must be at least 1 or NULL, got %s', set_job_type.max_attempts);
    END IF;
    IF v_initial < interval '0' OR v_max < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'backoff_initial and backoff_max must not be negative';
    END IF;
    IF v_multiplier < 1 OR v_multiplier = 'NaN'::float8 OR v_multiplier = 'Infinity'::float8 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('backoff_multiplier must be a finite number >= 1, got %s', v_multiplier);
    END IF;
    IF greatest(v_initial, v_max, v_lease) > interval '1000 years' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'backoff_initial, backoff_max and lease must be at most 1000 years';
    END IF;
    IF v_lease <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('lease must be positive, got %s', v_lease);
    END IF;
    IF set_job_type.max_running NOT BETWEEN 0 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('max_running must be between 0 and 10000 or NULL, got %s', set_job_type.max_running);
    END IF;
    IF set_job_type.rate_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('rate_limit must be between 1 and 10000 or NULL, got %s', set_job_type.rate_limit);
    END IF;
    IF (set_job_type.rate_limit IS NULL) <> (set_job_type.rate_interval IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'rate_limit and rate_interval go together: give both or neither';
    END IF;
    IF set_job_type.rate_interval <= interval '0' OR set_job_type.rate_interval > interval '1000 years' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('rate_interval must be positive and at most 1000 years, got %s', set_job_type.rate_interval);
    END IF;
    INSERT INTO {{ schema }}.job_type AS t (
        type_name, max_attempts, backoff_initial, backoff_multiplier,
        backoff_max, lease, max_running, rate_limit, rate_interval, updated_at
    )
    VALUES (
        set_job_type.type_name, set_job_type.max_attempts, v_initial, v_multiplier,
        v_max, v_lease, set_job_type.max_running, set_job_type.rate_limit,
        set_job_type.rate_interval, now()
    )
    ON CONFLICT (type_name) DO UPDATE SET
        max_attempts = excluded.max_attempts,
        backoff_initial = excluded.backoff_initial,
        backoff_multiplier = excluded.backoff_multiplier,
        backoff_max = excluded.backoff_max,
        lease = excluded.lease,
        max_running = excluded.max_running,
        rate_limit = excluded.rate_limit,
        rate_interval = excluded.rate_interval,
        updated_at = excluded.updated_at
    RETURNING t.* INTO v_row;

    -- One token row per unit of each limit (sql/018_claim_limits.sql).
    -- Lowering a limit drops the highest slots; their jobs run on, so the
    -- lower limit holds once enough of them finish.
    DELETE FROM {{ schema }}.job_running_slot AS s
    WHERE s.type_name = v_row.type_name AND s.slot > coalesce(v_row.max_running, 0);
    INSERT INTO {{ schema }}.job_running_slot (type_name, slot)
    SELECT v_row.type_name, g FROM generate_series(1, coalesce(v_row.max_running, 0)) AS g
    ON CONFLICT DO NOTHING;
    DELETE FROM {{ schema }}.job_rate_slot AS s
    WHERE s.type_name = v_row.type_name AND s.slot > coalesce(v_row.rate_limit, 0);
    INSERT INTO {{ schema }}.job_rate_slot (type_name, slot)
    SELECT v_row.type_name, g FROM generate_series(1, coalesce(v_row.rate_limit, 0)) AS g
    ON CONFLICT DO NOTHING;
    -- Jobs of the type that run without a slot (claimed before the limit
    -- was set, or whose slot a lower limit dropped) take the free ones, so
    -- a new or raised limit counts them.
    UPDATE {{ schema }}.job_running_slot AS s
    SET job_id = o.id, attempt = o.attempt
    FROM (
        SELECT f.slot, row_number() OVER (ORDER BY f.slot) AS n
        FROM {{ schema }}.job_running_slot AS f
        WHERE f.type_name = v_row.type_name
            AND NOT EXISTS (
                SELECT 1 FROM {{ schema }}.job AS j
                WHERE j.id = f.job_id AND j.status = 'running' AND j.attempt = f.attempt
            )
    ) AS free
    JOIN (
        SELECT j.id, j.attempt, row_number() OVER (ORDER BY j.id) AS n
        FROM {{ schema }}.job AS j
        WHERE j.status = 'running' AND j.leased_until IS NOT NULL AND j.type_name = v_row.type_name
            AND NOT EXISTS (
                SELECT 1 FROM {{ schema }}.job_running_slot AS h
                WHERE h.type_name = v_row.type_name AND h.job_id = j.id AND h.attempt = j.attempt
            )
    ) AS o ON o.n = free.n
    WHERE s.type_name = v_row.type_name AND s.slot = free.slot;
    RETURN v_row;
END;
$$;
