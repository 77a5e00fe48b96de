-- Per-type limits in claim: max_running and rate_limit / rate_interval
-- (set_job_type), tokens taken with SKIP LOCKED, freed by whatever ends a run.
BEGIN;
SELECT plan(36);

CREATE FUNCTION pg_temp.start(type_name text, n integer) RETURNS void
LANGUAGE sql AS $$
    SELECT count(*) FROM queuert.start_chains(
        (SELECT jsonb_agg(jsonb_build_object('type_name', type_name)) FROM generate_series(1, n))
    )
$$;
CREATE FUNCTION pg_temp.running(type_name text) RETURNS integer
LANGUAGE sql AS $$
    SELECT count(*)::integer FROM queuert.job AS j WHERE j.type_name = running.type_name AND j.status = 'running'
$$;

-- set_job_type: the new arguments, their checks, and the token rows.
SELECT row_eq(
    $$SELECT max_running, rate_limit, rate_interval FROM queuert.set_job_type('lim', max_running => 2)$$,
    ROW(2, NULL::integer, NULL::interval), 'max_running is stored');
SELECT is((SELECT count(*)::integer FROM queuert.job_running_slot WHERE type_name = 'lim'), 2,
    'one running slot per unit of max_running');
SELECT row_eq(
    $$SELECT max_running, rate_limit, rate_interval
      FROM queuert.set_job_type('rated', rate_limit => 3, rate_interval => interval '1 hour')$$,
    ROW(NULL::integer, 3, interval '1 hour'), 'rate_limit and rate_interval are stored');
SELECT is((SELECT count(*)::integer FROM queuert.job_rate_slot WHERE type_name = 'rated'), 3,
    'one rate slot per unit of rate_limit');
SELECT throws_ok($$SELECT queuert.set_job_type('x', max_running => -1)$$, 'QU006', NULL,
    'negative max_running: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('x', max_running => 10001)$$, 'QU006', NULL,
    'max_running above 10000: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('x', rate_limit => 5)$$, 'QU006', NULL,
    'rate_limit without rate_interval: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('x', rate_limit => 0, rate_interval => interval '1 s')$$,
    'QU006', NULL, 'rate_limit 0: QU006');
SELECT throws_ok($$SELECT queuert.set_job_type('x', rate_limit => 1, rate_interval => interval '0')$$,
    'QU006', NULL, 'zero rate_interval: QU006');
SELECT is((SELECT count(*)::integer FROM queuert.job_type WHERE type_name = 'x'), 0,
    'refusals wrote nothing');

-- max_running: never more running than the limit, other types unaffected.
SELECT pg_temp.start('lim', 5);
SELECT pg_temp.start('free', 3);
CREATE TEMP TABLE c1 AS SELECT * FROM queuert.claim('w1', NULL, 10);
SELECT is((SELECT count(*)::integer FROM c1 WHERE type_name = 'lim'), 2, 'a claim takes only max_running jobs');
SELECT is((SELECT count(*)::integer FROM c1 WHERE type_name = 'free'), 3,
    'and fills the rest with other types, though the limited ones come first in the queue');
SELECT is((SELECT count(*)::integer FROM queuert.claim('w2', ARRAY['lim'], 10)), 0,
    'the limit holds across workers');
SELECT is(pg_temp.running('lim'), 2, 'two running');

-- Whatever ends a run frees its slot.
SELECT queuert.complete((SELECT id FROM c1 WHERE type_name = 'lim' ORDER BY seq LIMIT 1), 'w1');
SELECT is((SELECT count(*)::integer FROM queuert.claim('w2', ARRAY['lim'], 10)), 1, 'a completion frees a slot');
SELECT is(pg_temp.running('lim'), 2, 'still two running');
SELECT queuert.fail((SELECT id FROM queuert.job WHERE type_name = 'lim' AND status = 'running' LIMIT 1),
    NULL, 'boom', retry_at => now() + interval '1 hour');
SELECT is((SELECT count(*)::integer FROM queuert.claim('w3', ARRAY['lim'], 10)), 1, 'a failure frees a slot');
UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second'
WHERE type_name = 'lim' AND status = 'running' AND leased_by = 'w3';
SELECT is((SELECT count(*)::integer FROM queuert.reap()), 1, 'an expired lease is reaped');
SELECT is((SELECT count(*)::integer FROM queuert.claim('w4', ARRAY['lim'], 10)), 1, 'a reaped job frees its slot');
SELECT queuert.cancel_chains(ARRAY(SELECT chain_id FROM queuert.job WHERE type_name = 'lim' AND status = 'running' AND leased_by = 'w4'));
SELECT is((SELECT count(*)::integer FROM queuert.claim('w5', ARRAY['lim'], 10)), 1, 'a cancelled job frees its slot');
SELECT is(pg_temp.running('lim'), 2, 'never more than two running');

