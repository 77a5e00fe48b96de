-- cancel_chains: with and without cascade, the QU005 refusal, skipped ids.
BEGIN;
SELECT plan(19);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- 1: pending; 2: running; 3: two jobs, the first completed; 4: completed chain;
-- 5: failed (dedup key k5).
SELECT count(*) AS n FROM queuert.set_job_type('once', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.start_chain('run', id => pg_temp.u(2)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['run']) \gset
SELECT count(*) AS n FROM queuert.start_chain('s1', id => pg_temp.u(3)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['s1']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(3), 'w', 's2', id => pg_temp.u(30)) \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(4)) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(4), NULL, '"done"') \gset
SELECT count(*) AS n FROM queuert.start_chain('once', id => pg_temp.u(5), dedup_key => 'k5') \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['once']) \gset
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(5), 'w', 'x') \gset

CREATE TEMP TABLE r AS
SELECT * FROM queuert.cancel_chains(chain_ids => ARRAY[
    pg_temp.u(1), pg_temp.u(2), pg_temp.u(3), pg_temp.u(4), pg_temp.u(5),
    pg_temp.u(30), pg_temp.u(99), NULL, pg_temp.u(1)]);
SELECT bag_eq($$SELECT chain_id FROM r$$,
    $$VALUES (pg_temp.u(1)), (pg_temp.u(2)), (pg_temp.u(3)), (pg_temp.u(5))$$,
    'one row per chain that had a job cancelled; non-root, unknown, NULL and complete skipped');
SELECT results_eq(
    $$SELECT id, status::text, leased_by, leased_until FROM queuert.job
      WHERE id IN (pg_temp.u(1), pg_temp.u(2), pg_temp.u(3), pg_temp.u(30), pg_temp.u(4), pg_temp.u(5))
      ORDER BY id$$,
    $$VALUES (pg_temp.u(1), 'cancelled', NULL, NULL::timestamptz),
        (pg_temp.u(2), 'cancelled', NULL, NULL::timestamptz),
        (pg_temp.u(3), 'completed', NULL, NULL::timestamptz),
        (pg_temp.u(4), 'completed', NULL, NULL::timestamptz),
        (pg_temp.u(5), 'cancelled', NULL, NULL::timestamptz),
        (pg_temp.u(30), 'cancelled', NULL, NULL::timestamptz)$$,
    'unfinished jobs cancelled (lease cleared); completed jobs untouched'
);
SELECT is((SELECT output FROM queuert.job WHERE id = pg_temp.u(4)), '"done"'::jsonb, 'the completed chain keeps its output');
SELECT results_eq(
    $$SELECT chain_id, status::text FROM queuert.chain
      WHERE chain_id IN (pg_temp.u(1), pg_temp.u(3), pg_temp.u(4), pg_temp.u(5)) ORDER BY chain_id$$,
    $$VALUES (pg_temp.u(1), 'cancelled'), (pg_temp.u(3), 'cancelled'), (pg_temp.u(4), 'completed'),
        (pg_temp.u(5), 'cancelled')$$,
    'chain statuses'
);
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(2), 'w')$$, 'QU003',
    'cannot complete job 00000000-0000-0000-0000-000000000002: it is cancelled, not running',
    'the worker of a cancelled job gets QU003');
SELECT is((SELECT count(*)::integer FROM queuert.cancel_chains(ARRAY[pg_temp.u(1)])), 0,
    'cancelling again cancels nothing');
SELECT is((SELECT count(*)::integer FROM queuert.claim('w2')), 0, 'cancelled jobs are not claimed');
-- A cancelled failed chain frees its dedup key.
SELECT row_eq(
    $$SELECT id, deduplicated FROM queuert.start_chain('once', id => pg_temp.u(6), dedup_key => 'k5')$$,
    ROW(pg_temp.u(6), false), 'the cancelled chain''s dedup key is free again');

