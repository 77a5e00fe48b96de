-- start_chain: a chain's root job, created in the caller's transaction.

CREATE OR REPLACE FUNCTION {{ schema }}.start_chain(
    type_name text,
    input jsonb DEFAULT NULL,
    id uuid DEFAULT NULL,
    schedule_at timestamptz DEFAULT NULL,
    schedule_after interval DEFAULT NULL,
    blockers uuid [] DEFAULT NULL,
    dedup_key text DEFAULT NULL,
    dedup_scope text DEFAULT 'incomplete',
    dedup_window interval DEFAULT NULL,
    priority integer DEFAULT 0,
    trace_context text DEFAULT NULL
)
RETURNS SETOF {{ schema }}.start_chain_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id uuid := coalesce(start_chain.id, {{ schema }}._new_job_id());
    v_scope text := coalesce(start_chain.dedup_scope, 'incomplete');
    v_scheduled_at timestamptz := now();
    v_blockers uuid[];
    v_open uuid[] := '{}';
    v_status {{ schema }}.job_status := 'pending';
    v_result {{ schema }}.start_chain_result;
    v_inserted integer;
    v_notified integer;
BEGIN
    -- The common start (no id, schedule, blockers or dedup key) runs only
    -- simple expressions and one INSERT: every check below is an inline
    -- condition, and the helper that words the error runs only on failure.
    IF length(start_chain.type_name) BETWEEN 1 AND 255 IS NOT TRUE THEN
        PERFORM {{ schema }}._check_type_name(start_chain.type_name);
    END IF;
    IF v_scope NOT IN ('incomplete', 'any') OR start_chain.dedup_window IS NOT NULL THEN
        PERFORM {{ schema }}._check_dedup_args(v_scope, start_chain.dedup_window);
    END IF;
    IF octet_length(start_chain.dedup_key) > 1024 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format(
                'dedup_key must be at most 1024 bytes, got %s', octet_length(start_chain.dedup_key)
            );
    END IF;
    IF start_chain.schedule_at IS NOT NULL OR start_chain.schedule_after IS NOT NULL THEN
        v_scheduled_at := {{ schema }}._schedule(start_chain.schedule_at, start_chain.schedule_after);
    END IF;

    IF start_chain.dedup_key IS NOT NULL THEN
        PERFORM {{ schema }}._guard_dedup_keys(
            ARRAY[start_chain.type_name], ARRAY[start_chain.dedup_key]
        );
        -- A later statement than the guard: sees a start that committed while
        -- we waited.
        SELECT * INTO v_result
        FROM {{ schema }}._find_dedup_match(
            start_chain.type_name, start_chain.dedup_key, v_scope, start_chain.dedup_window
        );
        IF FOUND THEN
            RETURN NEXT v_result;
            RETURN;
        END IF;
    END IF;

    IF start_chain.blockers IS NOT NULL THEN
        v_blockers := {{ schema }}._distinct_blockers(start_chain.blockers);
        IF cardinality(v_blockers) > 0 THEN
            v_open := {{ schema }}._lock_blocker_chains(v_blockers);
            IF cardinality(v_open) > 0 THEN
                v_status := 'blocked';
            END IF;
        END IF;
    END IF;

    IF start_chain.id IS NULL THEN
        -- A fresh id cannot collide: no speculative insertion (ON CONFLICT
        -- costs 10-20 % more).
        INSERT INTO {{ schema }}.job (
            id, type_name, chain_id, chain_type_name, chain_index, input, status,
            priority, scheduled_at, dedup_key, trace_context, open_blockers
        )
        VALUES (
            v_id, start_chain.type_name, v_id, start_chain.type_name, 0, start_chain.input,
            v_status, coalesce(start_chain.priority, 0), v_scheduled_at,
            start_chain.dedup_key, start_chain.trace_context, cardinality(v_open)
        );
    ELSE
        INSERT INTO {{ schema }}.job (
            id, type_name, chain_id, chain_type_name, chain_index, input, status,
            priority, scheduled_at, dedup_key, trace_context, open_blockers
        )
        VALUES (
            v_id, start_chain.type_name, v_id, start_chain.type_name, 0, start_chain.input,
            v_status, coalesce(start_chain.priority, 0), v_scheduled_at,
            start_chain.dedup_key, start_chain.trace_context, cardinality(v_open)
        )
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted = 0 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'QU006',
                MESSAGE = format('a job with id %s already exists', v_id),
                DETAIL = format('job_id=%s', v_id);
        END IF;
    END IF;

    IF cardinality(v_blockers) > 0 THEN
        INSERT INTO {{ schema }}.job_blocker (job_id, position, blocker_chain_id)
        SELECT v_id, u.o, u.b
        FROM unnest(v_blockers) WITH ORDINALITY AS u (b, o);
    END IF;

    IF v_status = 'pending' THEN
        v_notified := {{ schema }}._notify('job_ready', ARRAY[start_chain.type_name]);
    END IF;

    -- A composite built from what is known (no query to return it).
    v_result := ROW(
        v_id, v_id, start_chain.type_name, v_status, v_scheduled_at, now(), false
    )::{{ schema }}.start_chain_result;
    RETURN NEXT v_result;
END;
$$;
