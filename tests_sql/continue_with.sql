-- continue_with: hand-off, the next job, idempotent repeats, fencing, loops and branches.
BEGIN;
SELECT plan(32);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.start_chain('order', id => pg_temp.u(1), priority => 3,
    trace_context => 'tc-root') \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['order']) \gset

SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w2', 'pay')$$, 'QU004',
    'cannot continue job 00000000-0000-0000-0000-000000000001: it is held by worker w1, not w2',
    'another worker: QU004');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w1', 'pay', attempt => 5)$$, 'QU004',
    'cannot continue job 00000000-0000-0000-0000-000000000001: attempt 5 is stale, the job is at attempt 1',
    'a stale attempt: QU004');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w1', 'pay', blockers => ARRAY[pg_temp.u(1)])$$,
    'QU006',
    'a continuation of chain 00000000-0000-0000-0000-000000000001 cannot be blocked on its own chain',
    'blocked on its own chain: QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w1', '')$$, 'QU006',
    NULL, 'an empty type name: QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w1', 'pay', schedule_after => interval '-1 s')$$,
    'QU006', NULL, 'a negative delay: QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(99), 'w1', 'pay')$$, 'QU001',
    'job 00000000-0000-0000-0000-000000000099 not found', 'unknown job: QU001');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE chain_id = pg_temp.u(1)), 1,
    'no refusal created a job');

CREATE TEMP TABLE r1 AS
SELECT * FROM queuert.continue_with(
    job_id => pg_temp.u(1), worker_id => 'w1', type_name => 'pay', input => '{"amount": 5}',
    id => pg_temp.u(2), schedule_after => interval '30 seconds', attempt => 1
);
SELECT row_eq(
    $$SELECT id, chain_id, chain_index, type_name, status::text, scheduled_at, deduplicated FROM r1$$,
    ROW(pg_temp.u(2), pg_temp.u(1), 1, 'pay'::text, 'pending'::text, now() + interval '30 seconds', false),
    'returns the new job'
);
SELECT row_eq(
    $$SELECT status::text, output, continued_to, completed_by, completed_at, leased_by, leased_until,
        chain_completed_at
      FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('completed'::text, NULL::jsonb, pg_temp.u(2), 'w1'::text, now(), NULL::text,
        NULL::timestamptz, NULL::timestamptz),
    'the current job is completed as handed off; the chain is not complete'
);
SELECT row_eq(
    $$SELECT chain_id, chain_type_name, chain_index, type_name, input, status::text, priority,
        attempt, trace_context, dedup_key
      FROM queuert.job WHERE id = pg_temp.u(2)$$,
    ROW(pg_temp.u(1), 'order'::text, 1, 'pay'::text, '{"amount": 5}'::jsonb, 'pending'::text, 3, 0,
        'tc-root'::text, NULL::text),
    'the next job: same chain, root type, index 1, priority and trace context inherited'
);

-- Repeats by whoever made the first call return the same next job.
CREATE TEMP TABLE r2 AS
SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w1', 'something-else', input => '1', priority => 9);
SELECT row_eq(
    $$SELECT id, chain_id, chain_index, type_name, status::text, scheduled_at, deduplicated FROM r2$$,
    ROW(pg_temp.u(2), pg_temp.u(1), 1, 'pay'::text, 'pending'::text, now() + interval '30 seconds', true),
    'a repeat by the same worker returns the existing next job, deduplicated, new arguments ignored'
);
SELECT is(
    (SELECT id FROM queuert.continue_with(pg_temp.u(1), 'w1', 'pay', attempt => 1)), pg_temp.u(2),
    'a repeat with the current attempt is also idempotent'
);
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE chain_id = pg_temp.u(1)), 2,
    'repeats created nothing');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w2', 'pay')$$, 'QU004',
    'job 00000000-0000-0000-0000-000000000001 was already continued by worker w1, not by worker w2 at attempt 1',
    'a repeat by another worker: QU004');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), 'w1', 'pay', attempt => 2)$$, 'QU004',
    'job 00000000-0000-0000-0000-000000000001 was already continued by worker w1, not by worker w1 at attempt 2',
    'a repeat with a stale attempt: QU004');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(1), NULL, 'pay')$$, 'QU004',
    'job 00000000-0000-0000-0000-000000000001 was already continued by worker w1, not by an outside call',
    'an outside repeat of a worker''s continuation: QU004 (only whoever made the first call may repeat it)');
SELECT throws_ok(
    $$SELECT * FROM queuert.complete(pg_temp.u(1), 'w1')$$, 'QU003',
    'cannot complete job 00000000-0000-0000-0000-000000000001: it is completed, not running',
    'a continued job cannot be completed');

