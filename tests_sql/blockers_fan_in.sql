-- Blocker fan-in: a dependent runs only when every blocker chain's LAST job completes.
BEGIN;
SELECT plan(16);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- Fan-out to three children, one of them a two-step chain; fan-in on all three.
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'fetch', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 'fetch', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 'resize', 'id', pg_temp.u(3)),
    jsonb_build_object('type_name', 'report', 'id', pg_temp.u(4),
        'blockers', jsonb_build_array(pg_temp.u(3), pg_temp.u(1), pg_temp.u(2)),
        'schedule_after_ms', 0)
)) \gset
SELECT count(*) AS n FROM queuert.start_chain('audit', id => pg_temp.u(5), blockers => ARRAY[pg_temp.u(3)],
    schedule_at => now() + interval '1 day') \gset
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('blocked'::text, 3), 'the fan-in starts blocked on three chains');
SELECT is((SELECT count(*)::integer FROM queuert.claim('w', ARRAY['report', 'audit'])), 0,
    'a blocked job is never claimed');

SELECT count(*) AS n FROM queuert.claim('w', ARRAY['fetch'], 2) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(1), 'w', '{"f": 1}') \gset
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('blocked'::text, 2), 'one blocker complete: still blocked, two open');

-- Step 1 of the multi-step chain continues: that does NOT complete the chain.
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['resize']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(3), 'w', 'resize-upload', id => pg_temp.u(30)) \gset
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('blocked'::text, 2), 'continue_with of a blocker chain does not unblock');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(5)), 'blocked',
    'nor its other dependent');

-- The failure of a blocker is not completion either.
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(2), 'w', 'network') \gset
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('blocked'::text, 2), 'a failed attempt of a blocker does not unblock');
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(2)]) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['fetch']) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(2), 'w', '{"f": 2}') \gset
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('blocked'::text, 1), 'two complete, one open (the multi-step chain)');

-- The last job of the multi-step chain completes: both dependents unblock.
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['resize-upload']) \gset
SELECT row_eq(
    $$SELECT chain_completed FROM queuert.complete(pg_temp.u(30), 'w', '{"url": "s3://x"}')$$,
    ROW(true), 'the multi-step chain completes');
SELECT results_eq(
    $$SELECT id, status::text, open_blockers, scheduled_at FROM queuert.job
      WHERE id IN (pg_temp.u(4), pg_temp.u(5)) ORDER BY id$$,
    $$VALUES (pg_temp.u(4), 'pending', 0, now()), (pg_temp.u(5), 'pending', 0, now() + interval '1 day')$$,
    'every dependent whose blockers are all complete is pending; a later schedule is kept'
);

-- The fan-in sees every blocker's output, in blocker order, with the chain's root type.
SELECT is(
    -- the keys a handler reads (trace_context, completed_at: trace_context.sql;
    -- resolved_trace_context: blocker_edge_trace.sql)
    (SELECT jsonb_agg(b.e - 'trace_context' - 'completed_at' - 'resolved_trace_context' ORDER BY b.o)
     FROM queuert.claim('w', ARRAY['report']) AS c
     CROSS JOIN LATERAL jsonb_array_elements(c.blockers) WITH ORDINALITY AS b (e, o)),
    jsonb_build_array(
        jsonb_build_object('chain_id', pg_temp.u(3), 'type_name', 'resize', 'output', '{"url": "s3://x"}'::jsonb),
        jsonb_build_object('chain_id', pg_temp.u(1), 'type_name', 'fetch', 'output', '{"f": 1}'::jsonb),
        jsonb_build_object('chain_id', pg_temp.u(2), 'type_name', 'fetch', 'output', '{"f": 2}'::jsonb)
    ),
    'claim hands the fan-in its blockers'' final outputs'
);

-- A continuation can wait on other chains (fan-in mid-chain).
SELECT count(*) AS n FROM queuert.start_chain('sub', id => pg_temp.u(40)) \gset
SELECT row_eq(
    $$SELECT status::text FROM queuert.continue_with(pg_temp.u(4), 'w', 'report-2', id => pg_temp.u(41),
        blockers => ARRAY[pg_temp.u(40), pg_temp.u(1)])$$,
    ROW('blocked'::text), 'a continuation blocked on an incomplete chain');
SELECT is((SELECT open_blockers FROM queuert.job WHERE id = pg_temp.u(41)), 1,
    'only the incomplete blocker is open');
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(40), NULL, '"sub-done"') \gset
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(41)), 'pending',
    'unblocked by a workerless completion of its blocker');

-- complete_jobs resolves dependents too.
SELECT count(*) AS n FROM queuert.start_chain('x', id => pg_temp.u(50)) \gset
SELECT count(*) AS n FROM queuert.start_chain('x', id => pg_temp.u(51)) \gset
SELECT count(*) AS n FROM queuert.start_chain('y', id => pg_temp.u(52),
    blockers => ARRAY[pg_temp.u(50), pg_temp.u(51)]) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['x'], 2) \gset
SELECT results_eq(
    $$SELECT outcome FROM queuert.complete_jobs('w', ARRAY[pg_temp.u(50), pg_temp.u(51)])$$,
    $$VALUES ('completed'), ('completed')$$, 'both blockers completed in one batch');
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(52)$$,
    ROW('pending'::text, 0), 'a batch completing two blockers unblocks their dependent once');

-- A dependent started after its blockers completed is pending at once.
SELECT row_eq(
    $$SELECT status::text FROM queuert.start_chain('z', blockers => ARRAY[pg_temp.u(50), pg_temp.u(3)])$$,
    ROW('pending'::text), 'blockers already complete: pending');

SELECT * FROM finish();
ROLLBACK;
