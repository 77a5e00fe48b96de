-- start_chains: many chains from one JSON array, in a fixed number of
-- set-based statements (never one statement per item).

-- Why an item is malformed, or NULL when it is fine. JSON null means "take
-- the default", exactly like an absent key.
CREATE OR REPLACE FUNCTION {{ schema }}._chain_item_problem(item jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    WITH v AS (
        SELECT
            nullif(item -> 'type_name', 'null') AS type_name,
            nullif(item -> 'id', 'null') AS id,
            nullif(item -> 'schedule_at', 'null') AS schedule_at,
            nullif(item -> 'schedule_after_ms', 'null') AS schedule_after_ms,
            nullif(item -> 'blockers', 'null') AS blockers,
            nullif(item -> 'dedup_key', 'null') AS dedup_key,
            nullif(item -> 'dedup_scope', 'null') AS dedup_scope,
            nullif(item -> 'dedup_window_ms', 'null') AS dedup_window_ms,
            nullif(item -> 'priority', 'null') AS priority,
            nullif(item -> 'trace_context', 'null') AS trace_context
    ),
    uuid_re AS (
        SELECT '^([0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|\{[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\})$'::text AS re
    )
    SELECT CASE
        WHEN jsonb_typeof(item) IS DISTINCT FROM 'object' THEN 'is not a JSON object'
        WHEN EXISTS (
            SELECT 1 FROM jsonb_object_keys(item) AS k
            WHERE k NOT IN (
                'type_name', 'input', 'id', 'schedule_at', 'schedule_after_ms',
                'blockers', 'dedup_key', 'dedup_scope', 'dedup_window_ms',
                'priority', 'trace_context'
            )
        ) THEN format('has unknown key(s) %s', (
            SELECT string_agg(quote_literal(k), ', ' ORDER BY k)
            FROM jsonb_object_keys(item) AS k
            WHERE k NOT IN (
                'type_name', 'input', 'id', 'schedule_at', 'schedule_after_ms',
                'blockers', 'dedup_key', 'dedup_scope', 'dedup_window_ms',
                'priority', 'trace_context'
            )
        ))
        WHEN v.type_name IS NULL THEN 'has no type_name'
        WHEN jsonb_typeof(v.type_name) <> 'string' THEN 'type_name is not a string'
        WHEN length(v.type_name #>> '{}') NOT BETWEEN 1 AND 255
            THEN 'type_name must be 1 to 255 characters'
        WHEN v.id IS NOT NULL AND (jsonb_typeof(v.id) <> 'string'
            OR (v.id #>> '{}') !~* (SELECT re FROM uuid_re)) THEN 'id is not a UUID'
        WHEN v.schedule_at IS NOT NULL AND jsonb_typeof(v.schedule_at) <> 'string'
            THEN 'schedule_at is not a timestamp string'
        WHEN v.schedule_after_ms IS NOT NULL AND jsonb_typeof(v.schedule_after_ms) <> 'number'
            THEN 'schedule_after_ms is not a number'
        WHEN (v.schedule_after_ms #>> '{}')::numeric < 0
            THEN 'schedule_after_ms must not be negative'
        WHEN (v.schedule_after_ms #>> '{}')::numeric > 3.15e13
            THEN 'schedule_after_ms is too large'
        WHEN v.schedule_at IS NOT NULL AND v.schedule_after_ms IS NOT NULL
            THEN 'gives both schedule_at and schedule_after_ms'
        WHEN v.blockers IS NOT NULL AND jsonb_typeof(v.blockers) <> 'array'
            THEN 'blockers is not an array'
        WHEN v.blockers IS NOT NULL AND EXISTS (
            SELECT 1 FROM jsonb_array_elements(v.blockers) AS b
            WHERE jsonb_typeof(b) <> 'string' OR (b #>> '{}') !~* (SELECT re FROM uuid_re)
        ) THEN 'blockers must be an array of UUID strings'
        WHEN v.dedup_key IS NOT NULL AND jsonb_typeof(v.dedup_key) <> 'string'
            THEN 'dedup_key is not a string'
        WHEN octet_length(v.dedup_key #>> '{}') > 1024
            THEN 'dedup_key must be at most 1024 bytes'
        WHEN v.dedup_scope IS NOT NULL AND (jsonb_typeof(v.dedup_scope) <> 'string'
            OR (v.dedup_scope #>> '{}') NOT IN ('incomplete', 'any'))
            THEN 'dedup_scope must be ''incomplete'' or ''any'''
        WHEN v.dedup_window_ms IS NOT NULL AND jsonb_typeof(v.dedup_window_ms) <> 'number'
            THEN 'dedup_window_ms is not a number'
        WHEN (v.dedup_window_ms #>> '{}')::numeric < 0
            THEN 'dedup_window_ms must not be negative'
        WHEN (v.dedup_window_ms #>> '{}')::numeric > 3.15e15
            THEN 'dedup_window_ms is too large'
        WHEN v.priority IS NOT NULL AND (jsonb_typeof(v.priority) <> 'number'
            OR (v.priority #>> '{}')::numeric <> trunc((v.priority #>> '{}')::numeric)
            OR (v.priority #>> '{}')::numeric NOT BETWEEN -2147483648 AND 2147483647)
            THEN 'priority is not a 32-bit integer'
        WHEN v.trace_context IS NOT NULL AND jsonb_typeof(v.trace_context) <> 'string'
            THEN 'trace_context is not a string'
    END
    FROM v;
$$;

-- The cheap check every item passes through: one inlinable expression of
-- C-level jsonb operators (CASE fixes the order so no cast sees a wrong type).
-- Only an item that fails it goes through _chain_item_problem for a message.
CREATE OR REPLACE FUNCTION {{ schema }}._chain_item_ok(item jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN jsonb_typeof(item) IS DISTINCT FROM 'object' THEN false
        WHEN jsonb_typeof(item -> 'type_name') IS DISTINCT FROM 'string' THEN false
        WHEN length(item ->> 'type_name') NOT BETWEEN 1 AND 255 THEN false
        -- The usual item (a type and an input): nothing else to look at.
        WHEN item - '{type_name,input}'::text [] = '{}'::jsonb THEN true
        WHEN item - '{type_name,input,id,schedule_at,schedule_after_ms,blockers,dedup_key,dedup_scope,dedup_window_ms,priority,trace_context}'::text [] <> '{}'::jsonb THEN false
        WHEN coalesce(jsonb_typeof(item -> 'id'), 'null') NOT IN ('string', 'null') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'schedule_at'), 'null') NOT IN ('string', 'null') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'blockers'), 'null') NOT IN ('array', 'null') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'dedup_key'), 'null') NOT IN ('string', 'null') THEN false
        WHEN octet_length(item ->> 'dedup_key') > 1024 THEN false
        WHEN coalesce(jsonb_typeof(item -> 'trace_context'), 'null') NOT IN ('string', 'null') THEN false
        WHEN coalesce(item ->> 'dedup_scope', 'incomplete') NOT IN ('incomplete', 'any') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'dedup_scope'), 'null') NOT IN ('string', 'null') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'schedule_after_ms'), 'null') NOT IN ('number', 'null') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'dedup_window_ms'), 'null') NOT IN ('number', 'null') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'priority'), 'null') NOT IN ('number', 'null') THEN false
        WHEN coalesce(jsonb_typeof(item -> 'schedule_at'), 'null') <> 'null'
            AND coalesce(jsonb_typeof(item -> 'schedule_after_ms'), 'null') <> 'null' THEN false
        WHEN (item ->> 'schedule_after_ms')::numeric NOT BETWEEN 0 AND 3.15e13 THEN false
        WHEN (item ->> 'dedup_window_ms')::numeric NOT BETWEEN 0 AND 3.15e15 THEN false
        WHEN (item ->> 'priority')::numeric NOT BETWEEN -2147483648 AND 2147483647 THEN false
        WHEN (item ->> 'priority')::numeric <> trunc((item ->> 'priority')::numeric) THEN false
        ELSE true
    END;
$$;

-- The typed working rows of a batch. Only timestamps can still fail to parse
-- here; the caller turns that into QU006.
CREATE OR REPLACE FUNCTION {{ schema }}._parse_chain_items(items jsonb)
RETURNS {{ schema }}.chain_item []
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(array_agg(ROW(
        a.o::integer,
        coalesce((a.item ->> 'id')::uuid, {{ schema }}._new_job_id()),
        (a.item ->> 'id') IS NOT NULL,
        a.item ->> 'type_name',
        nullif(a.item -> 'input', 'null'),  -- JSON null takes the default (SQL NULL)
        greatest(coalesce(
            (a.item ->> 'schedule_at')::timestamptz,
            now() + make_interval(secs => (a.item ->> 'schedule_after_ms')::float8 / 1000),
            now()
        ), now()),
        ARRAY(
            SELECT b.value::uuid
            FROM jsonb_array_elements_text(nullif(a.item -> 'blockers', 'null')) AS b
        ),
        a.item ->> 'dedup_key',
        coalesce(a.item ->> 'dedup_scope', 'incomplete'),
        make_interval(secs => (a.item ->> 'dedup_window_ms')::float8 / 1000),
        coalesce((a.item ->> 'priority')::numeric::integer, 0),
        a.item ->> 'trace_context',
        NULL, false, NULL, NULL, NULL
    )::{{ schema }}.chain_item ORDER BY a.o), '{}')
    FROM jsonb_array_elements(items) WITH ORDINALITY AS a (item, o);
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
    deduplicated boolean
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    v_items {{ schema }}.chain_item[];
    v_bad_ord bigint;
    v_error text;
    v_dup uuid;
    v_has_dedup boolean;
    v_edge_job uuid[];
    v_edge_pos integer[];
    v_edge_chain uuid[];
    v_edge_internal boolean[];
    v_bad record;
    v_external uuid[];
    v_open uuid[];
    v_blocked_job uuid[];
    v_blocked_n integer[];
    v_existing uuid;
    v_notified integer;
    v_general boolean;
    v_types text[];
BEGIN
    IF start_chains.items IS NULL OR jsonb_typeof(start_chains.items) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'start_chains expects a JSON array of objects';
    END IF;

    -- One pass: the first malformed item, whether any item needs the general
    -- path below (a given id, blockers, a dedup key or a timestamp to parse),
    -- and the types to announce.
    SELECT
        min(a.o) FILTER (WHERE NOT {{ schema }}._chain_item_ok(a.item)),
        coalesce(bool_or(a.item ?| '{id,blockers,dedup_key,schedule_at}'::text []), false),
        array_agg(DISTINCT a.item ->> 'type_name')
    INTO v_bad_ord, v_general, v_types
    FROM jsonb_array_elements(start_chains.items) WITH ORDINALITY AS a (item, o);
    IF v_bad_ord IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('start_chains item %s %s', v_bad_ord, coalesce(
                {{ schema }}._chain_item_problem(start_chains.items -> (v_bad_ord::integer - 1)),
                'is malformed'
            ));
    END IF;

    IF NOT v_general THEN
        -- Plain items (the bulk of real batches): every value is already
        -- validated, nothing can be blocked, deduplicated or collide, so one
        -- statement inserts and answers. Rows go in input order (a function
        -- scan with ordinality, materialised once), so seq keeps FIFO.
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
                priority, scheduled_at, trace_context
            )
            SELECT
                s.id, s.type_name, s.id, s.type_name, 0, s.input, 'pending',
                s.priority, s.scheduled_at, s.trace_context
            FROM src AS s
        )
        SELECT
            s.ord, s.id, s.id, s.type_name, 'pending'::{{ schema }}.job_status,
            s.scheduled_at, now(), false
        FROM src AS s
        ORDER BY s.ord;
        v_notified := {{ schema }}._notify('job_ready', v_types);
        RETURN;
    END IF;

    BEGIN
        v_items := {{ schema }}._parse_chain_items(start_chains.items);
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow
        OR invalid_text_representation OR numeric_value_out_of_range
        OR invalid_parameter_value OR interval_field_overflow THEN
        -- Slow path, errors only: find the first item that does not parse.
        v_error := SQLERRM;
        FOR v_bad_ord IN
            SELECT a.o FROM jsonb_array_elements(start_chains.items) WITH ORDINALITY AS a (item, o)
        LOOP
            BEGIN
                PERFORM {{ schema }}._parse_chain_items(
                    jsonb_build_array(start_chains.items -> (v_bad_ord::integer - 1))
                );
            EXCEPTION WHEN OTHERS THEN
                EXIT;
            END;
        END LOOP;
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format(
                'start_chains item %s is malformed: %s',
                v_bad_ord,
                coalesce(
                    {{ schema }}._chain_item_problem(start_chains.items -> (v_bad_ord::integer - 1)),
                    v_error
                )
            );
    END;

    -- As in start_chain: nothing is scheduled in or after the year 10000.
    SELECT i.ord INTO v_bad_ord
    FROM unnest(v_items) AS i
    WHERE i.scheduled_at >= timestamptz '10000-01-01 00:00:00+00'
    ORDER BY i.ord
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('start_chains item %s schedule_at must be before the year 10000', v_bad_ord);
    END IF;

    IF cardinality(v_items) = 0 THEN
        RETURN;
    END IF;

    SELECT i.id INTO v_dup
    FROM unnest(v_items) AS i
    WHERE i.id_given
    GROUP BY i.id
    HAVING count(*) > 1
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('start_chains gives id %s to more than one item', v_dup),
            DETAIL = format('job_id=%s', v_dup);
    END IF;

    -- Deduplication: the first item of each (type, key) looks for an existing
    -- chain; later items with that key resolve to whatever the first did.
    SELECT bool_or(i.dedup_key IS NOT NULL) INTO v_has_dedup FROM unnest(v_items) AS i;
    IF v_has_dedup THEN
        PERFORM {{ schema }}._guard_dedup_keys(
            ARRAY(SELECT i.type_name FROM unnest(v_items) AS i),
            ARRAY(SELECT i.dedup_key FROM unnest(v_items) AS i)
        );
        v_items := ARRAY(
            WITH it AS (SELECT * FROM unnest(v_items)),
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
                    m.status, m.scheduled_at, m.created_at
                FROM firsts AS f
                LEFT JOIN LATERAL {{ schema }}._find_dedup_match(
                    f.type_name, f.dedup_key, f.dedup_scope, f.dedup_window
                ) AS m ON true
            )
            SELECT ROW(
                it.ord, it.id, it.id_given, it.type_name, it.input, it.scheduled_at,
                it.blockers, it.dedup_key, it.dedup_scope, it.dedup_window,
                it.priority, it.trace_context,
                coalesce(r.resolved_id, it.id),
                coalesce(r.hit OR it.ord > r.first_ord, false),
                r.status, r.scheduled_at, r.created_at
            )::{{ schema }}.chain_item
            FROM it
            LEFT JOIN resolved AS r
                ON r.type_name = it.type_name AND r.dedup_key = it.dedup_key
            ORDER BY it.ord
        );
    ELSE
        v_items := ARRAY(
            SELECT ROW(
                i.ord, i.id, i.id_given, i.type_name, i.input, i.scheduled_at,
                i.blockers, i.dedup_key, i.dedup_scope, i.dedup_window,
                i.priority, i.trace_context, i.id, false, NULL, NULL, NULL
            )::{{ schema }}.chain_item
            FROM unnest(v_items) AS i
            ORDER BY i.ord
        );
    END IF;

    -- Blocker edges of the items that will be inserted. A blocker may name an
    -- earlier item by its given id (then it means the chain that item
    -- resolved to); naming the item itself or a later one is QU002.
    SELECT e.ord, e.ref INTO v_bad
    FROM (
        SELECT i.ord, b.ref, src.ord AS src_ord
        FROM unnest(v_items) AS i
        CROSS JOIN LATERAL unnest(i.blockers) AS b (ref)
        JOIN unnest(v_items) AS src ON src.id_given AND src.id = b.ref
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
        FROM unnest(v_items) AS i
        CROSS JOIN LATERAL unnest(i.blockers) WITH ORDINALITY AS b (ref, pos)
        LEFT JOIN unnest(v_items) AS src ON src.id_given AND src.id = b.ref
        WHERE NOT i.deduplicated
    ),
    edges AS (
        SELECT raw.job_id, min(raw.pos)::integer AS pos, raw.chain_id
        FROM raw
        GROUP BY raw.job_id, raw.chain_id
    ),
    new_ids AS (
        SELECT i.resolved_id AS id FROM unnest(v_items) AS i WHERE NOT i.deduplicated
    )
    SELECT
        coalesce(array_agg(e.job_id ORDER BY e.job_id, e.pos), '{}'),
        coalesce(array_agg(e.pos ORDER BY e.job_id, e.pos), '{}'),
        coalesce(array_agg(e.chain_id ORDER BY e.job_id, e.pos), '{}'),
        coalesce(array_agg(n.id IS NOT NULL ORDER BY e.job_id, e.pos), '{}')
    INTO v_edge_job, v_edge_pos, v_edge_chain, v_edge_internal
    FROM edges AS e
    LEFT JOIN new_ids AS n ON n.id = e.chain_id;

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
            priority, scheduled_at, dedup_key, trace_context, open_blockers
        )
        SELECT
            i.resolved_id, i.type_name, i.resolved_id, i.type_name, 0, i.input,
            CASE WHEN oc.n > 0 THEN 'blocked' ELSE 'pending' END::{{ schema }}.job_status,
            i.priority, i.scheduled_at, i.dedup_key, i.trace_context, coalesce(oc.n, 0)
        FROM unnest(v_items) AS i
        LEFT JOIN unnest(v_blocked_job, v_blocked_n) AS oc (j, n) ON oc.j = i.resolved_id
        WHERE NOT i.deduplicated
        ORDER BY i.ord;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'a job id given in start_chains was created concurrently by another transaction';
    END;

    IF cardinality(v_edge_job) > 0 THEN
        INSERT INTO {{ schema }}.job_blocker (job_id, position, blocker_chain_id)
        SELECT x.j, x.p, x.c
        FROM unnest(v_edge_job, v_edge_pos, v_edge_chain) AS x (j, p, c);
    END IF;

    -- One notification per type per statement, not per row.
    SELECT {{ schema }}._notify('job_ready', array_agg(t.type_name)) INTO v_notified
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
        i.deduplicated
    FROM unnest(v_items) AS i
    LEFT JOIN fresh AS f ON f.resolved_id = i.resolved_id
    ORDER BY i.ord;
END;
$$;
