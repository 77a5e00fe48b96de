-- start_chains returns each item's trace_context (migration 0008): its own
-- for a new chain, the chain it resolved to for a deduplicated item (an
-- existing chain, or an earlier item of the same batch), on the usual path
-- and the general one; a deduplicated item's own is stored nowhere.
BEGIN;
SELECT plan(4);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT results_eq(
    $$SELECT trace_context, deduplicated FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'plain', 'trace_context', 'tp-p1'),
        jsonb_build_object('type_name', 'plain')))$$,
    $$VALUES ('tp-p1'::text, false), (NULL::text, false)$$,
    'the usual path returns each item''s own trace_context'
);

SELECT count(*) AS n FROM queuert.start_chain('once', id => pg_temp.u(1), dedup_key => 'k1',
    trace_context => 'tp-existing') \gset
SELECT results_eq(
    $$SELECT id, deduplicated, trace_context FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'once', 'dedup_key', 'k1', 'trace_context', 'tp-again'),
        jsonb_build_object('type_name', 'once', 'id', pg_temp.u(2), 'dedup_key', 'k2',
            'trace_context', 'tp-first'),
        jsonb_build_object('type_name', 'once', 'dedup_key', 'k2', 'trace_context', 'tp-second')))$$,
    $$VALUES (pg_temp.u(1), true, 'tp-existing'::text),
             (pg_temp.u(2), false, 'tp-first'::text),
             (pg_temp.u(2), true, 'tp-first'::text)$$,
    'a deduplicated item returns the trace_context of the chain it resolved to'
);
SELECT is(
    (SELECT trace_context FROM queuert.job WHERE id = pg_temp.u(2)),
    'tp-first', 'the new chain stores its own'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.job WHERE trace_context IN ('tp-again', 'tp-second')),
    0, 'a deduplicated item''s own trace_context is stored nowhere'
);

SELECT * FROM finish();
ROLLBACK;
