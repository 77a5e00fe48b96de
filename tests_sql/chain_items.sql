-- start_chains items: one rule set (_chain_item_problem), typed rows
-- (_typed_chain_items), and the messages a malformed batch gets.
BEGIN;
SELECT plan(33);

CREATE FUNCTION pg_temp.problem(item text) RETURNS text
LANGUAGE sql AS $$ SELECT queuert._chain_item_problem(item::jsonb) $$;

CREATE FUNCTION pg_temp.err(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' | ' || SQLERRM;
END;
$$;

CREATE FUNCTION pg_temp.plan_text(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END;
$$;

-- Fine items.
SELECT is(pg_temp.problem('{"type_name": "t"}'), NULL, 'a type alone is fine');
SELECT is(pg_temp.problem('{"type_name": "t", "input": {"a": [1]}}'), NULL, 'a type and an input');
SELECT is(pg_temp.problem('{"type_name": "t", "id": null, "schedule_at": null, "schedule_after_ms": null,
    "blockers": null, "dedup_key": null, "dedup_scope": null, "dedup_window_ms": null,
    "priority": null, "trace_context": null}'), NULL, 'JSON null is an absent key');
SELECT is(pg_temp.problem('{"type_name": "t", "id": "00000000-0000-0000-0000-000000000001",
    "schedule_after_ms": 5, "blockers": ["00000000-0000-0000-0000-000000000002"],
    "dedup_key": "k", "dedup_scope": "any", "dedup_window_ms": 1000, "priority": -3,
    "trace_context": "00-ab"}'), NULL, 'every key, well formed');
SELECT is(pg_temp.problem('{"type_name": "t", "priority": 1e2}'), NULL, 'an integral priority in exponent form');

-- One message per rule, in rule order.
SELECT is(pg_temp.problem('[1]'), 'is not a JSON object', 'not an object');
SELECT is(pg_temp.problem('{"input": 1}'), 'has no type_name', 'no type_name');
SELECT is(pg_temp.problem('{"type_name": null}'), 'has no type_name', 'a null type_name');
SELECT is(pg_temp.problem('{"type_name": ["t"]}'), 'type_name is not a string', 'type_name not a string');
SELECT is(pg_temp.problem('{"type_name": ""}'), 'type_name must be 1 to 255 characters', 'empty type_name');
SELECT is(pg_temp.problem('{"type_name": "t", "extra": 1, "more": {"x": 2}}'),
    'has unknown key(s) ["more", "extra"]', 'unknown keys are named, without their values');
SELECT is(pg_temp.problem('{"type_name": "t", "id": 7}'), 'id is not a UUID string', 'id not a string');
SELECT is(pg_temp.problem('{"type_name": "t", "schedule_at": 5}'),
    'schedule_at is not a timestamp string', 'schedule_at not a string');
SELECT is(pg_temp.problem('{"type_name": "t", "schedule_after_ms": "5"}'),
    'schedule_after_ms is not a number', 'schedule_after_ms not a number');
SELECT is(pg_temp.problem('{"type_name": "t", "schedule_after_ms": -1}'),
    'schedule_after_ms must not be negative', 'negative delay');
SELECT is(pg_temp.problem('{"type_name": "t", "schedule_after_ms": 3.2e13}'),
    'schedule_after_ms must be at most 3.15e13 (about 1,000 years)', 'delay over 1,000 years');
SELECT is(pg_temp.problem('{"type_name": "t", "schedule_after_ms": 1, "schedule_at": "2030-01-01"}'),
    'gives both schedule_at and schedule_after_ms', 'both schedule forms');
SELECT is(pg_temp.problem('{"type_name": "t", "blockers": "x"}'), 'blockers is not an array', 'blockers not an array');
SELECT is(pg_temp.problem('{"type_name": "t", "blockers": ["00000000-0000-0000-0000-000000000002", 1]}'),
    'blockers must be an array of UUID strings', 'a blocker that is not a string');
SELECT is(pg_temp.problem('{"type_name": "t", "blockers": [null]}'),
    'blockers must be an array of UUID strings', 'a null blocker');
SELECT is(pg_temp.problem('{"type_name": "t", "dedup_key": 1}'), 'dedup_key is not a string', 'dedup_key not a string');
SELECT is(pg_temp.problem(json_build_object('type_name', 't', 'dedup_key', repeat('k', 1025))::text),
    'dedup_key must be at most 1024 bytes', 'dedup_key too long');
SELECT is(pg_temp.problem('{"type_name": "t", "dedup_scope": "all"}'),
    'dedup_scope must be ''incomplete'' or ''any''', 'unknown dedup scope');
SELECT is(pg_temp.problem('{"type_name": "t", "dedup_scope": 1}'),
    'dedup_scope must be ''incomplete'' or ''any''', 'dedup scope not a string');
SELECT is(pg_temp.problem('{"type_name": "t", "dedup_window_ms": -1}'),
    'dedup_window_ms must not be negative', 'negative dedup window');
SELECT is(pg_temp.problem('{"type_name": "t", "dedup_window_ms": 4e15}'),
    'dedup_window_ms must be at most 3.15e15 (about 100,000 years)', 'dedup window too large');
SELECT is(pg_temp.problem('{"type_name": "t", "priority": 1.5}'), 'priority is not a 32-bit integer', 'fractional priority');
SELECT is(pg_temp.problem('{"type_name": "t", "priority": 2147483648}'), 'priority is not a 32-bit integer', 'priority over int4');
SELECT is(pg_temp.problem('{"type_name": "t", "trace_context": {}}'), 'trace_context is not a string', 'trace_context not a string');

-- Inlined where start_chains uses it: no function call per item.
SELECT doesnt_match(
    pg_temp.plan_text($$SELECT queuert._chain_item_problem(a.item)
        FROM jsonb_array_elements('[{"type_name": "t"}]') AS a (item)$$),
    '_chain_item_problem',
    '_chain_item_problem is inlined into the caller''s statement'
);

-- What start_chains answers: the item's position and its problem, or what
-- PostgreSQL could not parse.
SELECT is(pg_temp.err($$SELECT * FROM queuert.start_chains('[{"type_name": "a"}, {"type_name": "b", "extra": 1}]')$$),
    'QU006 | start_chains item 2 has unknown key(s) ["extra"]', 'a rule broken: item and problem');
SELECT is(pg_temp.err($$SELECT * FROM queuert.start_chains('[{"type_name": "a"}, {"type_name": "b", "id": "nope"}]')$$),
    'QU006 | start_chains item 2 is malformed: invalid input syntax for type uuid: "nope"',
    'a value that does not parse: item and PostgreSQL''s reason');
SELECT is(pg_temp.err($$SELECT * FROM queuert.start_chains('[{"type_name": "a", "schedule_at": "10000-01-02T00:00:00Z"}]')$$),
    'QU006 | start_chains item 1 schedule_at must be before the year 10000', 'the year 10000');

SELECT * FROM finish();
ROLLBACK;
