-- start_chains: many chains from one JSON array, in a fixed number of
-- set-based statements (never one statement per item). Items are checked
-- and typed in 031_chain_items.sql.

-- Deduplication of a batch: the first item of each (type, dedup key) looks
-- for an existing chain (after taking the keys' guards); later items with
-- that key resolve to whatever the first did. Every item comes back with
-- resolved_id set: its own id unless it resolved to an existing chain. A
-- deduplicated item (never inserted) carries the trace_context of the chain
-- it resolved to instead of its own: start_chains returns it, so the
-- caller's span for the item can link to that chain (migration 0008).
CREATE OR REPLACE FUNCTION {{ schema }}._dedup_chain_items(items {{ schema }}.chain_item [])
RETURNS {{ schema }}.chain_item []
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM unnest(items) AS i WHERE i.dedup_key IS NOT NULL) THEN
        RETURN ARRAY(
            SELECT ROW(
                i.ord, i.id, i.id_given, i.type_name, i.input, i.scheduled_at,
                i.blockers, i.dedup_key, i.dedup_scope, i.dedup_window,
                i.priority, i.trace_context, i.id, false, NULL, NULL, NULL
            )::{{ schema }}.chain_item
            FROM unnest(items) AS i
            ORDER BY i.ord
        );
    END IF;
    PERFORM {{ schema }}._guard_dedup_keys(
        ARRAY(SELECT i.type_name FROM unnest(items) AS i),
        ARRAY(SELECT i.dedup_key FROM unnest(items) AS i)
    );
    -- A later statement than the guards: sees a start that committed while
    -- we waited for them.
    RETURN ARRAY(
        WITH it AS (SELECT * FROM unnest(items)),
        firsts AS (
            SELECT DISTINCT ON (it.type_name, it.dedup_key) it.*
            FROM it
            WHERE it.dedup_key IS NOT NULL
            ORDER BY it.type_name, it.dedup_key, it.ord
        ),
        resolved AS (
            SELECT
                f.type_name, f.dedup_key, f.ord AS first_ord,
                coalesce(m.id, f.id) AS resolved_id,
                m.id IS NOT NULL AS hit,
                m.status, m.scheduled_at, m.created_at,
                CASE WHEN m.id IS NOT NULL THEN m.trace_context ELSE f.trace_context END AS resolved_trace
            FROM firsts AS f
            LEFT JOIN LATERAL {{ schema }}._find_dedup_match(
                f.type_name, f.dedup_key, f.dedup_scope, f.dedup_window
            ) AS m ON true
        )
        SELECT ROW(
            it.ord, it.id, it.id_given, it.type_name, it.input, it.scheduled_at,
            it.blockers, it.dedup_key, it.dedup_scope, it.dedup_window,
            it.priority,
            CASE WHEN coalesce(r.hit OR it.ord > r.first_ord, false) THEN r.resolved_trace ELSE it.trace_context END,
            coalesce(r.resolved_id, it.id),
            coalesce(r.hit OR it.ord > r.first_ord, false),
            r.status, r.scheduled_at, r.created_at
        )::{{ schema }}.chain_item
        FROM it
        LEFT JOIN resolved AS r
            ON r.type_name = it.type_name AND r.dedup_key = it.dedup_key
        ORDER BY it.ord
    );
END;
$$;

