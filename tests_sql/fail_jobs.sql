-- fail_jobs: the batched failure, its per-job outcomes and fail()'s policy.
BEGIN;
SELECT plan(10);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.set_job_type('once', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.set_job_type('t', backoff_initial => interval '30 seconds') \gset
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(3)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(4)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(5))
)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['t', 'once'], 4) \gset
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['t'], 1) \gset

SELECT results_eq(
    $$SELECT job_id, outcome, status::text, scheduled_at FROM queuert.fail_jobs(
        worker_id => 'w1',
        job_ids => ARRAY[pg_temp.u(1), pg_temp.u(2), pg_temp.u(3), pg_temp.u(5), pg_temp.u(4), pg_temp.u(99)],
        errors => ARRAY['e1', 'e2', 'e3', 'e5', 'e4', 'e99'],
        retry_ats => ARRAY[NULL, now() + interval '1 hour', NULL, NULL, NULL, NULL]::timestamptz [],
        attempts => ARRAY[1, 1, 1, 1, 2, 1])$$,
    $$VALUES
        (pg_temp.u(1), 'failed', 'pending', now() + interval '30 seconds'),
        (pg_temp.u(2), 'failed', 'pending', now() + interval '1 hour'),
        (pg_temp.u(3), 'failed', 'failed', now()),
        (pg_temp.u(5), 'taken', NULL, NULL::timestamptz),
        (pg_temp.u(4), 'taken', NULL, NULL),
        (pg_temp.u(99), 'not_found', NULL, NULL)$$,
    'outcomes in input order: backoff, an explicit retry_at, max_attempts reached, '
    || 'another worker''s job, a stale attempt, an unknown id'
);
SELECT results_eq(
    $$SELECT id, status::text, last_attempt_error, last_attempt_at, leased_by, attempt
      FROM queuert.job WHERE id IN (pg_temp.u(1), pg_temp.u(3), pg_temp.u(4), pg_temp.u(5)) ORDER BY id$$,
    $$VALUES
        (pg_temp.u(1), 'pending', 'e1'::text, now(), NULL::text, 1),
        (pg_temp.u(3), 'failed', 'e3', now(), NULL, 1),
        (pg_temp.u(4), 'running', NULL, NULL::timestamptz, 'w1', 1),
        (pg_temp.u(5), 'running', NULL, NULL, 'w2', 1)$$,
    'only the jobs running under w1 at the given attempt changed; the lease is cleared'
);
SELECT results_eq(
    $$SELECT outcome FROM queuert.fail_jobs('w1', ARRAY[pg_temp.u(1)], ARRAY['again'])$$,
    $$VALUES ('finished')$$, 'a job no longer running: finished'
);
SELECT results_eq(
    $$SELECT outcome, status::text FROM queuert.fail_jobs('w1', ARRAY[pg_temp.u(4), pg_temp.u(4)], ARRAY['a', 'b'])$$,
    $$VALUES ('failed', 'pending'), ('failed', 'pending')$$,
    'a repeated id is failed once (the first error), reported per input element'
);
SELECT is((SELECT last_attempt_error FROM queuert.job WHERE id = pg_temp.u(4)), 'a', 'the first error is kept');

SELECT throws_ok($$SELECT * FROM queuert.fail_jobs('w1', ARRAY[pg_temp.u(1)], ARRAY['a', 'b'])$$,
    'QU006', 'errors, retry_ats and attempts must have one element per job id', 'length mismatch: QU006');
SELECT throws_ok($$SELECT * FROM queuert.fail_jobs('w1', ARRAY[pg_temp.u(1)], NULL)$$,
    'QU006', NULL, 'no errors: QU006');
SELECT throws_ok($$SELECT * FROM queuert.fail_jobs(NULL, ARRAY[pg_temp.u(1)], ARRAY['a'])$$,
    'QU006', 'fail_jobs needs a worker_id and an array of job ids without NULLs', 'NULL worker: QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.fail_jobs('w2', ARRAY[pg_temp.u(5)], ARRAY['a'], ARRAY['infinity']::timestamptz [])$$,
    'QU006', 'retry_ats must be before the year 10000', 'an infinite retry_at: QU006');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(5)), 'running',
    'a refused call changed nothing');

SELECT * FROM finish();
ROLLBACK;
