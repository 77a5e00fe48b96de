-- Errors: every SQLSTATE QU001..QU006, messages (and details) naming the job or
-- chain, and nothing written by a refused call.
BEGIN;
SELECT plan(32);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- SQLSTATE, message and detail of a statement's error ('' when it succeeds).
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_msg text;
    v_detail text;
BEGIN
    EXECUTE stmt;
    RETURN '';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
    RETURN v_state || ' | ' || v_msg || ' | ' || coalesce(v_detail, '');
END;
$$;

-- A fingerprint of everything the engine stores.
CREATE FUNCTION pg_temp.state() RETURNS text
LANGUAGE sql AS $$
    SELECT md5(
        coalesce((SELECT string_agg(j::text, ',' ORDER BY j.id) FROM queuert.job AS j), '')
        || coalesce((SELECT string_agg(b::text, ',' ORDER BY b.job_id, b.position) FROM queuert.job_blocker AS b), '')
        || coalesce((SELECT string_agg(t::text, ',' ORDER BY t.type_name) FROM queuert.job_type AS t), '')
    );
$$;

SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(1)) \gset
SELECT count(*) AS n FROM queuert.start_chain('r', id => pg_temp.u(2)) \gset
SELECT count(*) AS n FROM queuert.claim('w1', ARRAY['r']) \gset
SELECT count(*) AS n FROM queuert.start_chain('dep', id => pg_temp.u(3), blockers => ARRAY[pg_temp.u(2)]) \gset
SELECT count(*) AS n FROM queuert.start_chain('t', id => pg_temp.u(4)) \gset
SELECT count(*) AS n FROM queuert.complete(pg_temp.u(4), NULL) \gset
SELECT pg_temp.state() AS before \gset

-- QU001: job not found.
SELECT is(pg_temp.err($$SELECT queuert.complete(pg_temp.u(404), 'w1')$$),
    'QU001 | job 00000000-0000-0000-0000-000000000404 not found | job_id=00000000-0000-0000-0000-000000000404',
    'complete: QU001');
SELECT is(pg_temp.err($$SELECT queuert.continue_with(pg_temp.u(404), 'w1', 'x')$$),
    'QU001 | job 00000000-0000-0000-0000-000000000404 not found | job_id=00000000-0000-0000-0000-000000000404',
    'continue_with: QU001');
SELECT is(pg_temp.err($$SELECT queuert.fail(pg_temp.u(404), NULL, 'x')$$),
    'QU001 | job 00000000-0000-0000-0000-000000000404 not found | job_id=00000000-0000-0000-0000-000000000404',
    'fail: QU001');
SELECT is(pg_temp.err($$SELECT queuert.trigger_jobs(ARRAY[pg_temp.u(2), pg_temp.u(404)])$$),
    'QU001 | job 00000000-0000-0000-0000-000000000404 not found | job_id=00000000-0000-0000-0000-000000000404',
    'trigger_jobs: QU001');
SELECT is(pg_temp.err($$SELECT queuert.retry_jobs(ARRAY[pg_temp.u(404)])$$),
    'QU001 | job 00000000-0000-0000-0000-000000000404 not found | job_id=00000000-0000-0000-0000-000000000404',
    'retry_jobs: QU001');

-- QU002: chain not found (a blocker that does not exist).
SELECT is(pg_temp.err($$SELECT queuert.start_chain('x', blockers => ARRAY[pg_temp.u(1), pg_temp.u(405)])$$),
    'QU002 | blocker chain 00000000-0000-0000-0000-000000000405 not found | chain_id=00000000-0000-0000-0000-000000000405',
    'start_chain: QU002');
SELECT is(pg_temp.err($$SELECT queuert.start_chains(jsonb_build_array(jsonb_build_object(
        'type_name', 'x', 'blockers', jsonb_build_array(pg_temp.u(405)))))$$),
    'QU002 | blocker chain 00000000-0000-0000-0000-000000000405 not found | chain_id=00000000-0000-0000-0000-000000000405',
    'start_chains: QU002');
SELECT is(pg_temp.err($$SELECT queuert.continue_with(pg_temp.u(2), 'w1', 'x', blockers => ARRAY[pg_temp.u(405)])$$),
    'QU002 | blocker chain 00000000-0000-0000-0000-000000000405 not found | chain_id=00000000-0000-0000-0000-000000000405',
    'continue_with: QU002');

-- QU003: the status does not allow it.
SELECT is(pg_temp.err($$SELECT queuert.complete(pg_temp.u(1), 'w1')$$),
    'QU003 | cannot complete job 00000000-0000-0000-0000-000000000001: it is pending, not running | job_id=00000000-0000-0000-0000-000000000001, status=pending',
    'complete by a worker of a pending job: QU003');
SELECT is(pg_temp.err($$SELECT queuert.complete(pg_temp.u(4), NULL)$$),
    'QU003 | cannot complete job 00000000-0000-0000-0000-000000000004 from outside: it is completed | job_id=00000000-0000-0000-0000-000000000004, status=completed',
    'complete of a completed job: QU003');
SELECT is(pg_temp.err($$SELECT queuert.continue_with(pg_temp.u(4), NULL, 'x')$$),
    'QU003 | cannot continue job 00000000-0000-0000-0000-000000000004 from outside: it is completed | job_id=00000000-0000-0000-0000-000000000004, status=completed',
    'continue_with of a completed job: QU003');