-- The blocker edges of the items that will be inserted, one per (job,
-- blocker chain), ordered by job then position; is_internal: the blocker is a
-- chain of this batch. A blocker may name an earlier item by its given id
-- (it then means the chain that item resolved to); naming the item itself
-- or a later one is QU002.
CREATE OR REPLACE FUNCTION {{ schema }}._chain_item_edges(
    items {{ schema }}.chain_item [],
    OUT job_ids uuid [],
    OUT positions integer [],
    OUT chain_ids uuid [],
    OUT is_internal boolean []
)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_bad record;
BEGIN
    SELECT e.ord, e.ref INTO v_bad
    FROM (
        SELECT i.ord, b.ref, src.ord AS src_ord
        FROM unnest(items) AS i
        CROSS JOIN LATERAL unnest(i.blockers) AS b (ref)
        JOIN unnest(items) AS src ON src.id_given AND src.id = b.ref
        WHERE NOT i.deduplicated
    ) AS e
    WHERE e.src_ord >= e.ord
    ORDER BY e.ord
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'QU002',
            MESSAGE = format(
                'start_chains item %s names blocker %s, which is that item itself or a later one',
                v_bad.ord, v_bad.ref
            ),
            DETAIL = format('chain_id=%s', v_bad.ref);
    END IF;

    WITH raw AS (
        SELECT
            i.resolved_id AS job_id,
            b.pos,
            coalesce(src.resolved_id, b.ref) AS chain_id
        FROM unnest(items) AS i
        CROSS JOIN LATERAL unnest(i.blockers) WITH ORDINALITY AS b (ref, pos)
        LEFT JOIN unnest(items) AS src ON src.id_given AND src.id = b.ref
        WHERE NOT i.deduplicated
    ),
    edges AS (
        SELECT raw.job_id, min(raw.pos)::integer AS pos, raw.chain_id
        FROM raw
        GROUP BY raw.job_id, raw.chain_id
    ),
    new_ids AS (
        SELECT i.resolved_id AS id FROM unnest(items) AS i WHERE NOT i.deduplicated
    )
    SELECT
        coalesce(array_agg(e.job_id ORDER BY e.job_id, e.pos), '{}'),
        coalesce(array_agg(e.pos ORDER BY e.job_id, e.pos), '{}'),
        coalesce(array_agg(e.chain_id ORDER BY e.job_id, e.pos), '{}'),
        coalesce(array_agg(n.id IS NOT NULL ORDER BY e.job_id, e.pos), '{}')
    INTO job_ids, positions, chain_ids, is_internal
    FROM edges AS e
    LEFT JOIN new_ids AS n ON n.id = e.chain_id;
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}.start_chains(items jsonb)
RETURNS TABLE (
    ord integer,
    id uuid,
    chain_id uuid,
    type_name text,
    status {{ schema }}.job_status,
    scheduled_at timestamptz,
    created_at timestamptz,
    deduplicated boolean,
    trace_context text
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    v_bad_ord bigint;
    v_general boolean;
    v_types text[];
    v_items {{ schema }}.chain_item[];
    v_edge_job uuid[];
    v_edge_pos integer[];
    v_edge_chain uuid[];
    v_edge_internal boolean[];
    v_external uuid[];
    v_open uuid[];
    v_existing uuid;
    v_blocked_job uuid[];
    v_blocked_n integer[];
    v_notified integer;
BEGIN
    IF start_chains.items IS NULL OR jsonb_typeof(start_chains.items) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'start_chains expects a JSON array of objects';
    END IF;

    -- One pass: the first malformed item, whether any item needs the general
    -- path below (a given id, blockers, a dedup key or a timestamp to parse),
    -- and the types to announce.
    SELECT
        min(a.o) FILTER (WHERE {{ schema }}._chain_item_problem(a.item) IS NOT NULL),
        coalesce(bool_or(a.item ?| '{id,blockers,dedup_key,schedule_at}'::text []), false),
        array_agg(DISTINCT a.item ->> 'type_name')
    INTO v_bad_ord, v_general, v_types
    FROM jsonb_array_elements(start_chains.items) WITH ORDINALITY AS a (item, o);
    IF v_bad_ord IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('start_chains item %s %s', v_bad_ord,
                {{ schema }}._chain_item_problem(start_chains.items -> (v_bad_ord::integer - 1)));
    END IF;

    IF NOT v_general THEN
        -- Plain items (the bulk of real batches): every value is already
        -- validated, nothing can be blocked, deduplicated or collide, so one
        -- statement inserts and answers. It repeats a little of
        -- _parse_chain_items on purpose: this path, not the general one
        -- below (several more statements), is what makes a batch of 1,000
        -- run at about 0.8x of a raw INSERT .. unnest (benchmarks/README.md,
        -- create-batch). Rows go in input order (a function scan with
        -- ordinality, materialised once), so seq keeps FIFO.
        RETURN QUERY
        WITH src AS MATERIALIZED (
            SELECT
                a.o::integer AS ord,
                {{ schema }}._new_job_id() AS id,
                a.item ->> 'type_name' AS type_name,
                nullif(a.item -> 'input', 'null') AS input,
                coalesce(
                    now() + make_interval(secs => (a.item ->> 'schedule_after_ms')::float8 / 1000),
                    now()
                ) AS scheduled_at,
                coalesce((a.item ->> 'priority')::numeric::integer, 0) AS priority,
                a.item ->> 'trace_context' AS trace_context
            FROM jsonb_array_elements(start_chains.items) WITH ORDINALITY AS a (item, o)
        ),
        inserted AS (
            INSERT INTO {{ schema }}.job (
                id, type_name, chain_id, chain_type_name, chain_index, input, status,
                priority, scheduled_at, trace_context, chain_trace_context
            )
            SELECT
                s.id, s.type_name, s.id, s.type_name, 0, s.input, 'pending',
                s.priority, s.scheduled_at, s.trace_context, s.trace_context
            FROM src AS s
        )
        SELECT
            s.ord, s.id, s.id, s.type_name, 'pending'::{{ schema }}.job_status,
            s.scheduled_at, now(), false, s.trace_context
        FROM src AS s
        ORDER BY s.ord;
        v_notified := {{ schema }}._notify_batch('job_ready', v_types);
        RETURN;
    END IF;

    -- The general path: typed rows, deduplication, blocker edges, then the
    -- inserts.
    v_items := {{ schema }}._dedup_chain_items({{ schema }}._typed_chain_items(start_chains.items));
    SELECT e.job_ids, e.positions, e.chain_ids, e.is_internal
    INTO v_edge_job, v_edge_pos, v_edge_chain, v_edge_internal
    FROM {{ schema }}._chain_item_edges(v_items) AS e;

    v_external := ARRAY(
        SELECT DISTINCT c
        FROM unnest(v_edge_chain, v_edge_internal) AS x (c, internal)
        WHERE NOT x.internal
    );
    v_open := {{ schema }}._lock_blocker_chains(v_external);

    SELECT i.resolved_id INTO v_existing
    FROM unnest(v_items) AS i
    JOIN {{ schema }}.job AS j ON j.id = i.resolved_id
    WHERE i.id_given AND NOT i.deduplicated
    ORDER BY i.ord
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('a job with id %s already exists', v_existing),
            DETAIL = format('job_id=%s', v_existing);
    END IF;

    SELECT coalesce(array_agg(oc.j), '{}'), coalesce(array_agg(oc.n), '{}')
    INTO v_blocked_job, v_blocked_n
    FROM (
        SELECT x.j, count(*)::integer AS n
        FROM unnest(v_edge_job, v_edge_chain, v_edge_internal) AS x (j, c, internal)
        WHERE x.internal OR x.c = ANY(v_open)
        GROUP BY x.j
    ) AS oc;

    -- A plain INSERT (no ON CONFLICT: speculative insertion costs 10-20 %);
    -- given ids were checked above, so only a concurrent insert of the same
    -- given id can still collide.
    BEGIN
        INSERT INTO {{ schema }}.job (
            id, type_name, chain_id, chain_type_name, chain_index, input, status,
            priority, scheduled_at, dedup_key, trace_context, chain_trace_context, open_blockers
        )
        SELECT
            i.resolved_id, i.type_name, i.resolved_id, i.type_name, 0, i.input,
            CASE WHEN oc.n > 0 THEN 'blocked' ELSE 'pending' END::{{ schema }}.job_status,
            i.priority, i.scheduled_at, i.dedup_key, i.trace_context, i.trace_context,
            coalesce(oc.n, 0)
        FROM unnest(v_items) AS i
        LEFT JOIN unnest(v_blocked_job, v_blocked_n) AS oc (j, n) ON oc.j = i.resolved_id
        WHERE NOT i.deduplicated
        ORDER BY i.ord;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'a job id given in start_chains was created concurrently by another transaction';
    END;

    IF cardinality(v_edge_job) > 0 THEN
        -- each edge keeps its item's trace context (migration 0008)
        INSERT INTO {{ schema }}.job_blocker (job_id, position, blocker_chain_id, trace_context)
        SELECT x.j, x.p, x.c, i.trace_context
        FROM unnest(v_edge_job, v_edge_pos, v_edge_chain) AS x (j, p, c)
        JOIN unnest(v_items) AS i ON i.resolved_id = x.j AND NOT i.deduplicated;
    END IF;

    -- One notification per type per statement, not per row.
    SELECT {{ schema }}._notify_batch('job_ready', array_agg(t.type_name)) INTO v_notified
    FROM (
        SELECT DISTINCT i.type_name
        FROM unnest(v_items) AS i
        WHERE NOT i.deduplicated AND NOT (i.resolved_id = ANY(v_blocked_job))
    ) AS t;

    -- Everything returned is already known: no need to read the rows back.
    RETURN QUERY
    WITH fresh AS (
        SELECT
            i.resolved_id,
            CASE WHEN i.resolved_id = ANY(v_blocked_job) THEN 'blocked' ELSE 'pending' END
                ::{{ schema }}.job_status AS status,
            i.scheduled_at
        FROM unnest(v_items) AS i
        WHERE NOT i.deduplicated
    )
    SELECT
        i.ord,
        i.resolved_id,
        i.resolved_id,
        i.type_name,
        coalesce(f.status, i.existing_status),
        coalesce(f.scheduled_at, i.existing_scheduled_at),
        CASE WHEN f.resolved_id IS NOT NULL THEN now() ELSE i.existing_created_at END,
        i.deduplicated,
        i.trace_context
    FROM unnest(v_items) AS i
    LEFT JOIN fresh AS f ON f.resolved_id = i.resolved_id
    ORDER BY i.ord;
END;
$$;
