-- Inspection: view queuert.chain, view queuert.stats, queuert.chain_jobs(chain_id).
BEGIN;
SELECT plan(9);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- 1: three steps, complete; 2: two steps, second running; 3: pending; 4: blocked on 3.
SELECT count(*) AS n FROM queuert.start_chain('order', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['order']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(1), 'w', 'pay', id => pg_temp.u(11)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['pay']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(11), 'w', 'ship', id => pg_temp.u(12)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['ship']) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(12), 'w', '{"tracking": "T1"}') \gset
SELECT count(*) AS n FROM queuert.start_chain('order', id => pg_temp.u(2)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['order']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(2), 'w', 'pay', id => pg_temp.u(21)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['pay']) \gset
SELECT count(*) AS n FROM queuert.start_chain('mail', id => pg_temp.u(3)) \gset
UPDATE queuert.job SET scheduled_at = now() - interval '5 minutes' WHERE id = pg_temp.u(3);
SELECT count(*) AS n FROM queuert.start_chain('mail', id => pg_temp.u(5), schedule_after => interval '1 hour') \gset
SELECT count(*) AS n FROM queuert.start_chain('report', id => pg_temp.u(4), blockers => ARRAY[pg_temp.u(3)]) \gset

SELECT results_eq(
    $$SELECT chain_id, type_name, status::text, current_job_id, current_type_name, job_count::integer,
        created_at, completed_at, output
      FROM queuert.chain ORDER BY chain_id$$,
    $$VALUES
        (pg_temp.u(1), 'order', 'completed', pg_temp.u(12), 'ship', 3, now(), now(), '{"tracking": "T1"}'::jsonb),
        (pg_temp.u(2), 'order', 'running', pg_temp.u(21), 'pay', 2, now(), NULL::timestamptz, NULL::jsonb),
        (pg_temp.u(3), 'mail', 'pending', pg_temp.u(3), 'mail', 1, now(), NULL::timestamptz, NULL::jsonb),
        (pg_temp.u(4), 'report', 'blocked', pg_temp.u(4), 'report', 1, now(), NULL::timestamptz, NULL::jsonb),
        (pg_temp.u(5), 'mail', 'pending', pg_temp.u(5), 'mail', 1, now(), NULL::timestamptz, NULL::jsonb)$$,
    'queuert.chain: one row per chain; status, current job and output from its last job'
);

-- A cancelled chain has no completion and no output.
SELECT count(*) AS n FROM queuert.cancel_chains(ARRAY[pg_temp.u(5)]) \gset
SELECT row_eq($$SELECT status::text, completed_at, output FROM queuert.chain WHERE chain_id = pg_temp.u(5)$$,
    ROW('cancelled'::text, NULL::timestamptz, NULL::jsonb), 'a cancelled chain');

SELECT results_eq(
    $$SELECT type_name, status::text, count::integer, oldest_due_age FROM queuert.stats ORDER BY type_name, status::text$$,
    $$VALUES
        ('mail', 'cancelled', 1, NULL::interval),
        ('mail', 'pending', 1, interval '5 minutes'),
        ('order', 'completed', 2, NULL::interval),
        ('pay', 'completed', 1, NULL::interval),
        ('pay', 'running', 1, NULL::interval),
        ('report', 'blocked', 1, NULL::interval),
        ('ship', 'completed', 1, NULL::interval)$$,
    'queuert.stats: one row per type and status; oldest_due_age for due pending jobs'
);
SELECT count(*) AS n FROM queuert.start_chain('mail', id => pg_temp.u(6), schedule_after => interval '1 hour') \gset
SELECT row_eq($$SELECT count::integer, oldest_due_age FROM queuert.stats WHERE type_name = 'mail' AND status = 'pending'$$,
    ROW(2, interval '5 minutes'), 'a job not yet due counts but does not age');
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(6)]) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['mail'], 2) \gset
SELECT row_eq($$SELECT count::integer, oldest_due_age FROM queuert.stats WHERE type_name = 'mail' AND status = 'running'$$,
    ROW(2, NULL::interval), 'running rows have no due age');

SELECT results_eq(
    $$SELECT id, chain_id, chain_index, type_name, chain_type_name, status::text, output, continued_to
      FROM queuert.chain_jobs(pg_temp.u(1))$$,
    $$VALUES
        (pg_temp.u(1), pg_temp.u(1), 0, 'order', 'order', 'completed', NULL::jsonb, pg_temp.u(11)),
        (pg_temp.u(11), pg_temp.u(1), 1, 'pay', 'order', 'completed', NULL::jsonb, pg_temp.u(12)),
        (pg_temp.u(12), pg_temp.u(1), 2, 'ship', 'order', 'completed', '{"tracking": "T1"}'::jsonb, NULL::uuid)$$,
    'chain_jobs: the chain''s jobs in chain_index order'
);
SELECT is((SELECT count(*)::integer FROM queuert.chain_jobs(pg_temp.u(11))), 0,
    'chain_jobs of a non-root id: nothing');
SELECT is((SELECT count(*)::integer FROM queuert.chain_jobs(chain_id => pg_temp.u(99))), 0,
    'chain_jobs of an unknown chain: nothing');
SELECT ok(
    (SELECT ARRAY['id', 'type_name', 'chain_id', 'chain_type_name', 'chain_index', 'input', 'output',
        'status', 'priority', 'attempt', 'scheduled_at', 'created_at', 'completed_at', 'completed_by',
        'leased_by', 'leased_until', 'last_attempt_at', 'last_attempt_error', 'continued_to',
        'dedup_key', 'trace_context'] <@ array_agg(k)
     FROM (SELECT jsonb_object_keys(to_jsonb(c)) AS k FROM queuert.chain_jobs(pg_temp.u(2)) AS c) AS s),
    'chain_jobs rows carry every listed job column by name'
);

SELECT * FROM finish();
ROLLBACK;
