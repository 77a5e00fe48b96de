-- Deduplication: key scope (chain type, key) over roots, scopes incomplete/any, windows.
BEGIN;
SELECT plan(24);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

CREATE TEMP TABLE r1 AS
SELECT * FROM queuert.start_chain('welcome', id => pg_temp.u(1), dedup_key => 'user-7',
    schedule_after => interval '1 minute');
SELECT row_eq($$SELECT id, deduplicated FROM r1$$, ROW(pg_temp.u(1), false), 'the first start creates');
SELECT is((SELECT dedup_key FROM queuert.job WHERE id = pg_temp.u(1)), 'user-7', 'the key is stored on the root');

CREATE TEMP TABLE r2 AS
SELECT * FROM queuert.start_chain('welcome', id => pg_temp.u(2), dedup_key => 'user-7', input => '{"x": 1}');
SELECT row_eq(
    $$SELECT id, chain_id, type_name, status::text, scheduled_at, created_at, deduplicated FROM r2$$,
    ROW(pg_temp.u(1), pg_temp.u(1), 'welcome'::text, 'pending'::text, now() + interval '1 minute', now(), true),
    'a second start with the key returns the existing chain, deduplicated'
);
SELECT is((SELECT count(*)::integer FROM queuert.job), 1, 'a hit writes nothing');
SELECT is((SELECT input FROM queuert.job WHERE id = pg_temp.u(1)), NULL, 'the existing chain is unchanged');

-- Another type with the same key is another scope; no key never dedups.
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('other', id => pg_temp.u(3), dedup_key => 'user-7')$$,
    ROW(pg_temp.u(3), false), 'same key, other type: a new chain');
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('welcome', id => pg_temp.u(4))$$,
    ROW(pg_temp.u(4), false), 'no key: a new chain');

-- Status of the match is the chain's current status (its last job).
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(1)]) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['welcome']) \gset
SELECT row_eq($$SELECT id, status::text, deduplicated FROM queuert.start_chain('welcome', dedup_key => 'user-7')$$,
    ROW(pg_temp.u(1), 'running'::text, true), 'a running chain matches, status running');
SELECT count(*) AS n FROM queuert.continue_with(pg_temp.u(1), 'w', 'welcome-2', id => pg_temp.u(10),
    schedule_after => interval '1 hour') \gset
SELECT row_eq(
    $$SELECT id, type_name, status::text, scheduled_at, deduplicated
      FROM queuert.start_chain('welcome', dedup_key => 'user-7')$$,
    ROW(pg_temp.u(1), 'welcome'::text, 'pending'::text, now(), true),
    'a continued chain matches: status of its last job, root type and root scheduled_at'
);

-- failed still matches 'incomplete'.
SELECT count(*) AS n FROM queuert.set_job_type('welcome-2', max_attempts => 1) \gset
SELECT count(*) AS n FROM queuert.trigger_jobs(ARRAY[pg_temp.u(10)]) \gset
SELECT count(*) AS n FROM queuert.claim('w', ARRAY['welcome-2']) \gset
SELECT count(*) AS n FROM queuert.fail(pg_temp.u(10), 'w', 'x') \gset
SELECT row_eq($$SELECT id, status::text, deduplicated FROM queuert.start_chain('welcome', dedup_key => 'user-7')$$,
    ROW(pg_temp.u(1), 'failed'::text, true), 'a failed chain still matches scope incomplete');

-- completed: incomplete misses, any matches.
SELECT count(*) AS n FROM queuert.retry_jobs(ARRAY[pg_temp.u(10)]) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(10), NULL, '"ok"') \gset
SELECT row_eq($$SELECT id, status::text, deduplicated FROM queuert.start_chain('welcome', dedup_key => 'user-7',
        dedup_scope => 'any')$$,
    ROW(pg_temp.u(1), 'completed'::text, true), 'scope any matches a completed chain');
SELECT row_eq($$SELECT id, status::text, deduplicated FROM queuert.start_chain('welcome', id => pg_temp.u(5),
        dedup_key => 'user-7')$$,
    ROW(pg_temp.u(5), 'pending'::text, false), 'scope incomplete does not: a new chain');
-- Now two chains carry the key: the most recently created wins.
UPDATE queuert.job SET created_at = now() - interval '1 hour' WHERE id = pg_temp.u(1);
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('welcome', dedup_key => 'user-7',
        dedup_scope => 'any')$$,
    ROW(pg_temp.u(5), true), 'several matches: the most recently created wins');

-- Windows.
SELECT count(*) AS n FROM queuert.cancel_chains(ARRAY[pg_temp.u(5)]) \gset
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('welcome', dedup_key => 'user-7',
        dedup_scope => 'any', dedup_window => interval '2 hours')$$,
    ROW(pg_temp.u(5), true), 'scope any matches a cancelled chain');
UPDATE queuert.job SET created_at = now() - interval '30 minutes' WHERE id = pg_temp.u(5);
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('welcome', dedup_key => 'user-7',
        dedup_scope => 'any', dedup_window => interval '45 minutes')$$,
    ROW(pg_temp.u(5), true), 'created within the window: matches');
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('welcome', dedup_key => 'user-7',
        dedup_scope => 'any', dedup_window => interval '2 hours')$$,
    ROW(pg_temp.u(5), true), 'two in the window: the newer wins');
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('welcome', id => pg_temp.u(6),
        dedup_key => 'user-7', dedup_scope => 'any', dedup_window => interval '10 minutes')$$,
    ROW(pg_temp.u(6), false), 'all matches older than the window: a new chain');
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('welcome', id => pg_temp.u(7),
        dedup_key => 'user-7', dedup_scope => 'incomplete')$$,
    ROW(pg_temp.u(6), true), 'the new chain is pending and matches from now on');

-- An 'incomplete' window excludes an older incomplete chain.
SELECT count(*) AS n FROM queuert.start_chain('win', id => pg_temp.u(20), dedup_key => 'k') \gset
UPDATE queuert.job SET created_at = now() - interval '1 day' WHERE id = pg_temp.u(20);
SELECT row_eq($$SELECT id, deduplicated FROM queuert.start_chain('win', id => pg_temp.u(21), dedup_key => 'k',
        dedup_window => interval '1 hour')$$,
    ROW(pg_temp.u(21), false), 'an incomplete chain older than the window does not match');

-- Only roots carry keys: continuations never dedup.
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE dedup_key IS NOT NULL AND chain_index > 0), 0,
    'continuations carry no dedup key');

SELECT throws_ok($$SELECT queuert.start_chain('x', dedup_key => 'k', dedup_scope => 'everything')$$, 'QU006',
    NULL, 'an unknown scope: QU006');
SELECT throws_ok($$SELECT queuert.start_chain('x', dedup_key => 'k', dedup_window => interval '-1 minute')$$,
    'QU006', NULL, 'a negative window: QU006');
SELECT throws_ok($$SELECT queuert.start_chain('x', dedup_scope => 'bogus')$$, 'QU006',
    NULL, 'a bad scope is refused even without a key');
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE type_name = 'x'), 0, 'nothing written');

SELECT * FROM finish();
ROLLBACK;
