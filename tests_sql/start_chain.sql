-- start_chain: root job, returned row, scheduling, blockers, defaults, bad input.
BEGIN;
SELECT plan(33);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- A plain start: one pending root job, due now.
CREATE TEMP TABLE r1 AS
SELECT * FROM queuert.start_chain(
    type_name => 'send-email', input => '{"user_id": 7}', id => pg_temp.u(1),
    trace_context => '00-abc-def-01'
);
SELECT is((SELECT count(*)::integer FROM r1), 1, 'start_chain returns one row');
SELECT row_eq(
    $$SELECT id, chain_id, type_name, status::text, scheduled_at, created_at, deduplicated FROM r1$$,
    ROW(pg_temp.u(1), pg_temp.u(1), 'send-email'::text, 'pending'::text, now(), now(), false),
    'returned row: given id, chain_id = id, pending, due now, created now, not deduplicated'
);
SELECT row_eq(
    $$SELECT type_name, chain_id, chain_type_name, chain_index, input, output, status::text,
        priority, attempt, scheduled_at, created_at, completed_at, completed_by, leased_by,
        leased_until, last_attempt_at, last_attempt_error, continued_to, dedup_key, trace_context
      FROM queuert.job WHERE id = pg_temp.u(1)$$,
    ROW('send-email'::text, pg_temp.u(1), 'send-email'::text, 0, '{"user_id": 7}'::jsonb,
        NULL::jsonb, 'pending'::text, 0, 0, now(), now(), NULL::timestamptz, NULL::text,
        NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::uuid, NULL::text,
        '00-abc-def-01'::text),
    'the job row holds exactly what was given and the defaults'
);

-- No id given: a fresh uuid that is also the chain id.
CREATE TEMP TABLE r2 AS SELECT * FROM queuert.start_chain('no-id');
SELECT ok((SELECT id IS NOT NULL AND id = chain_id FROM r2), 'generated id is the chain id');
SELECT is(
    (SELECT j.status::text FROM queuert.job AS j JOIN r2 ON r2.id = j.id),
    'pending', 'the generated-id job is stored'
);

-- NULL arguments take their defaults.
CREATE TEMP TABLE r3 AS
SELECT * FROM queuert.start_chain(
    type_name => 'nulls', id => pg_temp.u(3), priority => NULL, dedup_scope => NULL,
    input => NULL, schedule_at => NULL, schedule_after => NULL, blockers => NULL
);
SELECT row_eq(
    $$SELECT priority, status::text, scheduled_at, input FROM queuert.job WHERE id = pg_temp.u(3)$$,
    ROW(0, 'pending'::text, now(), NULL::jsonb),
    'NULL priority, scope, schedule and blockers take the defaults'
);

-- Priority is stored.
SELECT lives_ok(
    $$SELECT queuert.start_chain('prio', id => pg_temp.u(4), priority => -5)$$,
    'negative priority is allowed'
);
SELECT is((SELECT priority FROM queuert.job WHERE id = pg_temp.u(4)), -5, 'priority stored');

-- Scheduling.
CREATE TEMP TABLE r5 AS
SELECT * FROM queuert.start_chain('later', id => pg_temp.u(5),
    schedule_at => now() + interval '1 hour');
SELECT is((SELECT scheduled_at FROM r5), now() + interval '1 hour', 'future schedule_at kept');
SELECT is((SELECT status::text FROM r5), 'pending', 'a future job is pending (not yet due)');

CREATE TEMP TABLE r6 AS
SELECT * FROM queuert.start_chain('past', id => pg_temp.u(6),
    schedule_at => now() - interval '3 days');
SELECT is((SELECT scheduled_at FROM r6), now(), 'past schedule_at is clamped to now (returned)');
SELECT is(
    (SELECT scheduled_at FROM queuert.job WHERE id = pg_temp.u(6)), now(),
    'past schedule_at is clamped to now (stored)'
);

CREATE TEMP TABLE r7 AS
SELECT * FROM queuert.start_chain('after', id => pg_temp.u(7),
    schedule_after => interval '90 seconds');
SELECT is((SELECT scheduled_at FROM r7), now() + interval '90 seconds',
    'schedule_after is counted from now');
CREATE TEMP TABLE r8 AS
SELECT * FROM queuert.start_chain('after0', id => pg_temp.u(8), schedule_after => interval '0');
SELECT is((SELECT scheduled_at FROM r8), now(), 'schedule_after 0 is now');

