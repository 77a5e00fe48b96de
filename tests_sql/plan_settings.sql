-- Planner settings the engine's functions carry so that their plans do not
-- depend on statistics (docs/engine.md, "Plans"; the plans themselves are
-- checked in tests_py/test_engine_cold_plans.py).
BEGIN;
SELECT plan(10);

CREATE FUNCTION pg_temp.config(fn text) RETURNS text []
LANGUAGE sql STABLE AS $$
    SELECT coalesce(p.proconfig, '{}') FROM pg_proc AS p
    WHERE p.pronamespace = 'queuert'::regnamespace AND p.proname = fn
$$;

-- Every public function that reads or writes queue rows: readers'
-- conveniences (chain_jobs), set_job_type (job_type only) and the
-- dashboard's overview (dashboard_stats aggregates every row, where a
-- sequential scan is the right plan) aside, and start_chain, which carries
-- only its search_path (sql/030_start_chain.sql): its common path scans nothing (checked
-- below) and everything else runs in _start_chain_general, which carries
-- both settings (checked below).
SELECT is(
    ARRAY(
        SELECT p.proname::text FROM pg_proc AS p
        WHERE p.pronamespace = 'queuert'::regnamespace AND p.prosecdef
            AND p.proname NOT IN ('chain_jobs', 'set_job_type', 'dashboard_stats', 'start_chain')
            AND NOT ('enable_seqscan=off' = ANY(coalesce(p.proconfig, '{}'))
                AND 'jit=off' = ANY(coalesce(p.proconfig, '{}')))
        ORDER BY 1
    ),
    '{}'::text [],
    'every public function over job rows plans without sequential scans and without JIT'
);
SELECT ok(
    (SELECT count(*) FROM pg_proc AS p
     WHERE p.pronamespace = 'queuert'::regnamespace AND p.prosecdef
         AND 'enable_seqscan=off' = ANY(coalesce(p.proconfig, '{}'))) >= 15,
    'the rule covers the API (claim, complete, complete_jobs, continue_with, fail, ...)'
);
SELECT ok(
    'enable_seqscan=off' = ANY(pg_temp.config('_start_chain_general'))
        AND 'jit=off' = ANY(pg_temp.config('_start_chain_general')),
    'start_chain''s general path plans without sequential scans and without JIT'
);
SELECT count(*) AS n FROM queuert.start_chain(type_name => 'scan-probe') \gset
SELECT is(
    (SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
     WHERE relid = 'queuert.job'::regclass),
    0::bigint,
    'start_chain''s common path scans nothing (no setting to plan it by)'
);
SELECT ok('enable_sort=off' = ANY(pg_temp.config('claim')),
    'claim cannot sort: its candidate scan walks job_claim_idx in order');
SELECT ok('enable_sort=off' = ANY(pg_temp.config('_claim_limited')),
    'claim''s limited path cannot sort either (the same walk of job_claim_idx)');
SELECT ok('enable_sort=off' = ANY(pg_temp.config('reap')),
    'reap cannot sort: its candidate scan walks job_lease_idx in order');
SELECT ok('enable_indexonlyscan=off' = ANY(pg_temp.config('_resolve_dependents')),
    '_resolve_dependents reads edges through job_blocker_chain_idx, never a full index-only scan');
SELECT ok(NOT ('enable_sort=off' = ANY(pg_temp.config('complete_jobs'))),
    'sorting stays allowed where rows are sorted on purpose (lock order)');

-- With these settings the candidate scan still answers in claim order on a
-- table that was never analyzed, with and without a type filter.
SELECT count(*) AS n FROM queuert.start_chains((
    SELECT jsonb_agg(jsonb_build_object('type_name', 't' || (g % 3), 'priority', g % 2))
    FROM generate_series(1, 3000) AS g
)) \gset
SELECT is(
    ARRAY(SELECT c.seq FROM queuert.claim('w', ARRAY['t1', 't2'], 6) AS c),
    ARRAY(
        SELECT j.seq FROM queuert.job AS j
        WHERE j.type_name IN ('t1', 't2') AND j.priority = 1
        ORDER BY j.seq LIMIT 6
    ),
    'claim takes the highest priority first, then FIFO'
);

SELECT * FROM finish();
ROLLBACK;
