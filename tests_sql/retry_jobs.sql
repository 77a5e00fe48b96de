-- retry_jobs: failed or cancelled jobs run again, attempt reset, all or nothing.
BEGIN;
SELECT plan(18);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.set_job_type('once', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.start_chain('once', id => pg_temp.u(1),
    schedule_at => now() + interval '1 hour') \gset
UPDATE queuert.job SET scheduled_at = now() WHERE id = pg_temp.u(1);
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['once']) \gset
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(1), 'w', 'boom') \gset
SELECT count(*) AS n FROM queuert.start_chain('c', id => pg_temp.u(2), schedule_after => interval '1 day') \gset
SELECT count(*) AS n FROM queuert.cancel_chains(ARRAY[pg_temp.u(2)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('p', id => pg_temp.u(3)) \gset
SELECT count(*) AS n FROM queuert.start_chain('done', id => pg_temp.u(4)) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(4), NULL) \gset
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(1)), 'failed', 'arranged: failed');

-- Refusals: all or nothing.
SELECT throws_ok($$SELECT * FROM queuert.retry_jobs(ARRAY[pg_temp.u(1), pg_temp.u(99)])$$, 'QU001',
    'job 00000000-0000-0000-0000-000000000099 not found', 'an unknown id: QU001');
SELECT throws_ok($$SELECT * FROM queuert.retry_jobs(ARRAY[pg_temp.u(1), pg_temp.u(3)])$$, 'QU003',
    'cannot retry job 00000000-0000-0000-0000-000000000003: it is pending, not failed or cancelled',
    'a pending job: QU003');
SELECT throws_ok($$SELECT * FROM queuert.retry_jobs(ARRAY[pg_temp.u(4), pg_temp.u(1)])$$, 'QU003',
    'cannot retry job 00000000-0000-0000-0000-000000000004: it is completed, not failed or cancelled',
    'a completed job: QU003');
SELECT throws_ok($$SELECT * FROM queuert.retry_jobs(NULL)$$, 'QU006',
    NULL, 'a NULL array: QU006');
SELECT throws_ok($$SELECT * FROM queuert.retry_jobs(ARRAY[NULL, pg_temp.u(1)])$$, 'QU006',
    NULL, 'a NULL element: QU006');
SELECT row_eq($$SELECT status::text, attempt FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('failed'::text, 1), 'after the refusals the failed job is untouched');

CREATE TEMP TABLE r AS SELECT * FROM queuert.retry_jobs(job_ids => ARRAY[pg_temp.u(2), pg_temp.u(1), pg_temp.u(2)]);
SELECT results_eq($$SELECT job_id FROM r$$, $$VALUES (pg_temp.u(2)), (pg_temp.u(1))$$,
    'one row per distinct job, in input order');
SELECT results_eq(
    $$SELECT id, status::text, attempt, scheduled_at, leased_by, last_attempt_error FROM queuert.job
      WHERE id IN (pg_temp.u(1), pg_temp.u(2)) ORDER BY id$$,
    $$VALUES (pg_temp.u(1), 'pending', 0, now(), NULL, 'boom'),
        (pg_temp.u(2), 'pending', 0, now(), NULL, NULL)$$,
    'failed and cancelled jobs are pending now with attempt 0 (the last error kept)'
);
SELECT is((SELECT status::text FROM queuert.chain WHERE chain_id = pg_temp.u(2)), 'pending',
    'the cancelled chain is pending again');

-- max_attempts applies afresh.
SELECT results_eq($$SELECT id, attempt FROM queuert.claim('w', ARRAY['once'])$$,
    $$VALUES (pg_temp.u(1), 1)$$, 'claimed again at attempt 1');
SELECT is((SELECT status::text FROM queuert.fail(pg_temp.u(1), 'w', 'boom again')), 'failed',
    'and one failure is final again');

-- A retried dependent whose blocker chain is incomplete is blocked again.
SELECT count(*) AS n FROM queuert.start_chain('blk', id => pg_temp.u(10)) \gset
SELECT count(*) AS n FROM queuert.start_chain('blk', id => pg_temp.u(11)) \gset
SELECT count(*) AS n FROM queuert.start_chain('dep', id => pg_temp.u(12),
    blockers => ARRAY[pg_temp.u(10), pg_temp.u(11)]) \gset
SELECT count(*) AS n FROM queuert.cancel_chains(ARRAY[pg_temp.u(12), pg_temp.u(10), pg_temp.u(11)]) \gset
SELECT count(*) AS n FROM queuert.retry_jobs(ARRAY[pg_temp.u(10), pg_temp.u(11)]) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(10), NULL) \gset
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(12)), 'cancelled',
    'a cancelled dependent stays cancelled when a blocker completes');
SELECT results_eq($$SELECT job_id FROM queuert.retry_jobs(ARRAY[pg_temp.u(12)])$$,
    $$VALUES (pg_temp.u(12))$$, 'retry the dependent');
SELECT row_eq($$SELECT status::text, open_blockers FROM queuert.job WHERE id = pg_temp.u(12)$$,
    ROW('blocked'::text, 1), 'blocked again on the one incomplete blocker chain');
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(11), NULL) \gset
SELECT row_eq($$SELECT status::text, open_blockers, scheduled_at FROM queuert.job WHERE id = pg_temp.u(12)$$,
    ROW('pending'::text, 0, now()), 'and unblocked when it completes');

-- A failed blocker chain holds its dependent until retried and completed.
SELECT count(*) AS n FROM queuert.start_chain('once', id => pg_temp.u(20)) \gset
SELECT count(*) AS n FROM queuert.start_chain('dep', id => pg_temp.u(21), blockers => ARRAY[pg_temp.u(20)]) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['once']) \gset
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(20), 'w', 'x') \gset
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(21)), 'blocked',
    'a failed blocker chain keeps the dependent blocked');
SELECT count(*) AS n FROM queuert.retry_jobs(ARRAY[pg_temp.u(20)]) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['once']) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(20), 'w') \gset
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(21)), 'pending',
    'retried and completed: the dependent runs');

SELECT * FROM finish();
ROLLBACK;
