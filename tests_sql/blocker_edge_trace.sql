-- Trace context per blocker edge (migration 0008): each edge keeps the
-- trace_context of the call that added it (start_chain, start_chains,
-- continue_with); complete and complete_jobs given the completing span's
-- traceparent write it on the edges their completion resolves and list the
-- waiting jobs (dependents); claim hands it out per blocker. Without a trace
-- context nothing is written and dependents is NULL.
BEGIN;
SELECT plan(19);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT col_type_is('queuert', 'job_blocker', 'trace_context', 'text', 'job_blocker.trace_context');
SELECT col_type_is(
    'queuert', 'job_blocker', 'resolved_trace_context', 'text', 'job_blocker.resolved_trace_context'
);

-- blocker chains: b1, b2 (roots), b3 (a root continued to a second job)
SELECT count(*) AS n FROM queuert.start_chain('blk', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.start_chain('blk', id => pg_temp.u(2)) \gset
SELECT count(*) AS n FROM queuert.start_chain('blk3', id => pg_temp.u(3)) \gset

-- start_chain: every edge keeps the call's trace_context
SELECT count(*) AS n FROM queuert.start_chain('fan', id => pg_temp.u(10),
    blockers => ARRAY[pg_temp.u(1), pg_temp.u(2)], trace_context => 'tp-fan') \gset
SELECT results_eq(
    $$SELECT position, trace_context, resolved_trace_context FROM queuert.job_blocker
      WHERE job_id = pg_temp.u(10) ORDER BY position$$,
    $$VALUES (1, 'tp-fan'::text, NULL::text), (2, 'tp-fan'::text, NULL::text)$$,
    'start_chain: each edge keeps the trace_context, unresolved'
);

-- start_chains (the general path): each item's own, also on an edge to an
-- earlier item of the batch
SELECT is((SELECT count(*)::integer FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'inner', 'id', pg_temp.u(11), 'trace_context', 'tp-inner'),
    jsonb_build_object('type_name', 'fan2', 'id', pg_temp.u(12), 'trace_context', 'tp-fan2',
        'blockers', jsonb_build_array(pg_temp.u(11), pg_temp.u(1)))))),
    2, 'start_chains started two');
SELECT results_eq(
    $$SELECT blocker_chain_id, trace_context FROM queuert.job_blocker
      WHERE job_id = pg_temp.u(12) ORDER BY position$$,
    $$VALUES (pg_temp.u(11), 'tp-fan2'::text), (pg_temp.u(1), 'tp-fan2'::text)$$,
    'start_chains: each edge keeps its item''s trace_context'
);

-- continue_with: the new job's trace_context, else the continued job's
SELECT count(*) AS n FROM queuert.start_chain('step', id => pg_temp.u(20), trace_context => 'tp-step') \gset
SELECT is((SELECT count(*)::integer FROM queuert.claim('w1', ARRAY['step'])), 1, 'claimed step');
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(20), 'w1', 'wait', id => pg_temp.u(21),
    blockers => ARRAY[pg_temp.u(3)], trace_context => 'tp-wait') \gset
SELECT is(
    (SELECT trace_context FROM queuert.job_blocker WHERE job_id = pg_temp.u(21)),
    'tp-wait', 'continue_with: the edge keeps the new job''s trace_context'
);
SELECT count(*) AS n FROM queuert.start_chain('step', id => pg_temp.u(22), trace_context => 'tp-step2') \gset
SELECT is((SELECT count(*)::integer FROM queuert.claim('w1', ARRAY['step'])), 1, 'claimed step 2');
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(22), 'w1', 'wait', id => pg_temp.u(23),
    blockers => ARRAY[pg_temp.u(3)]) \gset
SELECT is(
    (SELECT trace_context FROM queuert.job_blocker WHERE job_id = pg_temp.u(23)),
    'tp-step2', 'continue_with without one: the edge keeps the continued job''s'
);

-- complete without a trace context: nothing written, no dependents listed
SELECT is((SELECT count(*)::integer FROM queuert.claim('w2', ARRAY['blk'], max_jobs => 2)), 2, 'claimed b1 and b2');
SELECT is(
    (SELECT dependents FROM queuert.complete(pg_temp.u(2), 'w2')),
    NULL::jsonb, 'complete without a trace_context lists no dependents'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.job_blocker
     WHERE blocker_chain_id = pg_temp.u(2) AND resolved_trace_context IS NOT NULL),
    0, 'complete without a trace_context writes none on the edges'
);

-- complete_jobs with trace contexts: b1 resolves the edges of fan (its last
-- open blocker: pending) and fan2 (still waiting on inner)
SELECT results_eq(
    $$SELECT job_id, outcome, dependents FROM queuert.complete_jobs('w2', ARRAY[pg_temp.u(1)],
        trace_contexts => ARRAY['tp-done-b1'])$$,
    $$VALUES (pg_temp.u(1), 'completed'::text, jsonb_build_array(
        jsonb_build_object('job_id', pg_temp.u(10), 'type_name', 'fan', 'trace_context', 'tp-fan',
            'pending', true),
        jsonb_build_object('job_id', pg_temp.u(12), 'type_name', 'fan2', 'trace_context', 'tp-fan2',
            'pending', false)))$$,
    'complete_jobs lists the jobs waiting on the chain, their edges'' trace_context and whether they are due'
);
SELECT results_eq(
    $$SELECT job_id, resolved_trace_context FROM queuert.job_blocker
      WHERE blocker_chain_id = pg_temp.u(1) ORDER BY job_id$$,
    $$VALUES (pg_temp.u(10), 'tp-done-b1'::text), (pg_temp.u(12), 'tp-done-b1'::text)$$,
    'complete_jobs writes the completing span''s traceparent on the edges it resolved'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.complete_jobs('w2', ARRAY[pg_temp.u(1)], trace_contexts => ARRAY['a', 'b'])$$,
    'QU006', 'outputs, attempts and trace_contexts must have one element per job id',
    'complete_jobs refuses trace_contexts of another length'
);

-- complete with a trace context, a chain completed by its second job
SELECT is((SELECT count(*)::integer FROM queuert.claim('w3', ARRAY['blk3'])), 1, 'claimed b3');
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(3), 'w3', 'blk3b', id => pg_temp.u(4)) \gset
SELECT is((SELECT count(*)::integer FROM queuert.claim('w3', ARRAY['blk3b'])), 1, 'claimed b3''s second job');
SELECT is(
    (SELECT jsonb_path_query_array(dependents, '$[*].trace_context')
     FROM queuert.complete(pg_temp.u(4), 'w3', trace_context => 'tp-done-b3')),
    '["tp-wait", "tp-step2"]'::jsonb,
    'complete lists the jobs waiting on the chain (job id order) with their edges'' trace_context'
);

-- the dependent's claim hands out each blocker's completion
SELECT results_eq(
    $$SELECT b ->> 'chain_id', b ->> 'resolved_trace_context'
      FROM queuert.claim('w4', ARRAY['fan']) AS c
      CROSS JOIN LATERAL jsonb_array_elements(c.blockers) WITH ORDINALITY AS x (b, o)
      ORDER BY x.o$$,
    $$VALUES (pg_temp.u(1)::text, 'tp-done-b1'::text), (pg_temp.u(2)::text, NULL::text)$$,
    'claim hands out the span that completed each blocker chain (NULL when none was given)'
);

SELECT * FROM finish();
ROLLBACK;
