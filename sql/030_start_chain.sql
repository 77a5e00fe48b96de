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
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    -- No initialisers: in autocommit use every PL/pgSQL expression is set
    -- up again in each transaction, so the common path evaluates as few as
    -- possible (one condition, one statement).
    v_id uuid;
    v_scope text;
    v_scheduled_at timestamptz;
    v_blockers uuid[];
    v_open uuid[];
    v_status {{ schema }}.job_status;
    v_result {{ schema }}.start_chain_result;
    v_inserted integer;
    v_notified integer;
BEGIN
    -- The common start: a valid type, no id, schedule, blockers or dedup
    -- (dedup_scope at its default). One condition and one INSERT ..
    -- RETURNING that also sends job_ready, apart from the general path below
    -- on purpose: in autocommit use every PL/pgSQL expression is set up again
    -- in each transaction, and this path took start_chain from 0.71x to about
    -- 0.8x of a raw INSERT (benchmarks/README.md, create-single). Each test
    -- of the condition costs its setup, so it holds only what decides the
    -- path: dedup_scope 'any' or NULL is legal, but rare enough for the
    -- general path.
    IF start_chain.id IS NULL AND start_chain.schedule_at IS NULL
        AND start_chain.schedule_after IS NULL AND start_chain.blockers IS NULL
        AND start_chain.dedup_key IS NULL AND start_chain.dedup_window IS NULL
        AND start_chain.dedup_scope = 'incomplete'
        AND length(start_chain.type_name) BETWEEN 1 AND 255
    THEN
        -- queuert.notify unset (every channel, the default): a bare
        -- pg_notify, whose setup costs less than _notify_inline's test of the
        -- setting (9,000 of the path's instructions, callgrind). Only the
        -- branch taken is set up.
        IF current_setting('queuert.notify', true) IS NULL THEN
            RETURN QUERY
            INSERT INTO {{ schema }}.job AS j (
                id, type_name, chain_id, chain_type_name, chain_index, input, status,
                priority, scheduled_at, trace_context, chain_trace_context
            )
            SELECT
                n.id, start_chain.type_name, n.id, start_chain.type_name, 0, start_chain.input,
                'pending', coalesce(start_chain.priority, 0), now(), start_chain.trace_context,
                start_chain.trace_context
            FROM (SELECT {{ schema }}._new_job_id() AS id) AS n
            WHERE pg_notify('{{ schema }}_job_ready', start_chain.type_name) IS NOT NULL
            RETURNING
                j.id, j.chain_id, j.type_name, j.status, j.scheduled_at, j.created_at, false,
                j.trace_context;
        ELSE
            RETURN QUERY
            INSERT INTO {{ schema }}.job AS j (
                id, type_name, chain_id, chain_type_name, chain_index, input, status,
                priority, scheduled_at, trace_context, chain_trace_context
            )
            SELECT
                n.id, start_chain.type_name, n.id, start_chain.type_name, 0, start_chain.input,
                'pending', coalesce(start_chain.priority, 0), now(), start_chain.trace_context,
                start_chain.trace_context
            FROM (SELECT {{ schema }}._new_job_id() AS id) AS n
            WHERE {{ schema }}._notify_inline('job_ready', start_chain.type_name) IS NOT NULL
            RETURNING
                j.id, j.chain_id, j.type_name, j.status, j.scheduled_at, j.created_at, false,
                j.trace_context;
        END IF;
        RETURN;
    END IF;

    IF length(start_chain.type_name) BETWEEN 1 AND 255 IS NOT TRUE THEN
        PERFORM {{ schema }}._check_type_name(start_chain.type_name);
    END IF;
    v_scope := coalesce(start_chain.dedup_scope, 'incomplete');
    PERFORM {{ schema }}._check_dedup_args(v_scope, start_chain.dedup_window);
    IF octet_length(start_chain.dedup_key) > 1024 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format(
                'dedup_key must be at most 1024 bytes, got %s', octet_length(start_chain.dedup_key)
            );
    END IF;
    v_scheduled_at := {{ schema }}._schedule(start_chain.schedule_at, start_chain.schedule_after);
    v_id := coalesce(start_chain.id, {{ schema }}._new_job_id());

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

    v_blockers := {{ schema }}._distinct_blockers(start_chain.blockers);
    v_open := '{}';
    IF cardinality(v_blockers) > 0 THEN
        v_open := {{ schema }}._lock_blocker_chains(v_blockers);
    END IF;
    v_status := CASE WHEN cardinality(v_open) > 0 THEN 'blocked' ELSE 'pending' END;

    -- ON CONFLICT: a given id may exist already (QU006, not a unique_violation).
    INSERT INTO {{ schema }}.job (
        id, type_name, chain_id, chain_type_name, chain_index, input, status,
        priority, scheduled_at, dedup_key, trace_context, chain_trace_context, open_blockers
    )
    VALUES (
        v_id, start_chain.type_name, v_id, start_chain.type_name, 0, start_chain.input,
        v_status, coalesce(start_chain.priority, 0), v_scheduled_at,
        start_chain.dedup_key, start_chain.trace_context, start_chain.trace_context,
        cardinality(v_open)
    )
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
    IF v_inserted = 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('a job with id %s already exists', v_id),
            DETAIL = format('job_id=%s', v_id);
    END IF;

    IF cardinality(v_blockers) > 0 THEN
        -- each edge keeps the creation's trace context (migration 0008)
        INSERT INTO {{ schema }}.job_blocker (job_id, position, blocker_chain_id, trace_context)
        SELECT v_id, u.o, u.b, start_chain.trace_context
        FROM unnest(v_blockers) WITH ORDINALITY AS u (b, o);
    END IF;

    IF v_status = 'pending' THEN
        v_notified := {{ schema }}._notify_batch('job_ready', ARRAY[start_chain.type_name]);
    END IF;

    v_result := ROW(
        v_id, v_id, start_chain.type_name, v_status, v_scheduled_at, now(), false,
        start_chain.trace_context
    )::{{ schema }}.start_chain_result;
    RETURN NEXT v_result;
END;
$$;
