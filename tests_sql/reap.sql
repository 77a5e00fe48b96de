-- reap: expired leases back to pending (keeping their place) or failed.
BEGIN;
SELECT plan(17);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT is((SELECT count(*)::integer FROM queuert.reap()), 0, 'nothing to reap: no rows');

SELECT count(*) AS n FROM queuert.set_job_type('once', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(3)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(4)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(5))
)) \gset
UPDATE queuert.job SET scheduled_at = now() - interval '1 hour' WHERE id = pg_temp.u(1);
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['t'], 2) \gset
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['once']) \gset
SELECT count(*) AS n FROM queuert.claim('w3', ARRAY['t'], 2) \gset
-- 1 (w1) and 3 (w2) expired; 2 (w1) live; 4 (w3) completed; 5 (w3) live.
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '2 seconds' WHERE id = pg_temp.u(1);
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second' WHERE id = pg_temp.u(3);
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(4), 'w3') \gset

CREATE TEMP TABLE r AS SELECT * FROM queuert.reap();
SELECT results_eq(
    $$SELECT job_id, previous_worker, status::text FROM r ORDER BY job_id$$,
    $$VALUES (pg_temp.u(1), 'w1', 'pending'), (pg_temp.u(3), 'w2', 'failed')$$,
    'expired leases reaped: back to pending, or failed when attempts are exhausted'
);
SELECT row_eq(
    $$SELECT status::text, scheduled_at, leased_by, leased_until, attempt, last_attempt_at,
        last_attempt_error
      FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('pending'::text, now() - interval '1 hour', NULL::text, NULL::timestamptz, 1, now(),
        'lease expired: worker w1 stopped renewing it (attempt 1)'::text),
    'a reaped job keeps its scheduled_at (its place in the queue), lease cleared, error says why'
);
SELECT row_eq(
    $$SELECT status::text, leased_by, last_attempt_error FROM queuert.job WHERE id = pg_temp.u(3)$$,
    ROW('failed'::text, NULL::text, 'lease expired: worker w2 stopped renewing it (attempt 1)'::text),
    'attempts exhausted: failed'
);
SELECT results_eq(
    $$SELECT id, status::text, leased_by FROM queuert.job WHERE id IN (pg_temp.u(2), pg_temp.u(4), pg_temp.u(5))
      ORDER BY id$$,
    $$VALUES (pg_temp.u(2), 'running', 'w1'), (pg_temp.u(4), 'completed', NULL), (pg_temp.u(5), 'running', 'w3')$$,
    'live leases and completed jobs are untouched'
);
SELECT is((SELECT count(*)::integer FROM queuert.reap()), 0, 'a second reap finds nothing');

-- The reaped job keeps its place: claimed before a newer job of higher seq.
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(6)) \gset
SELECT results_eq($$SELECT id, attempt FROM queuert.claim('w4', ARRAY['t'])$$,
    $$VALUES (pg_temp.u(1), 2)$$, 'the reaped job is claimed first, at attempt 2');
-- The old worker has lost it.
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(1), 'w1')$$, 'QU004',
    'cannot complete job 00000000-0000-0000-0000-000000000001: it is held by worker w4, not w1',
    'the reaped worker''s complete: QU004');
SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(1), 'w1', 'x', attempt => 1)$$, 'QU004',
    'cannot fail job 00000000-0000-0000-0000-000000000001: it is held by worker w4, not w1',
    'the reaped worker''s fail: QU004');
SELECT throws_ok($$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w1', 'x', attempt => 1)$$, 'QU004',
    'cannot continue job 00000000-0000-0000-0000-000000000001: it is held by worker w4, not w1',
    'the reaped worker''s continue_with: QU004');
SELECT results_eq($$SELECT outcome FROM queuert.renew_leases('w1', ARRAY[pg_temp.u(1)])$$,
    $$VALUES ('taken')$$, 'the reaped worker''s renewal: taken');
SELECT row_eq($$SELECT status::text, leased_by, attempt FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('running'::text, 'w4'::text, 2), 'and nothing changed');
-- Even the same worker with the old attempt is fenced out after a reclaim.
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second' WHERE id = pg_temp.u(1);
SELECT count(*) AS n FROM queuert.reap() \gset
SELECT count(*) AS n FROM queuert.claim('w4', ARRAY['t']) \gset
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(1), 'w4', attempt => 2)$$, 'QU004',
    'cannot complete job 00000000-0000-0000-0000-000000000001: attempt 2 is stale, the job is at attempt 3',
    'same worker, stale attempt after reclaim: QU004');

-- max_jobs: oldest leases first.
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'm', 'id', pg_temp.u(10)),
    jsonb_build_object('type_name', 'm', 'id', pg_temp.u(11)),
    jsonb_build_object('type_name', 'm', 'id', pg_temp.u(12))
)) \gset
SELECT count(*) AS n FROM queuert.claim('w5', ARRAY['m'], 3) \gset
UPDATE queuert.job SET leased_until = clock_timestamp() - (interval '1 minute' * (13 - right(id::text, 2)::integer))
WHERE id IN (pg_temp.u(10), pg_temp.u(11), pg_temp.u(12));
SELECT results_eq($$SELECT job_id FROM queuert.reap(max_jobs => 2) ORDER BY job_id$$,
    $$VALUES (pg_temp.u(10)), (pg_temp.u(11))$$, 'max_jobs 2: the two oldest expired leases');
SELECT results_eq($$SELECT job_id FROM queuert.reap(1)$$, $$VALUES (pg_temp.u(12))$$, 'then the last');

-- A NULL max_attempts type is never failed by reap.
UPDATE queuert.job SET status = 'running', leased_by = 'w6', attempt = 1000,
    leased_until = clock_timestamp() - interval '1 second'
WHERE id = pg_temp.u(10);
SELECT results_eq($$SELECT status::text FROM queuert.reap()$$, $$VALUES ('pending')$$,
    'NULL max_attempts: pending however many attempts');

SELECT throws_ok($$SELECT * FROM queuert.reap(0)$$, 'QU006', NULL,
    'max_jobs 0: QU006');

SELECT * FROM finish();
ROLLBACK;
