-- start_chain: a chain's root job, created in the caller's transaction.
--
-- start_chain pins search_path like every SECURITY DEFINER function of the
-- API (the one setting security needs; a definer function without it is
-- what database linters flag) and no planner setting: its common path is
-- one INSERT of one row and scans nothing, and each SET is a setting saved
-- and restored on every call (6,000 instructions for the two planner ones).
-- Its common path also names every function, operator and type with its
-- schema, so it would run the same under any search_path
-- (tests_sql/start_chain_search_path.sql tries a hostile one). Everything
-- else is _start_chain_general, which plans without sequential scans or
-- JIT like the rest of the API.

-- The general start: a given id, a schedule, blockers, deduplication, and
-- every refusal; its one row. Internal: called by start_chain, which owns
-- the checks of its common path.
CREATE OR REPLACE FUNCTION {{ schema }}._start_chain_general(
    type_name text,
    input jsonb,
    id uuid,
    schedule_at timestamptz,
    schedule_after interval,
    blockers uuid [],
    dedup_key text,
    dedup_scope text,
    dedup_window interval,
    priority integer,
    trace_context text
)
RETURNS {{ schema }}.start_chain_result
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
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
    IF length(_start_chain_general.type_name) BETWEEN 1 AND 255 IS NOT TRUE THEN
        PERFORM {{ schema }}._check_type_name(_start_chain_general.type_name);
    END IF;
    v_scope := coalesce(_start_chain_general.dedup_scope, 'incomplete');
    PERFORM {{ schema }}._check_dedup_args(v_scope, _start_chain_general.dedup_window);
    IF octet_length(_start_chain_general.dedup_key) > 1024 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format(
                'dedup_key must be at most 1024 bytes, got %s',
                octet_length(_start_chain_general.dedup_key)
            );
    END IF;
    v_scheduled_at := {{ schema }}._schedule(
        _start_chain_general.schedule_at, _start_chain_general.schedule_after
    );
    v_id := coalesce(_start_chain_general.id, {{ schema }}._new_job_id());

    IF _start_chain_general.dedup_key IS NOT NULL THEN
        PERFORM {{ schema }}._guard_dedup_keys(
            ARRAY[_start_chain_general.type_name], ARRAY[_start_chain_general.dedup_key]
        );
        -- A later statement than the guard: sees a start that committed while
        -- we waited.
        SELECT * INTO v_result
        FROM {{ schema }}._find_dedup_match(
            _start_chain_general.type_name, _start_chain_general.dedup_key, v_scope, _start_chain_general.dedup_window
        );
        IF FOUND THEN
            RETURN v_result;
        END IF;
    END IF;

    v_blockers := {{ schema }}._distinct_blockers(_start_chain_general.blockers);
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
        v_id, _start_chain_general.type_name, v_id, _start_chain_general.type_name, 0, _start_chain_general.input,
        v_status, coalesce(_start_chain_general.priority, 0), v_scheduled_at,
        _start_chain_general.dedup_key, _start_chain_general.trace_context, _start_chain_general.trace_context,
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
        SELECT v_id, u.o, u.b, _start_chain_general.trace_context
        FROM unnest(v_blockers) WITH ORDINALITY AS u (b, o);
    END IF;

    IF v_status = 'pending' THEN
        v_notified := {{ schema }}._notify_batch('job_ready', ARRAY[_start_chain_general.type_name]);
    END IF;

    v_result := ROW(
        v_id, v_id, _start_chain_general.type_name, v_status, v_scheduled_at, now(), false,
        _start_chain_general.trace_context
    )::{{ schema }}.start_chain_result;
    RETURN v_result;