SELECT throws_ok(
    $$SELECT queuert.start_chain('both', schedule_at => now(), schedule_after => interval '1 s')$$,
    'QU006', NULL,
    'schedule_at and schedule_after together are QU006'
);
SELECT throws_ok(
    $$SELECT queuert.start_chain('neg', schedule_after => interval '-1 second')$$,
    'QU006', NULL,
    'a negative schedule_after is QU006'
);

-- Type names: 1 to 255 characters.
SELECT throws_ok($$SELECT queuert.start_chain('')$$, 'QU006',
    NULL, 'an empty type name is QU006');
SELECT throws_ok($$SELECT queuert.start_chain(repeat('x', 256))$$, 'QU006',
    NULL, 'a 256-character type name is QU006');
SELECT throws_ok($$SELECT queuert.start_chain(NULL)$$, 'QU006',
    NULL, 'a NULL type name is QU006');
SELECT lives_ok($$SELECT queuert.start_chain(repeat('y', 255), id => pg_temp.u(9))$$,
    'a 255-character type name is fine');
SELECT is((SELECT length(type_name) FROM queuert.job WHERE id = pg_temp.u(9)), 255,
    '255-character type stored');

-- An existing id.
SELECT throws_ok($$SELECT queuert.start_chain('dup-id', id => pg_temp.u(1))$$, 'QU006',
    'a job with id 00000000-0000-0000-0000-000000000001 already exists',
    'an id that already exists is QU006');
SELECT is((SELECT type_name FROM queuert.job WHERE id = pg_temp.u(1)), 'send-email',
    'the existing job is untouched');

-- Blockers.
SELECT queuert.start_chain('child', id => pg_temp.u(20)) IS NOT NULL AS arranged \gset
SELECT queuert.start_chain('child', id => pg_temp.u(21)) IS NOT NULL AS arranged \gset
UPDATE queuert.job SET status = 'completed', completed_at = now(), chain_completed_at = now()
WHERE id = pg_temp.u(21);

CREATE TEMP TABLE r22 AS
SELECT * FROM queuert.start_chain('parent', id => pg_temp.u(22),
    blockers => ARRAY[pg_temp.u(21), pg_temp.u(20), pg_temp.u(21)]);
SELECT is((SELECT status::text FROM r22), 'blocked', 'an incomplete blocker chain makes it blocked');
SELECT results_eq(
    $$SELECT position, blocker_chain_id FROM queuert.job_blocker
      WHERE job_id = pg_temp.u(22) ORDER BY position$$,
    $$VALUES (1, pg_temp.u(21)), (2, pg_temp.u(20))$$,
    'blocker edges in blocker order, a repeated blocker counted once'
);
SELECT is((SELECT open_blockers FROM queuert.job WHERE id = pg_temp.u(22)), 1,
    'only the incomplete blocker is open');

CREATE TEMP TABLE r23 AS
SELECT * FROM queuert.start_chain('parent', id => pg_temp.u(23), blockers => ARRAY[pg_temp.u(21)]);
SELECT is((SELECT status::text FROM r23), 'pending', 'blocked only on complete chains: pending');

CREATE TEMP TABLE r24 AS
SELECT * FROM queuert.start_chain('parent', id => pg_temp.u(24), blockers => '{}');
SELECT is((SELECT status::text FROM r24), 'pending', 'an empty blocker array: pending');

SELECT throws_ok(
    $$SELECT queuert.start_chain('parent', id => pg_temp.u(25),
        blockers => ARRAY[pg_temp.u(20), pg_temp.u(99)])$$,
    'QU002', 'blocker chain 00000000-0000-0000-0000-000000000099 not found',
    'a blocker that does not exist is QU002'
);
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id = pg_temp.u(25)), 0,
    'nothing written after QU002');
SELECT throws_ok(
    $$SELECT queuert.start_chain('parent', blockers => ARRAY[pg_temp.u(20), NULL])$$,
    'QU006', NULL, 'a NULL blocker element is QU006'
);

-- A non-root job is not a chain.
SELECT queuert.claim('w', ARRAY['child']) IS NOT NULL AS arranged \gset
SELECT queuert.continue_with(pg_temp.u(20), 'w', 'child-step2', id => pg_temp.u(26))
    IS NOT NULL AS arranged \gset
SELECT throws_ok(
    $$SELECT queuert.start_chain('parent', blockers => ARRAY[pg_temp.u(26)])$$,
    'QU002', 'blocker chain 00000000-0000-0000-0000-000000000026 not found',
    'a non-root job id as blocker is QU002'
);
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(22)), 'blocked',
    'a continued (not completed) blocker chain keeps the dependent blocked');

SELECT * FROM finish();
ROLLBACK;
