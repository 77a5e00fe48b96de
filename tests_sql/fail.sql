-- fail: backoff arithmetic, max_attempts, retry_at, fencing, failures from outside.
BEGIN;
SELECT plan(26);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- initial 10 s, x2, capped at 25 s, three attempts.
SELECT count(*) AS n FROM queuert.set_job_type('flaky', max_attempts => 3,
    backoff_initial => interval '10 seconds', backoff_multiplier => 2,
    backoff_max => interval '25 seconds') \gset
SELECT count(*) AS n FROM queuert.start_chain('flaky', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['flaky']) \gset

SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(1), 'w2', 'x')$$, 'QU004',
    'cannot fail job 00000000-0000-0000-0000-000000000001: it is held by worker w1, not w2',
    'another worker: QU004');
SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(1), 'w1', 'x', attempt => 0)$$, 'QU004',
    'cannot fail job 00000000-0000-0000-0000-000000000001: attempt 0 is stale, the job is at attempt 1',
    'a stale attempt: QU004');
SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(99), 'w1', 'x')$$, 'QU001',
    'job 00000000-0000-0000-0000-000000000099 not found', 'unknown job: QU001');

-- Attempt 1: initial * 2^0 = 10 s.
SELECT row_eq(
    $$SELECT id, status::text, scheduled_at, attempt FROM queuert.fail(pg_temp.u(1), 'w1', 'boom 1', attempt => 1)$$,
    ROW(pg_temp.u(1), 'pending'::text, now() + interval '10 seconds', 1),
    'attempt 1 fails: pending again after backoff_initial'
);
SELECT row_eq(
    $$SELECT status::text, last_attempt_error, last_attempt_at, leased_by, leased_until, attempt
      FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('pending'::text, 'boom 1'::text, now(), NULL::text, NULL::timestamptz, 1),
    'error and time recorded, lease cleared, attempt kept'
);
SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(1), 'w1', 'again')$$, 'QU003',
    'cannot fail job 00000000-0000-0000-0000-000000000001: it is pending, not running',
    'a worker failing a job that is not running: QU003');

-- Attempt 2: 10 * 2^1 = 20 s.
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(1)]) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['flaky']) \gset
SELECT row_eq(
    $$SELECT status::text, scheduled_at, attempt FROM queuert.fail(pg_temp.u(1), 'w1', 'boom 2')$$,
    ROW('pending'::text, now() + interval '20 seconds', 2),
    'attempt 2: backoff_initial * multiplier'
);

-- Attempt 3 = max_attempts: failed, scheduled_at kept.
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(1)]) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['flaky']) \gset
UPDATE queuert.job SET scheduled_at = now() - interval '5 seconds' WHERE id = pg_temp.u(1);
SELECT row_eq(
    $$SELECT status::text, scheduled_at, attempt FROM queuert.fail(pg_temp.u(1), 'w1', 'boom 3', attempt => 3)$$,
    ROW('failed'::text, now() - interval '5 seconds', 3),
    'attempt 3 of 3: failed'
);
SELECT row_eq(
    $$SELECT status::text, last_attempt_error, leased_by FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('failed'::text, 'boom 3'::text, NULL::text), 'failed is stored with the last error'
);
SELECT is((SELECT count(*)::integer FROM queuert.claim('w1', ARRAY['flaky'])), 0,
    'a failed job is not claimed');
SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(1), NULL, 'x')$$, 'QU003',
    'cannot fail job 00000000-0000-0000-0000-000000000001 from outside: it is failed',
    'failing a failed job from outside: QU003');

-- The cap: attempt 3 without max_attempts would be 40 s, capped at 25 s.
SELECT count(*) AS n FROM queuert.set_job_type('capped', backoff_initial => interval '10 seconds',
    backoff_multiplier => 2, backoff_max => interval '25 seconds') \gset
SELECT count(*) AS n FROM queuert.start_chain('capped', id => pg_temp.u(2)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['capped']) \gset
UPDATE queuert.job SET attempt = 3 WHERE id = pg_temp.u(2);
SELECT row_eq(
    $$SELECT status::text, scheduled_at FROM queuert.fail(pg_temp.u(2), 'w1', 'x')$$,
    ROW('pending'::text, now() + interval '25 seconds'), 'backoff capped at backoff_max'
);

-- NULL max_attempts retries forever; a huge attempt count saturates at the cap.
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(2)]) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['capped']) \gset
UPDATE queuert.job SET attempt = 100000 WHERE id = pg_temp.u(2);
SELECT row_eq(
    $$SELECT status::text, scheduled_at, attempt FROM queuert.fail(pg_temp.u(2), 'w1', 'x')$$,
    ROW('pending'::text, now() + interval '25 seconds', 100000),
    'NULL max_attempts: attempt 100000 still retries, at backoff_max'
);

