-- prune: finished chains that nothing waits on, in batches, oldest first.
BEGIN;
SELECT plan(17);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;
CREATE FUNCTION pg_temp.age(chain uuid, by interval) RETURNS void
LANGUAGE sql AS $$
    UPDATE queuert.job SET chain_completed_at = chain_completed_at - by, created_at = created_at - by,
        last_attempt_at = last_attempt_at - by
    WHERE chain_id = chain
$$;

-- 1: completed, two jobs; 2: completed, is a blocker of 5 (pending);
-- 3: cancelled; 4: failed; 6: running; 7: completed just now.
SELECT count(*) FROM queuert.start_chain('t', id => pg_temp.u(1));
SELECT count(*) FROM queuert.start_chain('t', id => pg_temp.u(2));
SELECT count(*) FROM queuert.start_chain('t', id => pg_temp.u(3));
SELECT count(*) FROM queuert.start_chain('t', id => pg_temp.u(4));
SELECT count(*) FROM queuert.start_chain('t', id => pg_temp.u(5), blockers => ARRAY[pg_temp.u(2)],
    schedule_at => now() + interval '1 day');
SELECT count(*) FROM queuert.start_chain('t', id => pg_temp.u(6));
SELECT count(*) FROM queuert.continue_with(pg_temp.u(1), NULL, 't2');
SELECT count(*) FROM queuert.complete((SELECT id FROM queuert.job WHERE chain_id = pg_temp.u(1) AND chain_index = 1), NULL);
SELECT count(*) FROM queuert.complete(pg_temp.u(2), NULL);
SELECT count(*) FROM queuert.cancel_chains(ARRAY[pg_temp.u(3)]);
SELECT queuert.set_job_type('t', max_attempts => 1);
SELECT count(*) FROM queuert.claim('w0', ARRAY['t']);
SELECT count(*) FROM queuert.fail(pg_temp.u(4), 'w0', 'boom');
SELECT count(*) FROM queuert.claim('w', ARRAY['t']);
SELECT count(*) FROM queuert.start_chain('t', id => pg_temp.u(7));
SELECT count(*) FROM queuert.complete(pg_temp.u(7), NULL);
SELECT pg_temp.age(pg_temp.u(c), interval '2 days') FROM generate_series(1, 6) AS c;

SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(4)), 'failed', 'chain 4 failed');
SELECT is((SELECT status::text FROM queuert.job WHERE id = pg_temp.u(6)), 'running', 'chain 6 runs');

SELECT throws_ok($$SELECT * FROM queuert.prune(NULL)$$, 'QU006', NULL, 'older_than is required');
SELECT throws_ok($$SELECT * FROM queuert.prune(interval '-1 day')$$, 'QU006', NULL, 'a negative age: QU006');
SELECT throws_ok($$SELECT * FROM queuert.prune(interval '1 day', 0)$$, 'QU006', NULL, 'batch_size 0: QU006');

SELECT row_eq($$SELECT chains, jobs FROM queuert.prune(interval '1 day', 1)$$, ROW(1, 2),
    'a batch of one: the oldest completed chain, both its jobs');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE chain_id = pg_temp.u(1)), 0, 'chain 1 is gone');
SELECT row_eq($$SELECT chains, jobs FROM queuert.prune(interval '1 day', 100)$$, ROW(1, 1),
    'then the cancelled chain; failed ones only when asked');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id = pg_temp.u(3)), 0, 'chain 3 (cancelled) is gone');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id = pg_temp.u(2)), 1,
    'chain 2 stays: chain 5 waits on it');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id = pg_temp.u(7)), 1, 'chain 7 is too young');
SELECT row_eq($$SELECT chains, jobs FROM queuert.prune(interval '1 day', 100, interval '3 days')$$, ROW(0, 0),
    'a failed chain younger than failed_older_than stays');
SELECT row_eq($$SELECT chains, jobs FROM queuert.prune(interval '1 day', 100, interval '1 day')$$, ROW(1, 1),
    'and goes once it is older');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id IN (pg_temp.u(5), pg_temp.u(6))), 2,
    'pending and running chains are never pruned');

-- Once its dependent is gone, the blocker goes too.
SELECT count(*) FROM queuert.delete_chains(ARRAY[pg_temp.u(5)]);
SELECT row_eq($$SELECT chains, jobs FROM queuert.prune(interval '1 day', 100)$$, ROW(1, 1),
    'a blocker nobody waits on any more is pruned');
SELECT row_eq($$SELECT chains, jobs FROM queuert.prune(interval '0', 100)$$, ROW(1, 1),
    'older_than 0: every finished chain (chain 7)');
SELECT is((SELECT array_agg(id) FROM queuert.job), ARRAY[pg_temp.u(6)], 'only the running chain is left');

SELECT * FROM finish();
ROLLBACK;
