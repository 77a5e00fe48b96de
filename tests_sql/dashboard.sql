-- The dashboard's reads: dashboard_chains, dashboard_chain_links,
-- dashboard_dependents, dashboard_failures, dashboard_workers.
BEGIN;
SELECT plan(10);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- 1..4: one transaction, so one created_at: the id orders them (newest = highest id).
SELECT count(*) AS n FROM queuert.start_chain('mail', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.start_chain('mail', id => pg_temp.u(2)) \gset
SELECT count(*) AS n FROM queuert.start_chain('child', id => pg_temp.u(3)) \gset
SELECT count(*) AS n FROM queuert.start_chain('parent', id => pg_temp.u(4), blockers => ARRAY[pg_temp.u(3)]) \gset
SELECT count(*) AS n FROM queuert.set_job_type('mail', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['mail']) \gset
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(1), 'w', 'ValueError: boom') \gset

SELECT results_eq(
    $$SELECT chain_id, status::text, is_cursor FROM queuert.dashboard_chains(max_rows => 3)$$,
    $$VALUES (pg_temp.u(4), 'blocked', false), (pg_temp.u(3), 'pending', false),
             (pg_temp.u(2), 'pending', false), (pg_temp.u(2), NULL, true)$$,
    'newest first, then a cursor row at the last chain returned'
);
SELECT results_eq(
    $$SELECT chain_id FROM queuert.dashboard_chains(after_created_at => now(), after_id => pg_temp.u(2))$$,
    $$VALUES (pg_temp.u(1))$$,
    'the next page starts after the cursor'
);
SELECT results_eq(
    $$SELECT chain_id FROM queuert.dashboard_chains(statuses => '{failed}')$$,
    $$VALUES (pg_temp.u(1))$$,
    'the failed filter'
);
SELECT results_eq(
    $$SELECT chain_id, waited_on FROM queuert.dashboard_chains(chain_type => 'child')$$,
    $$VALUES (pg_temp.u(3), true)$$,
    'waited_on marks a chain others wait on'
);
SELECT is_empty(
    $$SELECT 1 FROM queuert.dashboard_chains(chain_type => 'child', hide_blockers => true)$$,
    'hide_blockers hides it'
);
SELECT results_eq(
    $$SELECT direction, job_id, other_chain_id, other_status::text, total
      FROM queuert.dashboard_chain_links(pg_temp.u(3))$$,
    $$VALUES ('waited_by', pg_temp.u(4), pg_temp.u(4), 'blocked', 1::bigint)$$,
    'links: who waits on a chain'
);
SELECT results_eq(
    $$SELECT chain_id, job_id, blocker_chain_id FROM queuert.dashboard_dependents(ARRAY[pg_temp.u(3)])$$,
    $$VALUES (pg_temp.u(4), pg_temp.u(4), pg_temp.u(3))$$,
    'dependents: why deleting the child would be refused'
);
SELECT is_empty(
    $$SELECT 1 FROM queuert.dashboard_dependents(ARRAY[pg_temp.u(4)], cascade => true)$$,
    'with cascade the set takes in the chains it waits on: nobody outside waits'
);
SELECT results_eq(
    $$SELECT job_id, last_attempt_error FROM queuert.dashboard_failures(chain_type => 'mail')$$,
    $$VALUES (pg_temp.u(1), 'ValueError: boom')$$,
    'recent failures'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.dashboard_chains(max_rows => 0)$$,
    'QU006', NULL, 'a page of no rows is refused'
);

SELECT * FROM finish();
ROLLBACK;