-- Fractional multiplier: 2 s * 1.5^2 = 4.5 s.
SELECT count(*) AS n FROM queuert.set_job_type('frac', backoff_initial => interval '2 seconds',
    backoff_multiplier => 1.5, backoff_max => interval '1 hour') \gset
SELECT count(*) AS n FROM queuert.start_chain('frac', id => pg_temp.u(3)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['frac']) \gset
UPDATE queuert.job SET attempt = 3 WHERE id = pg_temp.u(3);
SELECT is(
    (SELECT scheduled_at FROM queuert.fail(pg_temp.u(3), 'w1', 'x')),
    now() + interval '4.5 seconds', 'attempt 3: 2 s * 1.5^2 = 4.5 s'
);

-- A type never set: 10 s, x2, capped at 5 min, unlimited.
SELECT count(*) AS n FROM queuert.start_chain('plain', id => pg_temp.u(4)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['plain']) \gset
SELECT is((SELECT scheduled_at FROM queuert.fail(pg_temp.u(4), 'w1', 'x')),
    now() + interval '10 seconds', 'default policy: 10 s after attempt 1');
UPDATE queuert.job SET status = 'running', leased_by = 'w1', leased_until = clock_timestamp() + interval '1 minute',
    attempt = 6
WHERE id = pg_temp.u(4);
SELECT is((SELECT scheduled_at FROM queuert.fail(pg_temp.u(4), 'w1', 'x')),
    now() + interval '5 minutes', 'default policy: 10 s * 2^5 = 320 s capped at 5 min');

-- retry_at: used as given, a past one clamped to now.
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(4)]) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['plain']) \gset
SELECT is((SELECT scheduled_at FROM queuert.fail(pg_temp.u(4), 'w1', 'x', retry_at => now() + interval '3 hours')),
    now() + interval '3 hours', 'retry_at overrides the backoff');
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(4)]) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['plain']) \gset
SELECT is((SELECT scheduled_at FROM queuert.fail(pg_temp.u(4), 'w1', 'x', retry_at => now() - interval '3 hours')),
    now(), 'a past retry_at is clamped to now');

-- From outside: a pending job, no attempt counted.
SELECT count(*) AS n FROM queuert.start_chain('flaky', id => pg_temp.u(5)) \gset
SELECT row_eq(
    $$SELECT status::text, scheduled_at, attempt FROM queuert.fail(pg_temp.u(5), NULL, 'bad input')$$,
    ROW('pending'::text, now() + interval '10 seconds', 0),
    'outside failure of a pending job: pending after backoff, attempt stays 0'
);
SELECT row_eq(
    $$SELECT attempt, last_attempt_error, last_attempt_at FROM queuert.job WHERE id = pg_temp.u(5)$$,
    ROW(0, 'bad input'::text, now()), 'error recorded'
);
-- From outside: a running job; the worker loses it.
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(5)]) \gset
SELECT count(*) AS n FROM queuert.claim('w9', ARRAY['flaky']) \gset
SELECT row_eq(
    $$SELECT status::text, attempt FROM queuert.fail(pg_temp.u(5), NULL, 'stop')$$,
    ROW('pending'::text, 1), 'outside failure of a running job'
);
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(5), 'w9')$$, 'QU003',
    'cannot complete job 00000000-0000-0000-0000-000000000005: it is pending, not running',
    'its worker then gets QU003');
-- From outside: blocked and completed are QU003.
SELECT count(*) AS n FROM queuert.start_chain('flaky', id => pg_temp.u(6), blockers => ARRAY[pg_temp.u(5)]) \gset
SELECT throws_ok($$SELECT * FROM queuert.fail(pg_temp.u(6), NULL, 'x')$$, 'QU003',
    'cannot fail job 00000000-0000-0000-0000-000000000006 from outside: it is blocked',
    'failing a blocked job from outside: QU003');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(6)), 'blocked', 'still blocked');

-- max_attempts 1: the first failure is final.
SELECT count(*) AS n FROM queuert.set_job_type('once', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.start_chain('once', id => pg_temp.u(7)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['once']) \gset
SELECT is((SELECT status::text FROM queuert.fail(pg_temp.u(7), 'w1', 'x')), 'failed',
    'max_attempts 1: failed at once');
SELECT is((SELECT status::text FROM queuert.chain WHERE chain_id = pg_temp.u(7)), 'failed',
    'the chain is failed');

SELECT * FROM finish();
ROLLBACK;
