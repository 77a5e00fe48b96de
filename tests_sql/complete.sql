-- complete: by the owning worker, fencing, workerless completion, chain completion.
BEGIN;
SELECT plan(27);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['t']) \gset

-- Refusals first; each leaves the job running.
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(1), 'w2', '{}')$$, 'QU004',
    'cannot complete job 00000000-0000-0000-0000-000000000001: it is held by worker w1, not w2',
    'another worker: QU004');
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(1), 'w1', '{}', attempt => 2)$$, 'QU004',
    'cannot complete job 00000000-0000-0000-0000-000000000001: attempt 2 is stale, the job is at attempt 1',
    'a stale (or future) attempt: QU004');
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(99), 'w1')$$, 'QU001',
    'job 00000000-0000-0000-0000-000000000099 not found', 'unknown job: QU001');
SELECT row_eq($$SELECT status::text, leased_by, output FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('running'::text, 'w1'::text, NULL::jsonb), 'refusals changed nothing');

-- An expired lease nobody reclaimed still counts.
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 minute' WHERE id = pg_temp.u(1);
CREATE TEMP TABLE r1 AS SELECT * FROM queuert.complete(pg_temp.u(1), 'w1', '{"ok": true}', attempt => 1);
SELECT row_eq($$SELECT id, chain_id, status::text, chain_completed FROM r1$$,
    ROW(pg_temp.u(1), pg_temp.u(1), 'completed'::text, true),
    'complete returns id, chain_id, completed, chain_completed');
SELECT row_eq(
    $$SELECT status::text, output, completed_at, completed_by, leased_by, leased_until,
        continued_to, chain_completed_at
      FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('completed'::text, '{"ok": true}'::jsonb, now(), 'w1'::text, NULL::text,
        NULL::timestamptz, NULL::uuid, now()),
    'completed with output, completed_by, lease cleared; chain completed'
);
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(1), 'w1')$$, 'QU003',
    'cannot complete job 00000000-0000-0000-0000-000000000001: it is completed, not running',
    'completing twice: QU003');
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(1), NULL)$$, 'QU003',
    'cannot complete job 00000000-0000-0000-0000-000000000001 from outside: it is completed',
    'completing a completed job from outside: QU003');

-- A worker cannot complete a job that is not running.
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(2)) \gset
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(2), 'w1')$$, 'QU003',
    'cannot complete job 00000000-0000-0000-0000-000000000002: it is pending, not running',
    'a worker completing a pending job: QU003');

-- Workerless completion: pending.
CREATE TEMP TABLE r2 AS SELECT * FROM queuert.complete(job_id => pg_temp.u(2), worker_id => NULL,
    output => '"approved"');
SELECT row_eq($$SELECT status::text, chain_completed FROM r2$$, ROW('completed'::text, true),
    'workerless completion of a pending job');
SELECT row_eq(
    $$SELECT status::text, output, completed_by, completed_at, attempt FROM queuert.job WHERE id = pg_temp.u(2)$$,
    ROW('completed'::text, '"approved"'::jsonb, NULL::text, now(), 0),
    'completed_by stays NULL; attempt untouched'
);

-- Workerless completion: blocked.
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(3)) \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(4), blockers => ARRAY[pg_temp.u(3)]) \gset
SELECT lives_ok($$SELECT * FROM queuert.complete(pg_temp.u(4), NULL, '1')$$,
    'a blocked job can be completed from outside');
SELECT row_eq($$SELECT status::text, output, chain_completed_at FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('completed'::text, '1'::jsonb, now()), 'the blocked job is completed');
SELECT is((SELECT unblocked_types FROM queuert.complete(pg_temp.u(3), NULL)), '{}'::text[],
    'its blocker completes later; the dependent was done already, so nothing became pending');
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('completed'::text, 0), 'the early-completed dependent stays completed');

-- Workerless completion: running; the worker then loses it.
SELECT count(*) AS n FROM queuert.start_chain('r', id => pg_temp.u(5)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['r']) \gset
SELECT lives_ok($$SELECT * FROM queuert.complete(pg_temp.u(5), NULL, '"outside"')$$,
    'a running job can be completed from outside');