SELECT is(pg_temp.err($$SELECT queuert.fail(pg_temp.u(3), NULL, 'x')$$),
    'QU003 | cannot fail job 00000000-0000-0000-0000-000000000003 from outside: it is blocked | job_id=00000000-0000-0000-0000-000000000003, status=blocked',
    'fail of a blocked job: QU003');
SELECT is(pg_temp.err($$SELECT queuert.trigger_jobs(ARRAY[pg_temp.u(1), pg_temp.u(2)])$$),
    'QU003 | cannot trigger job 00000000-0000-0000-0000-000000000002: it is running, not pending | job_id=00000000-0000-0000-0000-000000000002, status=running',
    'trigger_jobs of a running job: QU003');
SELECT is(pg_temp.err($$SELECT queuert.retry_jobs(ARRAY[pg_temp.u(4)])$$),
    'QU003 | cannot retry job 00000000-0000-0000-0000-000000000004: it is completed, not failed or cancelled | job_id=00000000-0000-0000-0000-000000000004, status=completed',
    'retry_jobs of a completed job: QU003');

-- QU004: held by another worker, or a stale attempt.
SELECT is(pg_temp.err($$SELECT queuert.complete(pg_temp.u(2), 'w2')$$),
    'QU004 | cannot complete job 00000000-0000-0000-0000-000000000002: it is held by worker w1, not w2 | job_id=00000000-0000-0000-0000-000000000002, worker_id=w1',
    'complete by another worker: QU004');
SELECT is(pg_temp.err($$SELECT queuert.fail(pg_temp.u(2), 'w1', 'x', attempt => 7)$$),
    'QU004 | cannot fail job 00000000-0000-0000-0000-000000000002: attempt 7 is stale, the job is at attempt 1 | job_id=00000000-0000-0000-0000-000000000002, attempt=1',
    'fail with a stale attempt: QU004');
SELECT is(pg_temp.err($$SELECT queuert.continue_with(pg_temp.u(2), 'w3', 'x')$$),
    'QU004 | cannot continue job 00000000-0000-0000-0000-000000000002: it is held by worker w1, not w3 | job_id=00000000-0000-0000-0000-000000000002, worker_id=w1',
    'continue_with by another worker: QU004');

-- QU005: a job outside the set waits on the chain.
SELECT is(pg_temp.err($$SELECT queuert.cancel_chains(ARRAY[pg_temp.u(2)])$$),
    'QU005 | cannot cancel chain 00000000-0000-0000-0000-000000000002: job 00000000-0000-0000-0000-000000000003 outside the set waits on it | chain_id=00000000-0000-0000-0000-000000000002, job_id=00000000-0000-0000-0000-000000000003',
    'cancel_chains: QU005');
SELECT is(pg_temp.err($$SELECT queuert.delete_chains(ARRAY[pg_temp.u(2)], cascade => true)$$),
    'QU005 | cannot delete chain 00000000-0000-0000-0000-000000000002: job 00000000-0000-0000-0000-000000000003 outside the set waits on it | chain_id=00000000-0000-0000-0000-000000000002, job_id=00000000-0000-0000-0000-000000000003',
    'delete_chains: QU005 (cascade adds blockers, not dependents)');

-- QU006: invalid arguments, one per kind.
SELECT is(left(pg_temp.err($$SELECT queuert.start_chain('')$$), 5), 'QU006', 'empty type name');
SELECT is(left(pg_temp.err($$SELECT queuert.start_chain(repeat('a', 256))$$), 5), 'QU006', 'type name over 255');
SELECT is(left(pg_temp.err($$SELECT queuert.start_chain('x', dedup_key => 'k', dedup_scope => 'nope')$$), 5),
    'QU006', 'unknown dedup scope');
SELECT is(left(pg_temp.err($$SELECT queuert.start_chain('x', schedule_after => interval '-1 s')$$), 5),
    'QU006', 'negative delay');
SELECT is(left(pg_temp.err($$SELECT queuert.start_chain('x', schedule_at => now(), schedule_after => interval '1 s')$$), 5),
    'QU006', 'both schedule forms');
SELECT is(pg_temp.err($$SELECT queuert.start_chain('x', id => pg_temp.u(1))$$),
    'QU006 | a job with id 00000000-0000-0000-0000-000000000001 already exists | job_id=00000000-0000-0000-0000-000000000001',
    'an existing id names the job');
SELECT is(left(pg_temp.err($$SELECT queuert.start_chains('[{"type_name": "x", "extra": 1}]')$$), 5),
    'QU006', 'unknown key in a batch item');
SELECT is(left(pg_temp.err($$SELECT queuert.start_chains('[{"input": 1}]')$$), 5), 'QU006', 'missing type_name');
SELECT is(left(pg_temp.err($$SELECT queuert.start_chains('"x"')$$), 5), 'QU006', 'non-array items');
SELECT is(left(pg_temp.err($$SELECT queuert.trigger_jobs(ARRAY[NULL::uuid])$$), 5), 'QU006', 'NULL element');
SELECT is(left(pg_temp.err($$SELECT queuert.cancel_chains(NULL)$$), 5), 'QU006', 'NULL chain array');
SELECT is(pg_temp.err($$SELECT queuert.continue_with(pg_temp.u(2), 'w1', 'x', blockers => ARRAY[pg_temp.u(2)])$$),
    'QU006 | a continuation of chain 00000000-0000-0000-0000-000000000002 cannot be blocked on its own chain | chain_id=00000000-0000-0000-0000-000000000002',
    'a continuation blocked on its own chain names the chain');

SELECT is(pg_temp.state(), :'before', 'no refused call wrote anything');

SELECT * FROM finish();
ROLLBACK;