-- QU005: a job outside the set waits on a chain of the set, whatever its status.
SELECT count(*) AS n FROM queuert.start_chain('child', id => pg_temp.u(10)) \gset
SELECT count(*) AS n FROM queuert.start_chain('child', id => pg_temp.u(11)) \gset
SELECT count(*) AS n FROM queuert.start_chain('grandchild', id => pg_temp.u(12)) \gset
SELECT count(*) AS n FROM queuert.start_chain('child', id => pg_temp.u(13),
    blockers => ARRAY[pg_temp.u(12)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('parent', id => pg_temp.u(14),
    blockers => ARRAY[pg_temp.u(10), pg_temp.u(11), pg_temp.u(13)]) \gset
SELECT throws_ok($$SELECT * FROM queuert.cancel_chains(ARRAY[pg_temp.u(10)])$$, 'QU005',
    'cannot cancel chain 00000000-0000-0000-0000-000000000010: job 00000000-0000-0000-0000-000000000014 outside the set waits on it',
    'cancelling a chain someone waits on: QU005');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(10)), 'pending', 'nothing changed');
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(11), NULL) \gset
SELECT throws_ok($$SELECT * FROM queuert.cancel_chains(ARRAY[pg_temp.u(11)])$$, 'QU005',
    'cannot cancel chain 00000000-0000-0000-0000-000000000011: job 00000000-0000-0000-0000-000000000014 outside the set waits on it',
    'also when the chain is already complete');
SELECT throws_ok($$SELECT * FROM queuert.cancel_chains(ARRAY[pg_temp.u(14), pg_temp.u(12)])$$, 'QU005',
    'cannot cancel chain 00000000-0000-0000-0000-000000000012: job 00000000-0000-0000-0000-000000000013 outside the set waits on it',
    'without cascade the grandchild still has an outside dependent: QU005');
SELECT results_eq(
    $$SELECT id, status::text FROM queuert.job WHERE id IN (pg_temp.u(12), pg_temp.u(14)) ORDER BY id$$,
    $$VALUES (pg_temp.u(12), 'pending'), (pg_temp.u(14), 'blocked')$$, 'nothing changed after QU005');

-- A blocker together with its only dependent is fine without cascade.
SELECT count(*) AS n FROM queuert.start_chain('b', id => pg_temp.u(16)) \gset
SELECT count(*) AS n FROM queuert.start_chain('d', id => pg_temp.u(17), blockers => ARRAY[pg_temp.u(16)]) \gset
SELECT results_eq($$SELECT chain_id FROM queuert.cancel_chains(ARRAY[pg_temp.u(17), pg_temp.u(16)])$$,
    $$VALUES (pg_temp.u(17)), (pg_temp.u(16))$$,
    'a blocker and its only dependent in one set: both cancelled, in input order');

-- Cascade: the parent takes its children (transitively).
SELECT count(*) AS n FROM queuert.start_chain('other', id => pg_temp.u(15), blockers => ARRAY[pg_temp.u(12)]) \gset
SELECT throws_ok($$SELECT * FROM queuert.cancel_chains(ARRAY[pg_temp.u(14)], cascade => true)$$, 'QU005',
    'cannot cancel chain 00000000-0000-0000-0000-000000000012: job 00000000-0000-0000-0000-000000000015 outside the set waits on it',
    'cascade still refuses when a pulled-in chain has an outside dependent');
SELECT count(*) AS n FROM queuert.delete_chains(ARRAY[pg_temp.u(15)]) \gset
CREATE TEMP TABLE rc AS SELECT * FROM queuert.cancel_chains(ARRAY[pg_temp.u(14)], cascade => true);
SELECT bag_eq($$SELECT chain_id FROM rc$$,
    $$VALUES (pg_temp.u(14)), (pg_temp.u(10)), (pg_temp.u(13)), (pg_temp.u(12))$$,
    'cascade: parent, children and grandchild cancelled; the complete child is not listed');
SELECT results_eq(
    $$SELECT id, status::text FROM queuert.job WHERE id IN (pg_temp.u(10), pg_temp.u(11), pg_temp.u(12),
        pg_temp.u(13), pg_temp.u(14)) ORDER BY id$$,
    $$VALUES (pg_temp.u(10), 'cancelled'), (pg_temp.u(11), 'completed'), (pg_temp.u(12), 'cancelled'),
        (pg_temp.u(13), 'cancelled'), (pg_temp.u(14), 'cancelled')$$,
    'statuses after the cascade'
);

SELECT throws_ok($$SELECT * FROM queuert.cancel_chains(NULL)$$, 'QU006',
    NULL, 'a NULL array: QU006');
SELECT is((SELECT count(*)::integer FROM queuert.cancel_chains('{}')), 0, 'an empty array: no rows');

SELECT * FROM finish();
ROLLBACK;
