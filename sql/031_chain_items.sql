-- start_chains items: the JSON an application sends for each chain, the
-- rules it obeys (written once) and its typed working rows. Names starting
-- with an underscore are not part of the public API.

-- The keys an item may carry.
CREATE OR REPLACE FUNCTION {{ schema }}._chain_item_keys()
RETURNS text []
LANGUAGE sql IMMUTABLE
AS $$
    SELECT '{type_name,input,id,schedule_at,schedule_after_ms,blockers,dedup_key,dedup_scope,dedup_window_ms,priority,trace_context}'::text []
$$;

-- Why an item is malformed, or NULL when it is fine: every rule an item
-- obeys, in one place. JSON null means "take the default", exactly like an
-- absent key. start_chains runs it on every item of a batch, so it is one
-- inlinable expression (a subquery, or a non-immutable call such as
-- format(), would make it a function call per item) of C-level jsonb
-- operators, in an order that keeps every cast behind its type check, and
-- the usual item (a type and an input) is settled after the first four
-- tests. Values PostgreSQL parses itself (a UUID's digits, a timestamp) are
-- checked by parsing them (_typed_chain_items).
CREATE OR REPLACE FUNCTION {{ schema }}._chain_item_problem(item jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN jsonb_typeof(item) IS DISTINCT FROM 'object' THEN 'is not a JSON object'
        WHEN jsonb_typeof(item -> 'type_name') IS DISTINCT FROM 'string' THEN
            CASE WHEN coalesce(jsonb_typeof(item -> 'type_name'), 'null') = 'null'
                THEN 'has no type_name' ELSE 'type_name is not a string' END
        WHEN length(item ->> 'type_name') NOT BETWEEN 1 AND 255
            THEN 'type_name must be 1 to 255 characters'
        WHEN item - '{type_name,input}'::text [] = '{}'::jsonb THEN NULL
        WHEN item - {{ schema }}._chain_item_keys() <> '{}'::jsonb
            THEN 'has unknown key(s) ' || jsonb_path_query_array(
                item - {{ schema }}._chain_item_keys(), '$.keyvalue().key'
            )::text
        WHEN coalesce(jsonb_typeof(item -> 'id'), 'null') NOT IN ('string', 'null')
            THEN 'id is not a UUID string'
        WHEN coalesce(jsonb_typeof(item -> 'schedule_at'), 'null') NOT IN ('string', 'null')
            THEN 'schedule_at is not a timestamp string'
        WHEN coalesce(jsonb_typeof(item -> 'schedule_after_ms'), 'null') NOT IN ('number', 'null')
            THEN 'schedule_after_ms is not a number'
        WHEN (item ->> 'schedule_after_ms')::numeric < 0
            THEN 'schedule_after_ms must not be negative'
        WHEN (item ->> 'schedule_after_ms')::numeric > 3.15e13
            THEN 'schedule_after_ms must be at most 3.15e13 (about 1,000 years)'
        WHEN coalesce(jsonb_typeof(item -> 'schedule_at'), 'null') <> 'null'
            AND coalesce(jsonb_typeof(item -> 'schedule_after_ms'), 'null') <> 'null'
            THEN 'gives both schedule_at and schedule_after_ms'
        WHEN coalesce(jsonb_typeof(item -> 'blockers'), 'null') NOT IN ('array', 'null')
            THEN 'blockers is not an array'
        WHEN jsonb_typeof(item -> 'blockers') = 'array'
            AND jsonb_path_exists(item -> 'blockers', '$[*] ? (@.type() != "string")')
            THEN 'blockers must be an array of UUID strings'
        WHEN coalesce(jsonb_typeof(item -> 'dedup_key'), 'null') NOT IN ('string', 'null')
            THEN 'dedup_key is not a string'
        WHEN octet_length(item ->> 'dedup_key') > 1024
            THEN 'dedup_key must be at most 1024 bytes'
        WHEN coalesce(jsonb_typeof(item -> 'dedup_scope'), 'null') NOT IN ('string', 'null')
            OR coalesce(item ->> 'dedup_scope', 'incomplete') NOT IN ('incomplete', 'any')
            THEN 'dedup_scope must be ''incomplete'' or ''any'''
        WHEN coalesce(jsonb_typeof(item -> 'dedup_window_ms'), 'null') NOT IN ('number', 'null')
            THEN 'dedup_window_ms is not a number'
        WHEN (item ->> 'dedup_window_ms')::numeric < 0
            THEN 'dedup_window_ms must not be negative'
        WHEN (item ->> 'dedup_window_ms')::numeric > 3.15e15
            THEN 'dedup_window_ms must be at most 3.15e15 (about 100,000 years)'
        WHEN coalesce(jsonb_typeof(item -> 'priority'), 'null') NOT IN ('number', 'null')
            OR (item ->> 'priority')::numeric NOT BETWEEN -2147483648 AND 2147483647
            OR (item ->> 'priority')::numeric <> trunc((item ->> 'priority')::numeric)
            THEN 'priority is not a 32-bit integer'
        WHEN coalesce(jsonb_typeof(item -> 'trace_context'), 'null') NOT IN ('string', 'null')
            THEN 'trace_context is not a string'
    END
$$;

-- The typed working rows of a batch (see _typed_chain_items for the values
-- that can still fail to parse here).
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

-- The typed rows of a batch whose items all passed _chain_item_problem, or
-- QU006 naming the first item whose values PostgreSQL cannot parse (a UUID,
-- a timestamp) or will not store (a time in the year 10000 or later, as in
-- start_chain), or an id given to two items.
CREATE OR REPLACE FUNCTION {{ schema }}._typed_chain_items(items jsonb)
RETURNS {{ schema }}.chain_item []
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_items {{ schema }}.chain_item[];
    v_bad_ord bigint;
    v_error text;
    v_dup uuid;
BEGIN
    BEGIN
        v_items := {{ schema }}._parse_chain_items(items);
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow
        OR invalid_text_representation OR numeric_value_out_of_range
        OR invalid_parameter_value OR interval_field_overflow THEN
        -- Errors only: parse the items one by one to name the first bad one.
        v_error := SQLERRM;
        FOR v_bad_ord IN
            SELECT a.o FROM jsonb_array_elements(items) WITH ORDINALITY AS a (item, o)
        LOOP
            BEGIN
                PERFORM {{ schema }}._parse_chain_items(
                    jsonb_build_array(items -> (v_bad_ord::integer - 1))
                );
            EXCEPTION WHEN OTHERS THEN
                EXIT;
            END;
        END LOOP;
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('start_chains item %s is malformed: %s', v_bad_ord, v_error);
    END;

    SELECT i.ord INTO v_bad_ord
    FROM unnest(v_items) AS i
    WHERE i.scheduled_at >= timestamptz '10000-01-01 00:00:00+00'
    ORDER BY i.ord
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('start_chains item %s schedule_at must be before the year 10000', v_bad_ord);
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
    RETURN v_items;
END;
$$;
