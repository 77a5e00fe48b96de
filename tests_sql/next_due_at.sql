-- next_due_at: when the next pending job of the given types becomes due.
BEGIN;
SELECT plan(10);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

SELECT is(queuert.next_due_at(), NULL, 'no jobs: NULL');

SELECT count(*) AS n FROM queuert.start_chain('a', id => pg_temp.u(1), schedule_after => interval '10 minutes') \gset
SELECT count(*) AS n FROM queuert.start_chain('a', id => pg_temp.u(2), schedule_after => interval '5 minutes',
    priority => -10) \gset
SELECT count(*) AS n FROM queuert.start_chain('b', id => pg_temp.u(3), schedule_after => interval '2 minutes') \gset
SELECT count(*) AS n FROM queuert.start_chain('c', id => pg_temp.u(4)) \gset
SELECT count(*) AS n FROM queuert.start_chain('d', id => pg_temp.u(5), blockers => ARRAY[pg_temp.u(1)]) \gset
UPDATE queuert.job SET scheduled_at = now() - interval '1 day' WHERE id = pg_temp.u(5);

SELECT is(queuert.next_due_at(), now(), 'any type: the earliest pending job (due now)');
SELECT is(queuert.next_due_at(ARRAY['a']), now() + interval '5 minutes',
    'type a: the earliest, whatever its priority');
SELECT is(queuert.next_due_at(type_names => ARRAY['a', 'b']), now() + interval '2 minutes', 'types a and b');
SELECT is(queuert.next_due_at(ARRAY['d']), NULL, 'a blocked job is never due');
SELECT is(queuert.next_due_at(ARRAY['zzz']), NULL, 'an unknown type: NULL');
SELECT is(queuert.next_due_at('{}'), NULL, 'no types: NULL');

SELECT count(*) AS n FROM queuert.claim('w', ARRAY['c']) \gset
SELECT is(queuert.next_due_at(ARRAY['c']), NULL, 'a running job is not pending');
SELECT is(queuert.next_due_at(), now() + interval '2 minutes', 'after the claim, the next is in 2 minutes');
UPDATE queuert.job SET scheduled_at = now() - interval '1 hour' WHERE id = pg_temp.u(1);
SELECT is(queuert.next_due_at(ARRAY['a']), now() - interval '1 hour', 'an overdue job: its past due time');

SELECT * FROM finish();
ROLLBACK;
