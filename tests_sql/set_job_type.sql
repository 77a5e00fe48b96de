-- set_job_type: the whole retry and lease policy of a type, as an upsert.
BEGIN;
SELECT plan(20);

CREATE TEMP TABLE r1 AS SELECT * FROM queuert.set_job_type('t');
SELECT row_eq(
    $$SELECT type_name, max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease FROM r1$$,
    ROW('t'::text, NULL::integer, interval '10 seconds', 2::float8, interval '5 minutes', interval '60 seconds'),
    'the defaults'
);
SELECT row_eq(
    $$SELECT type_name, max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease
      FROM queuert.job_type WHERE type_name = 't'$$,
    ROW('t'::text, NULL::integer, interval '10 seconds', 2::float8, interval '5 minutes', interval '60 seconds'),
    'stored in queuert.job_type'
);

SELECT lives_ok($$SELECT queuert.set_job_type(type_name => 't', max_attempts => 5,
    backoff_initial => interval '1 second', backoff_multiplier => 3, backoff_max => interval '1 hour',
    lease => interval '2 minutes')$$, 'every argument by name');
SELECT row_eq(
    $$SELECT max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease
      FROM queuert.job_type WHERE type_name = 't'$$,
    ROW(5, interval '1 second', 3::float8, interval '1 hour', interval '2 minutes'), 'updated'
);
SELECT lives_ok($$SELECT queuert.set_job_type('t', lease => interval '3 minutes')$$,
    'a second upsert with only lease');
SELECT row_eq(
    $$SELECT max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease
      FROM queuert.job_type WHERE type_name = 't'$$,
    ROW(NULL::integer, interval '10 seconds', 2::float8, interval '5 minutes', interval '3 minutes'),
    'omitted arguments take the defaults again (the whole policy is set)'
);
SELECT is((SELECT count(*)::integer FROM queuert.job_type WHERE type_name = 't'), 1, 'one row per type');
SELECT lives_ok($$SELECT queuert.set_job_type('t', NULL, NULL, NULL, NULL, NULL)$$,
    'NULL arguments take the defaults');
SELECT row_eq(
    $$SELECT max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease
      FROM queuert.job_type WHERE type_name = 't'$$,
    ROW(NULL::integer, interval '10 seconds', 2::float8, interval '5 minutes', interval '60 seconds'),
    'all defaults after NULLs'
);

SELECT throws_ok($$SELECT queuert.set_job_type('')$$, 'QU006',
    NULL, 'empty type name: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('t', max_attempts => 0)$$, 'QU006',
    NULL, 'max_attempts 0: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('t', backoff_multiplier => 0.5)$$, 'QU006',
    NULL, 'multiplier below 1: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('t', backoff_multiplier => 'NaN')$$, 'QU006',
    NULL, 'NaN multiplier: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('t', backoff_initial => interval '-1 second')$$, 'QU006',
    NULL, 'negative backoff: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('t', lease => interval '0')$$, 'QU006',
    NULL, 'zero lease: QU006');
SELECT row_eq(
    $$SELECT max_attempts, lease FROM queuert.job_type WHERE type_name = 't'$$,
    ROW(NULL::integer, interval '60 seconds'), 'refusals changed nothing'
);

-- Zero backoff: retry immediately.
SELECT lives_ok($$SELECT queuert.set_job_type('z', backoff_initial => interval '0')$$, 'zero backoff allowed');
SELECT lives_ok($$SELECT queuert.start_chain('z', id => '00000000-0000-0000-0000-000000000001')$$, 'start z');
SELECT is((SELECT count(*)::integer FROM queuert.claim('w', ARRAY['z'])), 1, 'claim z');
SELECT is((SELECT scheduled_at FROM queuert.fail('00000000-0000-0000-0000-000000000001', 'w', 'x')), now(),
    'zero backoff: due again now');

SELECT * FROM finish();
ROLLBACK;