-- A worker cannot continue a job that is not running.
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(2), 'w1', 'ship')$$, 'QU003',
    'cannot continue job 00000000-0000-0000-0000-000000000002: it is pending, not running',
    'a worker continuing a pending job: QU003');

-- Outside continuation (workerless) of a pending job; repeats from outside are idempotent.
CREATE TEMP TABLE r3 AS
SELECT * FROM queuert.continue_with(pg_temp.u(2), NULL, 'ship', id => pg_temp.u(3), priority => 7,
    trace_context => 'tc-ship', schedule_at => now() - interval '1 hour');
SELECT row_eq(
    $$SELECT id, chain_index, status::text, scheduled_at, deduplicated FROM r3$$,
    ROW(pg_temp.u(3), 2, 'pending'::text, now(), false),
    'outside continuation: index 2, past schedule_at clamped to now'
);
SELECT row_eq(
    $$SELECT priority, trace_context FROM queuert.job WHERE id = pg_temp.u(3)$$,
    ROW(7, 'tc-ship'::text), 'explicit priority and trace context win'
);
SELECT row_eq(
    $$SELECT completed_by, continued_to, attempt FROM queuert.job WHERE id = pg_temp.u(2)$$,
    ROW(NULL::text, pg_temp.u(3), 0), 'an outside continuation leaves completed_by NULL'
);
SELECT row_eq(
    $$SELECT id, deduplicated FROM queuert.continue_with(pg_temp.u(2), NULL, 'other')$$,
    ROW(pg_temp.u(3), true), 'an outside repeat of an outside continuation is idempotent'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(2), 'w1', 'ship')$$, 'QU004',
    'job 00000000-0000-0000-0000-000000000002 was already continued by an outside call, not by worker w1 at attempt 0',
    'a worker repeating an outside continuation: QU004');

-- Loops: the same type again.
SELECT count(*) AS n FROM queuert.claim('w3', ARRAY['ship']) \gset
SELECT row_eq(
    $$SELECT chain_index, type_name, status::text FROM queuert.continue_with(pg_temp.u(3), 'w3', 'ship',
        id => pg_temp.u(4))$$,
    ROW(3, 'ship'::text, 'pending'::text), 'a loop: same type again at the next index'
);

-- Blocked continuations; an existing id.
SELECT count(*) AS n FROM queuert.start_chain('other', id => pg_temp.u(10)) \gset
SELECT count(*) AS n FROM queuert.claim('w3', ARRAY['ship']) \gset
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(4), 'w3', 'next', id => pg_temp.u(10))$$, 'QU006',
    'a job with id 00000000-0000-0000-0000-000000000010 already exists', 'an existing id: QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(4), 'w3', 'next', blockers => ARRAY[pg_temp.u(98)])$$,
    'QU002', 'blocker chain 00000000-0000-0000-0000-000000000098 not found', 'an unknown blocker: QU002');
SELECT row_eq(
    $$SELECT status::text, leased_by FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('running'::text, 'w3'::text), 'the refused continuations left the job running');
SELECT row_eq(
    $$SELECT id, status::text FROM queuert.continue_with(pg_temp.u(4), 'w3', 'next', id => pg_temp.u(5),
        blockers => ARRAY[pg_temp.u(10)])$$,
    ROW(pg_temp.u(5), 'blocked'::text), 'a continuation waiting on an incomplete chain is blocked'
);
SELECT results_eq(
    $$SELECT position, blocker_chain_id FROM queuert.job_blocker WHERE job_id = pg_temp.u(5)$$,
    $$VALUES (1, pg_temp.u(10))$$, 'its blocker edge');

-- Continuing a running job from outside: the worker loses it.
SELECT count(*) AS n FROM queuert.start_chain('lose', id => pg_temp.u(20)) \gset
SELECT count(*) AS n FROM queuert.claim('w4', ARRAY['lose']) \gset
SELECT lives_ok($$SELECT * FROM queuert.continue_with(pg_temp.u(20), NULL, 'lose2', id => pg_temp.u(21))$$,
    'a running job can be continued from outside');
SELECT throws_ok(
    $$SELECT * FROM queuert.continue_with(pg_temp.u(20), 'w4', 'lose2')$$, 'QU004',
    'job 00000000-0000-0000-0000-000000000020 was already continued by an outside call, not by worker w4 at attempt 1',
    'the worker then gets QU004');

-- The chain view follows the last job.
SELECT row_eq(
    $$SELECT status::text, current_job_id, job_count, completed_at FROM queuert.chain
      WHERE chain_id = pg_temp.u(1)$$,
    ROW('blocked'::text, pg_temp.u(5), 5::integer, NULL::timestamptz),
    'the chain''s status is its last job''s'
);

SELECT * FROM finish();
ROLLBACK;
