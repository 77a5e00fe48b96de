-- start_chain's common path (a type and an input, nothing else) against its
-- general path: the same row for the same start, the condition's edges
-- (dedup_scope other than its default, a type name's length, a set
-- queuert.notify, each argument the condition's num_nulls counts) and the
-- refusals that must stay QU006 on either path.
-- Notifications themselves are observed in tests_py/test_engine_notify.py.
BEGIN;
SELECT plan(20);

-- Common path (no id): every returned column and the stored row.
CREATE TEMP TABLE c1 AS
SELECT * FROM queuert.start_chain(
    type_name => 'common', input => '{"n": 1}', priority => NULL, trace_context => 'tc-1'
);
SELECT row_eq(
    $$SELECT id = chain_id, type_name, status::text, scheduled_at, created_at, deduplicated,
        trace_context FROM c1$$,
    ROW(true, 'common'::text, 'pending'::text, now(), now(), false, 'tc-1'::text),
    'common path: chain_id = id, pending, due and created now, not deduplicated, its trace'
);
SELECT row_eq(
    $$SELECT j.type_name, j.chain_type_name, j.chain_index, j.input, j.status::text, j.priority,
        j.scheduled_at, j.dedup_key, j.trace_context, j.chain_trace_context, j.open_blockers
      FROM queuert.job AS j JOIN c1 ON j.id = c1.id$$,
    ROW('common'::text, 'common'::text, 0, '{"n": 1}'::jsonb, 'pending'::text, 0, now(),
        NULL::text, 'tc-1'::text, 'tc-1'::text, 0),
    'common path: the stored row (a NULL priority is 0)'
);
SELECT is(
    (SELECT substr(c1.id::text, 15, 1) FROM c1), '7',
    'common path: a time-ordered (version 7) id'
);

-- dedup_scope 'any' or NULL without a key: the general path, the same answer.
CREATE TEMP TABLE c2 AS
SELECT * FROM queuert.start_chain(type_name => 'common', input => '{"n": 2}', dedup_scope => 'any');
CREATE TEMP TABLE c3 AS
SELECT * FROM queuert.start_chain(type_name => 'common', input => '{"n": 3}', dedup_scope => NULL);
SELECT results_eq(
    $$SELECT type_name, status::text, scheduled_at, created_at, deduplicated, id = chain_id
      FROM (SELECT * FROM c2 UNION ALL SELECT * FROM c3) AS x$$,
    $$VALUES ('common'::text, 'pending'::text, now(), now(), false, true),
             ('common'::text, 'pending'::text, now(), now(), false, true)$$,
    'dedup_scope any or NULL without a dedup key: started as on the common path'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.job
     WHERE type_name = 'common' AND status = 'pending' AND chain_index = 0),
    3, 'three roots written'
);

-- What the condition lets through to the general path is still refused there.
SELECT throws_ok(
    $$SELECT queuert.start_chain(type_name => 'common', dedup_scope => 'bogus')$$,
    'QU006', NULL, 'an unknown dedup_scope without a key is QU006'
);
SELECT throws_ok(
    $$SELECT queuert.start_chain(type_name => '')$$,
    'QU006', NULL, 'an empty type name is QU006, not a check violation'
);
SELECT throws_ok(
    $$SELECT queuert.start_chain(type_name => repeat('x', 256))$$,
    'QU006', NULL, 'a 256-character type name is QU006'
);
SELECT throws_ok(
    $$SELECT queuert.start_chain(type_name => NULL)$$,
    'QU006', NULL, 'a NULL type name is QU006'
);
SELECT is(
    (SELECT s.type_name FROM queuert.start_chain(type_name => repeat('é', 255)) AS s),
    repeat('é', 255), 'a 255-character type name of multibyte letters is accepted'
);

SELECT is(
    (SELECT s.type_name FROM queuert.start_chain(type_name => repeat('x', 255)) AS s),
    repeat('x', 255), 'a 255-character type name is accepted'
);

-- Each argument the condition's num_nulls counts, given alone, takes the
-- general path: its effect shows (the common path would drop it silently).
SELECT is(
    (SELECT s.id FROM queuert.start_chain(
        type_name => 'alone', id => '00000000-0000-7000-8000-0000000000a1') AS s),
    '00000000-0000-7000-8000-0000000000a1'::uuid, 'an id alone: the given id'
);
SELECT is(
    (SELECT s.scheduled_at FROM queuert.start_chain(
        type_name => 'alone', schedule_at => now() + interval '1 day') AS s),
    now() + interval '1 day', 'a schedule_at alone: scheduled then'
);
SELECT is(
    (SELECT s.scheduled_at FROM queuert.start_chain(
        type_name => 'alone', schedule_after => interval '1 hour') AS s),
    now() + interval '1 hour', 'a schedule_after alone: scheduled after it'
);
SELECT is(
    (SELECT s.status::text FROM queuert.start_chain(
        type_name => 'alone', blockers => ARRAY[(SELECT c1.id FROM c1)]) AS s),
    'blocked', 'blockers alone: blocked by the open chain'
);
SELECT is(
    (SELECT s.deduplicated FROM queuert.start_chain(type_name => 'alone', dedup_key => 'k') AS s),
    false, 'a dedup_key alone: the first start is new'
);
SELECT is(
    (SELECT s.deduplicated FROM queuert.start_chain(type_name => 'alone', dedup_key => 'k') AS s),
    true, 'a dedup_key alone: the second start with it is deduplicated'
);
SELECT throws_ok(
    $$SELECT queuert.start_chain(type_name => 'alone', dedup_window => interval '-1 day')$$,
    'QU006', NULL, 'a dedup_window alone is checked: a negative one is QU006'
);

-- A set queuert.notify takes the branch that tests it: the same row.
SET LOCAL queuert.notify = 'none';
CREATE TEMP TABLE c4 AS
SELECT * FROM queuert.start_chain(type_name => 'quiet', input => '{"n": 4}');
SET LOCAL queuert.notify = 'job_ready';
CREATE TEMP TABLE c5 AS
SELECT * FROM queuert.start_chain(type_name => 'listed', input => '{"n": 5}');
SELECT results_eq(
    $$SELECT type_name, status::text, deduplicated FROM (SELECT * FROM c4 UNION ALL SELECT * FROM c5) AS x$$,
    $$VALUES ('quiet'::text, 'pending'::text, false), ('listed'::text, 'pending'::text, false)$$,
    'with queuert.notify set the common path starts the chain the same way'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.job AS j JOIN (SELECT id FROM c4 UNION ALL SELECT id FROM c5) AS x
        ON x.id = j.id WHERE j.input IS NOT NULL),
    2, 'both rows written with their input'
);

SELECT * FROM finish();
ROLLBACK;