SELECT row_eq(
    $$SELECT status::text, output, completed_by, leased_by, leased_until FROM queuert.job WHERE id = pg_temp.u(5)$$,
    ROW('completed'::text, '"outside"'::jsonb, NULL::text, NULL::text, NULL::timestamptz),
    'completed from outside: lease cleared'
);
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(5), 'w1', '"worker"')$$, 'QU003',
    'cannot complete job 00000000-0000-0000-0000-000000000005: it is completed, not running',
    'the worker that lost it gets QU003 on complete');
SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(5), 'w1', 'boom')$$, 'QU003',
    'cannot fail job 00000000-0000-0000-0000-000000000005: it is completed, not running',
    'and on fail');
SELECT is((SELECT output FROM queuert.job WHERE id = pg_temp.u(5)), '"outside"'::jsonb,
    'the outside output stays');

-- A reaped and reclaimed job: the old worker gets QU004.
SELECT count(*) AS n FROM queuert.start_chain('re', id => pg_temp.u(6)) \gset
SELECT count(*) AS n FROM queuert.claim('old', ARRAY['re']) \gset
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second' WHERE id = pg_temp.u(6);
SELECT count(*) AS n FROM queuert.reap() \gset
SELECT count(*) AS n FROM queuert.claim('new', ARRAY['re']) \gset
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(6), 'old', attempt => 1)$$, 'QU004',
    'cannot complete job 00000000-0000-0000-0000-000000000006: it is held by worker new, not old',
    'the old worker of a reclaimed job: QU004');
SELECT row_eq($$SELECT status::text, leased_by, attempt FROM queuert.job WHERE id = pg_temp.u(6)$$,
    ROW('running'::text, 'new'::text, 2), 'the new worker keeps it');

-- Completing a later job of a chain completes the chain (marked on the root).
SELECT count(*) AS n FROM queuert.start_chain('s1', id => pg_temp.u(7)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['s1']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(7), 'w', 's2', id => pg_temp.u(8)) \gset
SELECT is((SELECT chain_completed_at FROM queuert.job WHERE id = pg_temp.u(7)), NULL,
    'a continued chain is not complete');
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['s2']) \gset
CREATE TEMP TABLE r8 AS SELECT * FROM queuert.complete(pg_temp.u(8), 'w', '{"final": 1}');
SELECT row_eq($$SELECT id, chain_id, status::text, chain_completed, unblocked_types FROM r8$$,
    ROW(pg_temp.u(8), pg_temp.u(7), 'completed'::text, true, '{}'::text[]),
    'the last job completes the chain; nothing waited on it');
SELECT is((SELECT chain_completed_at FROM queuert.job WHERE id = pg_temp.u(7)), now(),
    'the root records the chain''s completion');

-- Unblocking: scheduled_at = greatest(scheduled_at, now()).
SELECT count(*) AS n FROM queuert.start_chain('blk', id => pg_temp.u(10)) \gset
SELECT count(*) AS n FROM queuert.start_chain('dep', id => pg_temp.u(11), blockers => ARRAY[pg_temp.u(10)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('dep', id => pg_temp.u(12), blockers => ARRAY[pg_temp.u(10)],
    schedule_at => now() + interval '2 hours') \gset
UPDATE queuert.job SET scheduled_at = now() - interval '1 day' WHERE id = pg_temp.u(11);
SELECT count(*) AS n FROM queuert.start_chain('other', id => pg_temp.u(13), blockers => ARRAY[pg_temp.u(10)]) \gset
CREATE TEMP TABLE r10 AS SELECT * FROM queuert.complete(pg_temp.u(10), NULL);
SELECT is((SELECT unblocked_types FROM r10), ARRAY['dep', 'dep', 'other'],
    'complete reports the types it made pending, one per job (the count is the wake budget), sorted');
SELECT results_eq(
    $$SELECT id, status::text, scheduled_at, open_blockers FROM queuert.job
      WHERE id IN (pg_temp.u(11), pg_temp.u(12)) ORDER BY id$$,
    $$VALUES (pg_temp.u(11), 'pending', now(), 0),
        (pg_temp.u(12), 'pending', now() + interval '2 hours', 0)$$,
    'dependents become pending at greatest(scheduled_at, now())'
);

SELECT * FROM finish();
ROLLBACK;
