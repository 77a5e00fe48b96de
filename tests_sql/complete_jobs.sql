-- complete_jobs: the batched acknowledgement and its per-job outcomes.
BEGIN;
SELECT plan(12);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(3)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(4)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(5))
)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['t'], 3) \gset
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['t'], 1) \gset
-- 5 stays pending; a dependent waits on chain 1.
SELECT count(*) AS n FROM queuert.start_chain('dep', id => pg_temp.u(6), blockers => ARRAY[pg_temp.u(1)]) \gset

SELECT results_eq(
    $$SELECT job_id, outcome, unblocked_types FROM queuert.complete_jobs(
        worker_id => 'w1',
        job_ids => ARRAY[pg_temp.u(1), pg_temp.u(4), pg_temp.u(5), pg_temp.u(99), pg_temp.u(2), pg_temp.u(3)],
        outputs => ARRAY['{"r": 1}', '{"r": 4}', '{"r": 5}', 'null', '{"r": 2}', '{"r": 3}']::jsonb [],
        attempts => ARRAY[1, 1, 0, 1, 1, 7])$$,
    $$VALUES (pg_temp.u(1), 'completed', '{dep}'::text[]), (pg_temp.u(4), 'taken', '{}'),
        (pg_temp.u(5), 'finished', '{}'), (pg_temp.u(99), 'not_found', '{}'),
        (pg_temp.u(2), 'completed', '{}'), (pg_temp.u(3), 'taken', '{}')$$,
    'outcomes in input order: completed, taken (other worker / stale attempt), finished, '
    || 'not_found; the completion of chain 1 reports the type it unblocked'
);
SELECT results_eq(
    $$SELECT id, status::text, output, completed_by, completed_at, leased_by FROM queuert.job
      WHERE id IN (pg_temp.u(1), pg_temp.u(2), pg_temp.u(3), pg_temp.u(4), pg_temp.u(5)) ORDER BY id$$,
    $$VALUES
        (pg_temp.u(1), 'completed', '{"r": 1}'::jsonb, 'w1', now(), NULL),
        (pg_temp.u(2), 'completed', '{"r": 2}'::jsonb, 'w1', now(), NULL),
        (pg_temp.u(3), 'running', NULL::jsonb, NULL, NULL::timestamptz, 'w1'),
        (pg_temp.u(4), 'running', NULL::jsonb, NULL, NULL::timestamptz, 'w2'),
        (pg_temp.u(5), 'pending', NULL::jsonb, NULL, NULL::timestamptz, NULL)$$,
    'only the jobs running under w1 at the given attempt were completed, each with its output'
);
SELECT is((SELECT chain_completed_at FROM queuert.job WHERE id = pg_temp.u(1)), now(),
    'chain completion recorded');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(6)), 'pending',
    'the dependent of a batch-completed chain is unblocked');

-- Without outputs or attempts.
SELECT results_eq(
    $$SELECT job_id, outcome FROM queuert.complete_jobs('w1', ARRAY[pg_temp.u(3), pg_temp.u(1)])$$,
    $$VALUES (pg_temp.u(3), 'completed'), (pg_temp.u(1), 'finished')$$,
    'no outputs and no attempts: completes with NULL output'
);
SELECT is((SELECT output FROM queuert.job WHERE id = pg_temp.u(3)), NULL, 'NULL output');

-- A continued chain's later job completes the chain through complete_jobs too.
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['t']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(5), 'w2', 't2', id => pg_temp.u(7)) \gset
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['t2']) \gset
SELECT results_eq(
    $$SELECT outcome FROM queuert.complete_jobs('w2', ARRAY[pg_temp.u(7)], ARRAY['"end"'::jsonb], ARRAY[1])$$,
    $$VALUES ('completed')$$, 'a later job of a chain'
);
SELECT is((SELECT chain_completed_at FROM queuert.job WHERE id = pg_temp.u(5)), now(),
    'its root records the chain completion');

-- A fan-in: 'fan' waits on chains 10 and 11, two 'solo' jobs on chain 11
-- only. One batch completes both: each unblocked job's type is reported
-- once per job (two 'solo', one 'fan' although it waited on both), on the
-- row of a chain it waited on; a dependent still blocked is not reported.
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'f', 'id', pg_temp.u(10)),
    jsonb_build_object('type_name', 'f', 'id', pg_temp.u(11)),
    jsonb_build_object('type_name', 'f', 'id', pg_temp.u(12))
)) \gset
SELECT count(*) AS n FROM queuert.start_chain('fan', blockers => ARRAY[pg_temp.u(10), pg_temp.u(11)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('solo', blockers => ARRAY[pg_temp.u(11)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('solo', blockers => ARRAY[pg_temp.u(11)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('later', blockers => ARRAY[pg_temp.u(11), pg_temp.u(12)]) \gset
SELECT count(*) AS n FROM queuert.claim('w3', ARRAY['f'], 3) \gset
SELECT results_eq(
    $$SELECT job_id, outcome, unblocked_types
      FROM queuert.complete_jobs('w3', ARRAY[pg_temp.u(11), pg_temp.u(10)])$$,
    $$VALUES (pg_temp.u(11), 'completed', '{solo,solo}'::text[]), (pg_temp.u(10), 'completed', '{fan}')$$,
    'fan-in: one type per unblocked job, on a completed blocker''s row; still-blocked dependents are not reported'
);

SELECT throws_ok($$SELECT * FROM queuert.complete_jobs(NULL, ARRAY[pg_temp.u(1)])$$, 'QU006',
    NULL, 'NULL worker: QU006');
SELECT throws_ok($$SELECT * FROM queuert.complete_jobs('w', ARRAY[NULL::uuid])$$, 'QU006',
    NULL, 'NULL id: QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.complete_jobs('w', ARRAY[pg_temp.u(1)], ARRAY['1', '2']::jsonb [])$$,
    'QU006', NULL, 'length mismatch: QU006');

SELECT * FROM finish();
ROLLBACK;
