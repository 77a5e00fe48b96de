-- reap_jobs: reap with each job's type (reap.sql covers what both do).
BEGIN;
SELECT plan(5);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT is((SELECT count(*)::integer FROM queuert.reap_jobs()), 0, 'nothing to reap: no rows');

SELECT count(*) AS n FROM queuert.set_job_type('once', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'resize', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 'once', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 'resize', 'id', pg_temp.u(3))
)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['resize', 'once'], 3) \gset
-- 1 and 2 expired, 3 live
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second'
WHERE id IN (pg_temp.u(1), pg_temp.u(2));

SELECT results_eq(
    $$SELECT job_id, previous_worker, status::text, type_name FROM queuert.reap_jobs() ORDER BY job_id$$,
    $$VALUES (pg_temp.u(1), 'w1', 'pending', 'resize'), (pg_temp.u(2), 'w1', 'failed', 'once')$$,
    'each reaped job with its type: back to pending, or failed when attempts are exhausted'
);
SELECT results_eq(
    $$SELECT id, status::text, leased_by FROM queuert.job ORDER BY id$$,
    $$VALUES (pg_temp.u(1), 'pending', NULL), (pg_temp.u(2), 'failed', NULL), (pg_temp.u(3), 'running', 'w1')$$,
    'the live lease is untouched'
);
-- reap answers the same rows without the type
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second' WHERE id = pg_temp.u(3);
SELECT results_eq(
    $$SELECT job_id, previous_worker, status::text FROM queuert.reap()$$,
    $$VALUES (pg_temp.u(3), 'w1', 'pending')$$,
    'reap: the same reaping, three columns'
);
SELECT throws_ok($$SELECT * FROM queuert.reap_jobs(0)$$, 'QU006', 'max_jobs must be at least 1, got 0',
    'max_jobs 0: QU006');

SELECT * FROM finish();
ROLLBACK;