-- Lowering to 0 pauses the type; raising lets more run.
SELECT queuert.set_job_type('lim', max_running => 0);
SELECT pg_temp.start('lim', 3);
SELECT is((SELECT count(*)::integer FROM queuert.claim('w6', ARRAY['lim'], 10)), 0, 'max_running 0 pauses a type');
SELECT queuert.set_job_type('lim', max_running => 4);
SELECT is((SELECT count(*)::integer FROM queuert.claim('w6', ARRAY['lim'], 10)), 2,
    'raising it lets the difference run (two were running)');
SELECT queuert.set_job_type('late');
SELECT pg_temp.start('late', 4);
SELECT is((SELECT count(*)::integer FROM queuert.claim('l1', ARRAY['late'], 3)), 3, 'three run before any limit');
SELECT queuert.set_job_type('late', max_running => 2);
SELECT is((SELECT count(*)::integer FROM queuert.job_running_slot WHERE type_name = 'late' AND job_id IS NOT NULL), 2,
    'a new limit counts jobs already running (as many as it has slots)');
SELECT is((SELECT count(*)::integer FROM queuert.claim('l2', ARRAY['late'], 3)), 0,
    'so nothing more starts while they run');
SELECT is(pg_temp.running('lim'), 4, 'four running: the limit counted the two that ran on through the pause');
SELECT queuert.set_job_type('lim');
SELECT is((SELECT count(*)::integer FROM queuert.job_running_slot WHERE type_name = 'lim'), 0,
    'no limit, no slots');
SELECT pg_temp.start('lim', 3);
SELECT count(*)::integer AS due FROM queuert.job WHERE type_name = 'lim' AND status = 'pending' AND scheduled_at <= now() \gset
SELECT is((SELECT count(*)::integer FROM queuert.claim('w7', ARRAY['lim'], 10)), :due,
    'without a limit the type claims freely: every due job');

-- rate_limit: a sliding window of starts.
SELECT pg_temp.start('rated', 5);
SELECT is((SELECT count(*)::integer FROM queuert.claim('r1', ARRAY['rated'], 10)), 3, 'at most rate_limit starts');
SELECT queuert.complete_jobs('r1', ARRAY(SELECT id FROM queuert.job WHERE type_name = 'rated' AND status = 'running'));
SELECT is((SELECT count(*)::integer FROM queuert.claim('r2', ARRAY['rated'], 10)), 0,
    'completions do not give starts back within the interval');
UPDATE queuert.job_rate_slot SET used_at = used_at - interval '1 hour'
WHERE type_name = 'rated' AND slot = (SELECT min(slot) FROM queuert.job_rate_slot WHERE type_name = 'rated');
SELECT is((SELECT count(*)::integer FROM queuert.claim('r2', ARRAY['rated'], 10)), 1,
    'a start older than rate_interval gives its token back');

-- Both limits on one type: the tighter one wins; priority order is kept.
SELECT queuert.set_job_type('both', max_running => 1, rate_limit => 5, rate_interval => interval '1 minute');
SELECT count(*) FROM queuert.start_chain('both', priority => 1);
SELECT count(*) FROM queuert.start_chain('free', priority => 0);
SELECT count(*) FROM queuert.start_chain('both', priority => 2);
SELECT is(
    ARRAY(SELECT type_name || ':' || priority FROM queuert.claim('b1', ARRAY['both', 'free'], 3)),
    ARRAY['both:2', 'free:0'], 'one of the limited type (the highest priority) and the other type, in claim order'
);
SELECT is((SELECT count(*)::integer FROM queuert.job_rate_slot WHERE type_name = 'both' AND used_at > '-infinity'), 1,
    'a start that the running limit refused used no rate token');

-- Claim's plain path does not look at the limit tables without limits.
SELECT is(
    (SELECT count(*)::integer FROM queuert.job_type WHERE max_running IS NOT NULL OR rate_limit IS NOT NULL),
    3, 'rated, late and both are limited'
);
SELECT is((SELECT count(*)::integer FROM queuert.claim('p1', ARRAY['free'], 10)), 0,
    'a claim of other types only still works (nothing left)');

SELECT * FROM finish();
ROLLBACK;
