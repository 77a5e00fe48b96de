-- renew_leases: heartbeat outcomes renewed / taken / finished / not_found.
BEGIN;
SELECT plan(12);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT count(*) AS n FROM queuert.set_job_type('slow', lease => interval '10 minutes') \gset
SELECT count(*) AS n FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(1)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(2)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(3)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(4)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(5)),
    jsonb_build_object('type_name', 't', 'id', pg_temp.u(6)),
    jsonb_build_object('type_name', 'slow', 'id', pg_temp.u(7))
)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['t'], 4, interval '1 second') \gset
SELECT count(*) AS n FROM queuert.claim('w2', ARRAY['t'], 1) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['slow'], 1, interval '1 second') \gset
-- 1: running (w1), lease expired but not reaped; 2: completed; 3: failed back to pending;
-- 4: cancelled; 5: running under w2; 6: pending, never claimed; 7: running (w1), type lease 10 min.
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 minute' WHERE id = pg_temp.u(1);
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(2), 'w1') \gset
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(3), 'w1', 'x') \gset
SELECT count(*) AS n FROM queuert.cancel_chains(ARRAY[pg_temp.u(4)]) \gset

CREATE TEMP TABLE r AS
SELECT * FROM queuert.renew_leases(
    worker_id => 'w1',
    job_ids => ARRAY[pg_temp.u(1), pg_temp.u(2), pg_temp.u(3), pg_temp.u(4), pg_temp.u(5),
        pg_temp.u(6), pg_temp.u(99), pg_temp.u(1), pg_temp.u(7)],
    lease => interval '5 minutes'
);
SELECT results_eq(
    $$SELECT job_id, outcome FROM r$$,
    $$VALUES (pg_temp.u(1), 'renewed'), (pg_temp.u(2), 'finished'), (pg_temp.u(3), 'finished'),
        (pg_temp.u(4), 'finished'), (pg_temp.u(5), 'taken'), (pg_temp.u(6), 'finished'),
        (pg_temp.u(99), 'not_found'), (pg_temp.u(7), 'renewed')$$,
    'one row per distinct job in input order with its outcome'
);
SELECT ok(
    (SELECT leased_until BETWEEN now() + interval '5 minutes' AND clock_timestamp() + interval '5 minutes'
     FROM queuert.job WHERE id = pg_temp.u(1)),
    'an expired but unreaped lease is renewed by the given lease from clock_timestamp()'
);
SELECT row_eq($$SELECT status::text, leased_by FROM queuert.job WHERE id = pg_temp.u(5)$$,
    ROW('running'::text, 'w2'::text), 'another worker''s job is untouched');
SELECT ok(
    (SELECT leased_until < clock_timestamp() + interval '2 minutes' FROM queuert.job WHERE id = pg_temp.u(5)),
    'its lease was not extended'
);

-- NULL lease: each type's lease.
SELECT results_eq(
    $$SELECT job_id, outcome FROM queuert.renew_leases('w1', ARRAY[pg_temp.u(7), pg_temp.u(1)])$$,
    $$VALUES (pg_temp.u(7), 'renewed'), (pg_temp.u(1), 'renewed')$$,
    'renewed with NULL lease'
);
SELECT ok(
    (SELECT leased_until BETWEEN now() + interval '10 minutes' AND clock_timestamp() + interval '10 minutes'
     FROM queuert.job WHERE id = pg_temp.u(7)),
    'NULL lease: the type''s lease (10 minutes)'
);
SELECT ok(
    (SELECT leased_until BETWEEN now() + interval '60 seconds' AND clock_timestamp() + interval '60 seconds'
     FROM queuert.job WHERE id = pg_temp.u(1)),
    'NULL lease on a type never set: 60 seconds'
);

-- A deleted job is not_found; an empty list returns nothing.
SELECT count(*) AS n FROM queuert.delete_chains(ARRAY[pg_temp.u(7)]) \gset
SELECT results_eq($$SELECT outcome FROM queuert.renew_leases('w1', ARRAY[pg_temp.u(7)])$$,
    $$VALUES ('not_found')$$, 'a deleted job: not_found');
SELECT is((SELECT count(*)::integer FROM queuert.renew_leases('w1', '{}')), 0, 'an empty list: no rows');

SELECT throws_ok($$SELECT * FROM queuert.renew_leases('w1', NULL)$$, 'QU006',
    NULL, 'NULL array: QU006');
SELECT throws_ok($$SELECT * FROM queuert.renew_leases(NULL, ARRAY[pg_temp.u(1)])$$, 'QU006',
    NULL, 'NULL worker: QU006');
SELECT throws_ok($$SELECT * FROM queuert.renew_leases('w1', ARRAY[pg_temp.u(1)], interval '-1 minute')$$,
    'QU006', NULL, 'a negative lease: QU006');

SELECT * FROM finish();
ROLLBACK;
