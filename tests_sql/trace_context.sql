-- Trace context that follows a chain (migration 0007): chain_trace_context
-- set by starts, inherited by continuations, handed out by claim per blocker;
-- start_chain reports the root's trace_context (the existing chain's when
-- deduplicated).
BEGIN;
SELECT plan(14);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT col_type_is('queuert', 'job', 'chain_trace_context', 'text', 'job.chain_trace_context');

-- the common start (its own fast path in start_chain)
SELECT is(
    (SELECT r.trace_context FROM queuert.start_chain('plain', trace_context => 'tp-plain') AS r),
    'tp-plain', 'the common start returns the trace_context it stored'
);
SELECT is(
    (SELECT chain_trace_context FROM queuert.job WHERE type_name = 'plain'),
    'tp-plain', 'a root started on the common path carries its own as the chain''s'
);

-- the general path (an id, a dedup key)
SELECT is(
    (SELECT r.trace_context FROM queuert.start_chain('root', id => pg_temp.u(1),
        dedup_key => 'k', trace_context => 'tp-root') AS r),
    'tp-root', 'the general start returns the trace_context it stored'
);
SELECT results_eq(
    $$SELECT trace_context, chain_trace_context FROM queuert.job WHERE id = pg_temp.u(1)$$,
    $$VALUES ('tp-root'::text, 'tp-root'::text)$$,
    'a root''s chain_trace_context is its trace_context'
);
SELECT results_eq(
    $$SELECT r.id, r.deduplicated, r.trace_context
      FROM queuert.start_chain('root', dedup_key => 'k', trace_context => 'tp-other') AS r$$,
    $$VALUES (pg_temp.u(1), true, 'tp-root'::text)$$,
    'a deduplicated start returns the existing root''s trace_context, not its own'
);

-- start_chains: the usual batch and the general one
SELECT is(
    (SELECT count(*)::integer FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'batch', 'trace_context', 'tp-b1'),
        jsonb_build_object('type_name', 'batch', 'trace_context', 'tp-b2')))),
    2, 'start_chains (usual) started two'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.job
     WHERE type_name = 'batch' AND chain_trace_context = trace_context),
    2, 'start_chains (usual): every root carries its own trace_context as the chain''s'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'gen', 'id', pg_temp.u(2), 'trace_context', 'tp-gen')))),
    1, 'start_chains (general) started one'
);
SELECT is(
    (SELECT chain_trace_context FROM queuert.job WHERE id = pg_temp.u(2)),
    'tp-gen', 'start_chains (general): the root''s chain_trace_context'
);

-- a continuation keeps the chain's and stores its own
SELECT is((SELECT count(*)::integer FROM queuert.claim('w1', ARRAY['root'])), 1, 'claimed the root');
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(1), 'w1', 'step', id => pg_temp.u(3),
    trace_context => 'tp-step') \gset
SELECT results_eq(
    $$SELECT trace_context, chain_trace_context FROM queuert.job WHERE id = pg_temp.u(3)$$,
    $$VALUES ('tp-step'::text, 'tp-root'::text)$$,
    'a continuation stores its own trace_context and the chain''s from the job it continues'
);

-- claim: each blocker carries its chain's trace and completion time
SELECT count(*) AS n FROM queuert.start_chain('fan', id => pg_temp.u(4),
    blockers => ARRAY[pg_temp.u(2)]) \gset
SELECT is((SELECT count(*)::integer FROM queuert.claim('w2', ARRAY['gen'])), 1, 'claimed the blocker');
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(2), 'w2', '{"done": 1}') \gset
SELECT results_eq(
    $$SELECT b ->> 'trace_context', (b ->> 'completed_at')::timestamptz = j.completed_at
      FROM queuert.claim('w3', ARRAY['fan']) AS c
      CROSS JOIN LATERAL jsonb_array_elements(c.blockers) AS b
      JOIN queuert.job AS j ON j.id = pg_temp.u(2)$$,
    $$VALUES ('tp-gen'::text, true)$$,
    'claim hands out each blocker chain''s trace_context and when it completed'
);

SELECT * FROM finish();
ROLLBACK;
