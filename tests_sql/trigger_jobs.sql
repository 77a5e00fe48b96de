-- trigger_jobs: pending jobs due now, all or nothing.
BEGIN;
SELECT plan(11);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(1), schedule_after => interval '1 hour') \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(2), schedule_after => interval '1 day') \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(3)) \gset
UPDATE queuert.job SET scheduled_at = now() - interval '1 minute' WHERE id = pg_temp.u(3);
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(4), schedule_after => interval '1 hour',
    blockers => ARRAY[pg_temp.u(3)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('r', id => pg_temp.u(5)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['r']) \gset

-- Refusals: nothing changes.
SELECT throws_ok($$SELECT * FROM queuert.trigger_jobs(ARRAY[pg_temp.u(1), pg_temp.u(99)])$$, 'QU001',
    'job 00000000-0000-0000-0000-000000000099 not found', 'an unknown id: QU001');
SELECT throws_ok($$SELECT * FROM queuert.trigger_jobs(ARRAY[pg_temp.u(1), pg_temp.u(4)])$$, 'QU003',
    'cannot trigger job 00000000-0000-0000-0000-000000000004: it is blocked, not pending',
    'a blocked job: QU003');
SELECT throws_ok($$SELECT * FROM queuert.trigger_jobs(ARRAY[pg_temp.u(5), pg_temp.u(1)])$$, 'QU003',
    'cannot trigger job 00000000-0000-0000-0000-000000000005: it is running, not pending',
    'a running job: QU003');
SELECT throws_ok($$SELECT * FROM queuert.trigger_jobs(NULL)$$, 'QU006',
    NULL, 'a NULL array: QU006');
SELECT throws_ok($$SELECT * FROM queuert.trigger_jobs(ARRAY[pg_temp.u(1), NULL])$$, 'QU006',
    NULL, 'a NULL element: QU006');
SELECT is((SELECT scheduled_at FROM queuert.job WHERE id = pg_temp.u(1)), now() + interval '1 hour',
    'after the refusals the first job is still scheduled in an hour');

CREATE TEMP TABLE r AS
SELECT * FROM queuert.trigger_jobs(job_ids => ARRAY[pg_temp.u(2), pg_temp.u(3), pg_temp.u(1), pg_temp.u(2)]);
SELECT results_eq($$SELECT job_id FROM r$$,
    $$VALUES (pg_temp.u(2)), (pg_temp.u(3)), (pg_temp.u(1))$$,
    'one row per distinct job, in input order');
SELECT results_eq(
    $$SELECT id, status::text, scheduled_at FROM queuert.job WHERE id IN (pg_temp.u(1), pg_temp.u(2), pg_temp.u(3))
      ORDER BY id$$,
    $$VALUES (pg_temp.u(1), 'pending', now()), (pg_temp.u(2), 'pending', now()),
        (pg_temp.u(3), 'pending', now() - interval '1 minute')$$,
    'future jobs are due now; an overdue job keeps its earlier time'
);
SELECT is(queuert.next_due_at(ARRAY['t']), now() - interval '1 minute', 'next_due_at sees them');
SELECT is((SELECT count(*)::integer FROM queuert.claim('x', ARRAY['t'], 10)), 3, 'all three are claimable now');
SELECT is((SELECT count(*)::integer FROM queuert.trigger_jobs('{}')), 0, 'an empty array: no rows');

SELECT * FROM finish();
ROLLBACK;