END;
$$;

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
BEGIN
    -- The common start: a valid type, no id, schedule, blockers or dedup
    -- (dedup_scope at its default). One condition and one INSERT ..
    -- RETURNING that also sends job_ready: in autocommit use every PL/pgSQL
    -- expression is set up again in each transaction, and each node of the
    -- condition costs its setup, so it holds only what decides the path
    -- (dedup_scope 'any' or NULL is legal, but rare enough for the general
    -- path), in the fewest nodes: one num_nulls for the six arguments that
    -- must be absent, and a non-empty name instead of length >= 1 (2,000
    -- instructions a call less than six NULL tests and length >= 1;
    -- benchmarks/README.md, create-single). Every name is qualified (see
    -- above).
    IF pg_catalog.num_nulls(
            start_chain.id, start_chain.schedule_at, start_chain.schedule_after,
            start_chain.blockers, start_chain.dedup_key, start_chain.dedup_window
        ) OPERATOR(pg_catalog.=) 6
        AND start_chain.dedup_scope OPERATOR(pg_catalog.=) 'incomplete'
        AND start_chain.type_name OPERATOR(pg_catalog.<>) ''
        AND pg_catalog.length(start_chain.type_name) OPERATOR(pg_catalog.<=) 255
    THEN
        -- queuert.notify unset (every channel, the default): a bare
        -- pg_notify, whose setup costs less than _notify_inline's test of the
        -- setting (9,000 of the path's instructions, callgrind). Only the
        -- branch taken is set up.
        IF pg_catalog.current_setting('queuert.notify', true) IS NULL THEN
            RETURN QUERY
            INSERT INTO {{ schema }}.job AS j (
                id, type_name, chain_id, chain_type_name, chain_index, input, status,
                priority, scheduled_at, trace_context, chain_trace_context
            )
            SELECT
                n.id, start_chain.type_name, n.id, start_chain.type_name, 0, start_chain.input,
                'pending', coalesce(start_chain.priority, 0), pg_catalog.now(),
                start_chain.trace_context, start_chain.trace_context
            FROM (SELECT {{ schema }}._new_job_id() AS id) AS n
            WHERE pg_catalog.pg_notify('{{ schema }}_job_ready', start_chain.type_name) IS NOT NULL
            RETURNING
                j.id, j.chain_id, j.type_name, j.status, j.scheduled_at, j.created_at, false,
                j.trace_context;
        -- 'none' (a broker producer's session, poll-only mode): the INSERT
        -- alone, no test of the setting inside it (_notify_inline's CASE
        -- read it up to three times a call: 15,000 instructions, callgrind),
        -- so engine NOTIFY off costs less than NOTIFY on, not more.
        ELSIF pg_catalog.current_setting('queuert.notify', true) OPERATOR(pg_catalog.=) 'none' THEN
            RETURN QUERY
            INSERT INTO {{ schema }}.job AS j (
                id, type_name, chain_id, chain_type_name, chain_index, input, status,
                priority, scheduled_at, trace_context, chain_trace_context
            )
            SELECT
                n.id, start_chain.type_name, n.id, start_chain.type_name, 0, start_chain.input,
                'pending', coalesce(start_chain.priority, 0), pg_catalog.now(),
                start_chain.trace_context, start_chain.trace_context
            FROM (SELECT {{ schema }}._new_job_id() AS id) AS n
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
                'pending', coalesce(start_chain.priority, 0), pg_catalog.now(),
                start_chain.trace_context, start_chain.trace_context
            FROM (SELECT {{ schema }}._new_job_id() AS id) AS n
            WHERE {{ schema }}._notify_inline('job_ready', start_chain.type_name) IS NOT NULL
            RETURNING
                j.id, j.chain_id, j.type_name, j.status, j.scheduled_at, j.created_at, false,
                j.trace_context;
        END IF;
        RETURN;
    END IF;

    -- one row: a simple expression, not a query
    RETURN NEXT {{ schema }}._start_chain_general(
        start_chain.type_name, start_chain.input, start_chain.id, start_chain.schedule_at,
        start_chain.schedule_after, start_chain.blockers, start_chain.dedup_key,
        start_chain.dedup_scope, start_chain.dedup_window, start_chain.priority,
        start_chain.trace_context
    );
END;
$$;
