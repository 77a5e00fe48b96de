-- release_jobs: claimed jobs that never started go back to pending with the
-- claim's attempt taken back; outcomes released / taken / finished / not_found.
BEGIN;
SELECT plan(14);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- One attempt only: a release must not spend it.
SELECT count(*) AS n FROM queuert.set_job_type('once', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(3)),
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(4)),
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(5))
)) \gset
SELECT scheduled_at AS sched1 FROM queuert.job WHERE id = pg_temp.u(1) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['once'], 3) \gset
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['once'], 1) \gset
-- 1, 2, 3: running under w1 (attempt 1); 4: running under w2; 5: pending.
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(3), 'w1') \gset

CREATE TEMP TABLE r AS
SELECT * FROM queuert.release_jobs(
    worker_id => 'w1',
    job_ids => ARRAY[pg_temp.u(1), pg_temp.u(3), pg_temp.u(4), pg_temp.u(5), pg_temp.u(99), pg_temp.u(1)]
);
SELECT results_eq(
    $$SELECT job_id, outcome FROM r$$,
    $$VALUES (pg_temp.u(1), 'released'), (pg_temp.u(3), 'finished'), (pg_temp.u(4), 'taken'),
        (pg_temp.u(5), 'finished'), (pg_temp.u(99), 'not_found'), (pg_temp.u(1), 'released')$$,
    'one row per input element, in input order, with its outcome'
);
SELECT row_eq(
    $$SELECT status::text, attempt, leased_by, leased_until, last_attempt_error, last_attempt_at
      FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('pending'::text, 0, NULL::text, NULL::timestamptz, NULL::text, NULL::timestamptz),
    'released: pending, attempt taken back, lease cleared, no error recorded'
);
SELECT is((SELECT scheduled_at FROM queuert.job WHERE id = pg_temp.u(1)), :'sched1'::timestamptz,
    'released: keeps its place in the queue');
SELECT row_eq($$SELECT status::text, leased_by, attempt FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('running'::text, 'w2'::text, 1), 'another worker''s job is untouched');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(3)), 'completed',
    'a completed job stays completed');

-- Released under max_attempts = 1: claimable and completable again.
SELECT is((SELECT id FROM queuert.claim('w3', ARRAY['once'], 1)), pg_temp.u(1),
    'a released job is claimed again first (its old place)');
SELECT is((SELECT attempt FROM queuert.job WHERE id = pg_temp.u(1)), 1,
    'the new claim is attempt 1 again');

-- Fencing by attempt.
SELECT results_eq(
    $$SELECT outcome FROM queuert.release_jobs('w3', ARRAY[pg_temp.u(1)], ARRAY[7])$$,
    $$VALUES ('taken')$$,
    'a stale attempt is refused (taken)'
);
SELECT results_eq(
    $$SELECT outcome FROM queuert.release_jobs('w3', ARRAY[pg_temp.u(1)], ARRAY[1])$$,
    $$VALUES ('released')$$,
    'the current attempt is released'
);
SELECT is((SELECT attempt FROM queuert.job WHERE id = pg_temp.u(1)), 0, 'attempt back to 0');

-- Bad input: QU006, nothing changed.
SELECT throws_ok(
    $$SELECT * FROM queuert.release_jobs(NULL, ARRAY[pg_temp.u(2)])$$,
    'QU006', NULL, 'a NULL worker_id is QU006'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.release_jobs('w1', ARRAY[pg_temp.u(2), NULL])$$,
    'QU006', NULL, 'a NULL job id is QU006'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.release_jobs('w1', ARRAY[pg_temp.u(2)], ARRAY[1, 2])$$,
    'QU006', NULL, 'attempts of another length is QU006'
);
SELECT row_eq($$SELECT status::text, leased_by FROM queuert.job WHERE id = pg_temp.u(2)$$,
    ROW('running'::text, 'w1'::text), 'after the refused calls the job is still running under w1');

SELECT * FROM finish();
ROLLBACK;
