-- claim: due pending jobs only, lease, attempt, type filter, max_jobs, order, blockers.
BEGIN;
SELECT plan(20);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT is((SELECT count(*)::integer FROM queuert.claim('w1')), 0, 'nothing to claim: no rows');

SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(1), input => '{"x": 1}') \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(2),
    schedule_at => now() + interval '1 hour') \gset
SELECT count(*) AS n FROM queuert.start_chain('u', id => pg_temp.u(3)) \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(4), blockers => ARRAY[pg_temp.u(3)]) \gset

CREATE TEMP TABLE c1 AS SELECT * FROM queuert.claim(worker_id => 'w1', type_names => ARRAY['t'], max_jobs => 10);
SELECT results_eq($$SELECT id FROM c1$$, $$VALUES (pg_temp.u(1))$$,
    'only the due pending job of the type: not the future one, not the blocked one');
SELECT row_eq(
    $$SELECT status::text, attempt, leased_by, input, blockers, chain_index, chain_type_name FROM c1$$,
    ROW('running'::text, 1, 'w1'::text, '{"x": 1}'::jsonb, '[]'::jsonb, 0, 't'::text),
    'returned row: running, attempt 1, leased by the worker, no blockers'
);
SELECT ok(
    (SELECT leased_until BETWEEN now() + interval '60 seconds' AND clock_timestamp() + interval '60 seconds'
     FROM c1),
    'default lease: 60 seconds from clock_timestamp()'
);
SELECT row_eq(
    $$SELECT status::text, attempt, leased_by FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('running'::text, 1, 'w1'::text),
    'the row is running under w1'
);
SELECT is((SELECT count(*)::integer FROM queuert.claim('w2', ARRAY['t'], 10)), 0,
    'a claimed job is never handed out again');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(2)), 'pending',
    'future job untouched');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(4)), 'blocked',
    'blocked job untouched');

-- NULL type_names: any type. Explicit lease.
CREATE TEMP TABLE c2 AS SELECT * FROM queuert.claim('w2', NULL, 5, interval '5 minutes');
SELECT results_eq($$SELECT id FROM c2$$, $$VALUES (pg_temp.u(3))$$, 'NULL type_names: any type');
SELECT ok(
    (SELECT leased_until BETWEEN now() + interval '5 minutes' AND clock_timestamp() + interval '5 minutes'
     FROM c2),
    'explicit lease used'
);
SELECT is((SELECT count(*)::integer FROM queuert.claim('w2', '{}')), 0, 'an empty type list claims nothing');

-- The type's lease from set_job_type.
SELECT count(*) AS n FROM queuert.set_job_type('leasy', lease => interval '7 minutes') \gset
SELECT count(*) AS n FROM queuert.start_chain('leasy', id => pg_temp.u(5)) \gset
CREATE TEMP TABLE c3 AS SELECT * FROM queuert.claim('w3', ARRAY['leasy']);
SELECT ok(
    (SELECT leased_until BETWEEN now() + interval '7 minutes' AND clock_timestamp() + interval '7 minutes'
     FROM c3),
    'NULL lease: the type''s lease'
);

-- max_jobs and claim order: priority, then scheduled_at, then insertion order.
SELECT count(*) AS n FROM queuert.start_chain('o', id => pg_temp.u(10)) \gset
SELECT count(*) AS n FROM queuert.start_chain('o', id => pg_temp.u(11), priority => 10) \gset
SELECT count(*) AS n FROM queuert.start_chain('o', id => pg_temp.u(12)) \gset
SELECT count(*) AS n FROM queuert.start_chain('o', id => pg_temp.u(13)) \gset
SELECT count(*) AS n FROM queuert.start_chain('o', id => pg_temp.u(14), priority => -1) \gset
UPDATE queuert.job SET scheduled_at = now() - interval '1 minute' WHERE id = pg_temp.u(13);
SELECT results_eq(
    $$SELECT id, attempt FROM queuert.claim('w4', ARRAY['o'], 3)$$,
    $$VALUES (pg_temp.u(11), 1), (pg_temp.u(13), 1), (pg_temp.u(10), 1)$$,
    'max_jobs rows in claim order: priority, then scheduled_at, then insertion order'
);
SELECT results_eq(
    $$SELECT id, seq FROM queuert.claim('w4', ARRAY['o'], 3)$$,
    $$SELECT id, seq FROM queuert.job WHERE id IN (pg_temp.u(12), pg_temp.u(14)) ORDER BY priority DESC$$,
    'the rest, lowest priority last; seq (the FIFO tiebreak) comes back as the last column'
);

-- attempt counts claims.
UPDATE queuert.job SET status = 'pending', leased_by = NULL, leased_until = NULL
WHERE id = pg_temp.u(12);
SELECT is((SELECT attempt FROM queuert.claim('w5', ARRAY['o'])), 2, 'a second claim is attempt 2');

-- blockers: chain id, the chain's (root) type and its final output, in blocker order.
SELECT count(*) AS n FROM queuert.start_chain('b-root', id => pg_temp.u(20)) \gset
SELECT count(*) AS n FROM queuert.start_chain('c-root', id => pg_temp.u(21)) \gset
SELECT count(*) AS n FROM queuert.start_chain('fan-in', id => pg_temp.u(22),
    blockers => ARRAY[pg_temp.u(21), pg_temp.u(20)]) \gset
SELECT count(*) AS n FROM queuert.claim('wb', ARRAY['b-root']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(20), 'wb', 'b-step2', id => pg_temp.u(23)) \gset
SELECT count(*) AS n FROM queuert.claim('wb', ARRAY['b-step2']) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(23), 'wb', '{"b": "done"}') \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(21), NULL, '[1, 2]') \gset
SELECT is(
    -- the keys a handler reads (trace_context and completed_at: trace_context.sql)
    (SELECT jsonb_agg(b.e - 'trace_context' - 'completed_at' - 'resolved_trace_context' ORDER BY b.o)
     FROM queuert.claim('wf', ARRAY['fan-in']) AS c
     CROSS JOIN LATERAL jsonb_array_elements(c.blockers) WITH ORDINALITY AS b (e, o)),
    jsonb_build_array(
        jsonb_build_object('chain_id', pg_temp.u(21), 'type_name', 'c-root', 'output', '[1, 2]'::jsonb),
        jsonb_build_object('chain_id', pg_temp.u(20), 'type_name', 'b-root', 'output', '{"b": "done"}'::jsonb)
    ),
    'blockers: in blocker order, the chain''s root type and its final output'
);

-- Bad arguments.
SELECT throws_ok($$SELECT * FROM queuert.claim(NULL)$$, 'QU006', NULL,
    'a NULL worker_id is QU006');
SELECT throws_ok($$SELECT * FROM queuert.claim('w', max_jobs => 0)$$, 'QU006',
    NULL, 'max_jobs 0 is QU006');
SELECT throws_ok($$SELECT * FROM queuert.claim('w', lease => interval '0')$$, 'QU006',
    NULL, 'a zero lease is QU006');
SELECT count(*) AS n FROM queuert.start_chain('last', id => pg_temp.u(30)) \gset
SELECT count(*) AS n FROM queuert.start_chain('last', id => pg_temp.u(31)) \gset
SELECT is((SELECT count(*)::integer FROM queuert.claim('w', max_jobs => NULL)), 1,
    'NULL max_jobs: the default 1');

SELECT * FROM finish();
ROLLBACK;
