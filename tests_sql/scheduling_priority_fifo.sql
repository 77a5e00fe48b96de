-- Scheduling, priorities and FIFO within one transaction (same now(): seq breaks ties).
BEGIN;
SELECT plan(8);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- Ten jobs, one transaction, identical timestamps: insertion order, ids deliberately shuffled.
SELECT count(*) AS n FROM queuert.start_chain('fifo', id => pg_temp.u(7)) \gset
SELECT count(*) AS n FROM queuert.start_chain('fifo', id => pg_temp.u(3)) \gset
SELECT count(*) AS n FROM queuert.start_chain('fifo', id => pg_temp.u(9)) \gset
SELECT count(*) AS n FROM queuert.start_chain('fifo', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.start_chain('fifo', id => pg_temp.u(5)) \gset
SELECT is((SELECT count(DISTINCT created_at)::integer FROM queuert.job), 1, 'all created at the same now()');
SELECT results_eq($$SELECT id FROM queuert.claim('w', ARRAY['fifo'], 2)$$,
    $$VALUES (pg_temp.u(7)), (pg_temp.u(3))$$, 'first two in insertion order');
SELECT results_eq($$SELECT id FROM queuert.claim('w', ARRAY['fifo'], 10)$$,
    $$VALUES (pg_temp.u(9)), (pg_temp.u(1)), (pg_temp.u(5))$$, 'the rest in insertion order');

-- Priority first, then scheduled_at, then insertion order.
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(20)),
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(21), 'priority', 1),
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(22), 'priority', -1),
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(23), 'priority', 1),
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(24)),
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(25), 'priority', 100,
        'schedule_after_ms', 60000)
)) \gset
UPDATE queuert.job SET scheduled_at = now() - interval '10 seconds' WHERE id = pg_temp.u(24);
UPDATE queuert.job SET scheduled_at = now() - interval '1 second' WHERE id = pg_temp.u(23);
SELECT results_eq($$SELECT id, priority FROM queuert.claim('w', ARRAY['p'], 10)$$,
    $$VALUES (pg_temp.u(23), 1), (pg_temp.u(21), 1), (pg_temp.u(24), 0), (pg_temp.u(20), 0), (pg_temp.u(22), -1)$$,
    'higher priority first; within a priority earlier scheduled_at, then insertion; not-yet-due skipped');
SELECT is(queuert.next_due_at(ARRAY['p']), now() + interval '1 minute', 'the high-priority job is due in a minute');

-- Scheduling forms and clamping (also in start_chain.sql); trigger makes it due.
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(25)]) \gset
SELECT results_eq($$SELECT id FROM queuert.claim('w', ARRAY['p'])$$, $$VALUES (pg_temp.u(25))$$,
    'a triggered job is claimable');

-- A retried job (fail) goes behind jobs already due; a reaped job keeps its place.
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'q', 'id', pg_temp.u(30)),
    jsonb_build_object('type_name', 'q', 'id', pg_temp.u(31)),
    jsonb_build_object('type_name', 'q', 'id', pg_temp.u(32))
)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['q'], 2) \gset
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(30), 'w', 'x', retry_at => now()) \gset
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second' WHERE id = pg_temp.u(31);
SELECT count(*) AS n FROM queuert.reap() \gset
SELECT results_eq($$SELECT id FROM queuert.claim('w', ARRAY['q'], 3)$$,
    $$VALUES (pg_temp.u(30)), (pg_temp.u(31)), (pg_temp.u(32))$$,
    'at equal scheduled_at, insertion order holds for retried and reaped jobs too');

-- Priority of a continuation is inherited, and counts for claim order.
SELECT count(*) AS n FROM queuert.start_chain('c', id => pg_temp.u(40), priority => 5) \gset
SELECT count(*) AS n FROM queuert.start_chain('c2', id => pg_temp.u(41), priority => 4) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['c']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(40), 'w', 'c2', id => pg_temp.u(42)) \gset
SELECT results_eq($$SELECT id, priority FROM queuert.claim('w', ARRAY['c2'], 2)$$,
    $$VALUES (pg_temp.u(42), 5), (pg_temp.u(41), 4)$$, 'an inherited priority outranks an older job');

SELECT * FROM finish();
ROLLBACK;
