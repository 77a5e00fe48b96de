-- delete_chains: jobs and blocker rows removed, with and without cascade, QU005.
BEGIN;
SELECT plan(17);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- 1: two-job chain, second running; 2: completed; 3: pending.
SELECT count(*) AS n FROM queuert.start_chain('s1', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['s1']) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(1), 'w', 's2', id => pg_temp.u(100)) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['s2']) \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(2)) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(2), NULL) \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(3)) \gset

CREATE TEMP TABLE r AS
SELECT * FROM queuert.delete_chains(chain_ids => ARRAY[pg_temp.u(1), pg_temp.u(100), pg_temp.u(2),
    NULL, pg_temp.u(99)]);
SELECT bag_eq($$SELECT chain_id FROM r$$, $$VALUES (pg_temp.u(1)), (pg_temp.u(2))$$,
    'one row per deleted chain (complete or not); non-root, NULL and unknown ids skipped');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE chain_id IN (pg_temp.u(1), pg_temp.u(2))), 0,
    'every job of the chains is gone');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id = pg_temp.u(3)), 1, 'other chains stay');
SELECT throws_ok($$SELECT * FROM queuert.complete(pg_temp.u(100), 'w')$$, 'QU001',
    'job 00000000-0000-0000-0000-000000000100 not found', 'the worker of a deleted job gets QU001');
SELECT results_eq($$SELECT outcome FROM queuert.renew_leases('w', ARRAY[pg_temp.u(100)])$$,
    $$VALUES ('not_found')$$, 'and not_found on renewal');
SELECT is((SELECT count(*)::integer FROM queuert.delete_chains(ARRAY[pg_temp.u(1)])), 0,
    'deleting again: no rows');

-- QU005 and cascade.
SELECT count(*) AS n FROM queuert.start_chain('child', id => pg_temp.u(10)) \gset
SELECT count(*) AS n FROM queuert.start_chain('grandchild', id => pg_temp.u(11)) \gset
SELECT count(*) AS n FROM queuert.start_chain('child', id => pg_temp.u(12), blockers => ARRAY[pg_temp.u(11)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('parent', id => pg_temp.u(13),
    blockers => ARRAY[pg_temp.u(10), pg_temp.u(12)]) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(10), NULL) \gset
SELECT throws_ok($$SELECT * FROM queuert.delete_chains(ARRAY[pg_temp.u(10)])$$, 'QU005',
    'cannot delete chain 00000000-0000-0000-0000-000000000010: job 00000000-0000-0000-0000-000000000013 outside the set waits on it',
    'deleting a (complete) chain that someone waits on: QU005');
SELECT throws_ok($$SELECT * FROM queuert.delete_chains(ARRAY[pg_temp.u(11), pg_temp.u(12)])$$, 'QU005',
    'cannot delete chain 00000000-0000-0000-0000-000000000012: job 00000000-0000-0000-0000-000000000013 outside the set waits on it',
    'a child and its grandchild, with the parent outside: QU005');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id IN (pg_temp.u(10), pg_temp.u(11), pg_temp.u(12),
    pg_temp.u(13))), 4, 'nothing deleted after QU005');

SELECT count(*) AS n FROM queuert.start_chain('other', id => pg_temp.u(14), blockers => ARRAY[pg_temp.u(11)]) \gset
SELECT throws_ok($$SELECT * FROM queuert.delete_chains(ARRAY[pg_temp.u(13)], true)$$, 'QU005',
    'cannot delete chain 00000000-0000-0000-0000-000000000011: job 00000000-0000-0000-0000-000000000014 outside the set waits on it',
    'cascade refuses when a pulled-in chain has an outside dependent');
SELECT lives_ok($$SELECT * FROM queuert.delete_chains(ARRAY[pg_temp.u(14)])$$, 'delete that dependent alone');
CREATE TEMP TABLE rc AS SELECT * FROM queuert.delete_chains(ARRAY[pg_temp.u(13)], cascade => true);
SELECT bag_eq($$SELECT chain_id FROM rc$$,
    $$VALUES (pg_temp.u(13)), (pg_temp.u(10)), (pg_temp.u(12)), (pg_temp.u(11))$$,
    'cascade deletes the parent and, transitively, the chains it waits on');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id IN (pg_temp.u(10), pg_temp.u(11),
    pg_temp.u(12), pg_temp.u(13), pg_temp.u(14))), 0, 'all gone');
SELECT is((SELECT count(*)::integer FROM queuert.job_blocker), 0, 'and every blocker row with them');

-- A set that waits on itself (through a continuation) deletes cleanly.
SELECT count(*) AS n FROM queuert.start_chain('a', id => pg_temp.u(20)) \gset
SELECT count(*) AS n FROM queuert.start_chain('b', id => pg_temp.u(21), blockers => ARRAY[pg_temp.u(20)]) \gset
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(20), NULL, 'a2', id => pg_temp.u(22),
    blockers => ARRAY[pg_temp.u(21)]) \gset
SELECT bag_eq($$SELECT chain_id FROM queuert.delete_chains(ARRAY[pg_temp.u(20), pg_temp.u(21)])$$,
    $$VALUES (pg_temp.u(20)), (pg_temp.u(21))$$, 'two chains waiting on each other are deleted together');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE chain_id IN (pg_temp.u(20), pg_temp.u(21))), 0,
    'no job left');

SELECT throws_ok($$SELECT * FROM queuert.delete_chains(NULL)$$, 'QU006',
    NULL, 'a NULL array: QU006');

SELECT * FROM finish();
ROLLBACK;
