-- release_unknown_jobs: after a lost claim answer, the jobs running under the
-- worker that it does not know go back to pending with the attempt restored;
-- known jobs, other workers' jobs and finished jobs are untouched.
BEGIN;
SELECT plan(10);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'a', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 'b', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 'a', 'id', pg_temp.u(3)),
    jsonb_build_object('type_name', 'a', 'id', pg_temp.u(4)),
    jsonb_build_object('type_name', 'a', 'id', pg_temp.u(5))
)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['a', 'b'], 4) \gset
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['a'], 1) \gset
-- 1, 2, 3, 4: running under w1 (attempt 1); 5: running under w2; 4 then completed.
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(4), 'w1') \gset

SELECT results_eq(
    $$SELECT job_id, type_name FROM queuert.release_unknown_jobs('w1', ARRAY[pg_temp.u(3), pg_temp.u(99)])$$,
    $$VALUES (pg_temp.u(1), 'a'), (pg_temp.u(2), 'b')$$,
    'the running jobs of w1 it does not know are released, with their types'
);
SELECT results_eq(
    $$SELECT id, status::text, attempt, leased_by, last_attempt_error FROM queuert.job
      WHERE id IN (pg_temp.u(1), pg_temp.u(2)) ORDER BY id$$,
    $$VALUES (pg_temp.u(1), 'pending', 0, NULL::text, NULL::text),
        (pg_temp.u(2), 'pending', 0, NULL::text, NULL::text)$$,
    'released: pending, attempt taken back, no error recorded'
);
SELECT row_eq($$SELECT status::text, leased_by, attempt FROM queuert.job WHERE id = pg_temp.u(3)$$,
    ROW('running'::text, 'w1'::text, 1), 'a known job keeps running');
SELECT row_eq($$SELECT status::text, leased_by FROM queuert.job WHERE id = pg_temp.u(5)$$,
    ROW('running'::text, 'w2'::text), 'another worker''s job is untouched');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(4)), 'completed',
    'a completed job stays completed');
SELECT is_empty($$SELECT * FROM queuert.release_unknown_jobs('w1', ARRAY[pg_temp.u(3)])$$,
    'nothing unknown left: nothing released');
SELECT results_eq($$SELECT job_id FROM queuert.release_unknown_jobs('w1')$$,
    $$VALUES (pg_temp.u(3))$$, 'no known ids: every running job of the worker');

-- Bad input: QU006, nothing changed.
SELECT throws_ok($$SELECT * FROM queuert.release_unknown_jobs(NULL, '{}')$$,
    'QU006', NULL, 'a NULL worker_id is QU006');
SELECT throws_ok($$SELECT * FROM queuert.release_unknown_jobs('w2', ARRAY[NULL::uuid])$$,
    'QU006', NULL, 'a NULL known id is QU006');
SELECT row_eq($$SELECT status::text, leased_by FROM queuert.job WHERE id = pg_temp.u(5)$$,
    ROW('running'::text, 'w2'::text), 'after the refused calls the job is still running under w2');

SELECT * FROM finish();
ROLLBACK;
