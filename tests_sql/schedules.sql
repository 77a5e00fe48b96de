-- Schedules: set_schedule, delete_schedule, fire_schedules, next_schedule_at.
BEGIN;
SELECT plan(25);

SELECT row_eq(
    $$SELECT name, cron, timezone, type_name, input, priority, next_tick_at
      FROM queuert.set_schedule('nightly', '0 3 * * *', 'report', '{"k": 1}', 'Europe/Berlin', 5)$$,
    ROW('nightly'::text, '0 3 * * *'::text, 'Europe/Berlin'::text, 'report'::text, '{"k": 1}'::jsonb, 5,
        queuert._cron_next(queuert._cron_parse('0 3 * * *'), 'Europe/Berlin', now())),
    'set_schedule stores the schedule with its next tick'
);
SELECT is((SELECT timezone FROM queuert.set_schedule('minutely', '* * * * *', 'tick')), 'UTC', 'UTC by default');
SELECT is(queuert.next_schedule_at(ARRAY['tick']), date_trunc('minute', now()) + interval '1 minute',
    'next_schedule_at: the first due tick of those types');
SELECT is(queuert.next_schedule_at(ARRAY['nothing']), NULL, 'NULL for types without schedules');

SELECT throws_ok($$SELECT queuert.set_schedule('bad', '61 * * * *', 'tick')$$, 'QU006', NULL, 'a bad cron: QU006');
SELECT throws_ok($$SELECT queuert.set_schedule('bad', '* * * * *', 'tick', timezone => 'Mars/Olympus')$$,
    'QU006', NULL, 'an unknown time zone: QU006');
SELECT throws_ok($$SELECT queuert.set_schedule('bad', '0 0 30 2 *', 'tick')$$, 'QU006', NULL,
    'a cron that never matches: QU006');
SELECT throws_ok($$SELECT queuert.set_schedule('', '* * * * *', 'tick')$$, 'QU006', NULL, 'an empty name: QU006');
SELECT throws_ok($$SELECT queuert.set_schedule('bad', '* * * * *', '')$$, 'QU006', NULL, 'an empty type: QU006');
SELECT is((SELECT count(*)::integer FROM queuert.schedule WHERE name = 'bad'), 0, 'refusals wrote nothing');

-- Nothing due yet: nothing fires.
SELECT is((SELECT count(*)::integer FROM queuert.fire_schedules()), 0, 'no due tick, no chain');

-- A due tick fires once.
UPDATE queuert.schedule SET next_tick_at = date_trunc('minute', now()) - interval '1 minute' WHERE name = 'minutely';
CREATE TEMP TABLE f1 AS SELECT * FROM queuert.fire_schedules(ARRAY['tick']);
SELECT is((SELECT count(*)::integer FROM f1), 1, 'one chain for the due tick');
SELECT is((SELECT type_name FROM f1), 'tick', 'the row names the type of the chain it started');
SELECT row_eq(
    $$SELECT schedule_name, tick_at, deduplicated, next_tick_at FROM f1$$,
    ROW('minutely'::text, date_trunc('minute', now()) - interval '1 minute', false,
        date_trunc('minute', now()) + interval '1 minute'),
    'the row says which schedule, which tick, and the next tick'
);
SELECT row_eq(
    $$SELECT j.type_name, j.input, j.status::text, j.dedup_key, j.priority FROM queuert.job AS j
      WHERE j.id = (SELECT chain_id FROM f1)$$,
    ROW('tick'::text, NULL::jsonb, 'pending'::text,
        'schedule:minutely@' || to_char((date_trunc('minute', now()) - interval '1 minute') AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI"Z"'), 0),
    'a pending chain of the type, its dedup key naming schedule and tick'
);
SELECT row_eq(
    $$SELECT last_tick_at, last_chain_id, next_tick_at FROM queuert.schedule WHERE name = 'minutely'$$,
    ROW(date_trunc('minute', now()) - interval '1 minute', (SELECT chain_id FROM f1),
        date_trunc('minute', now()) + interval '1 minute'),
    'the schedule remembers its last tick and chain'
);
SELECT is((SELECT count(*)::integer FROM queuert.fire_schedules(ARRAY['tick'])), 0, 'a second call starts nothing');

-- The type filter.
UPDATE queuert.schedule SET next_tick_at = now() - interval '1 day' WHERE name = 'nightly';
SELECT is((SELECT count(*)::integer FROM queuert.fire_schedules(ARRAY['tick'])), 0,
    'a worker without the type does not fire it');

-- Missed ticks: one chain for the first missed tick, then the first tick after now.
CREATE TEMP TABLE f2 AS SELECT * FROM queuert.fire_schedules(ARRAY['report']);
SELECT is((SELECT count(*)::integer FROM f2), 1, 'a day of missed ticks starts one chain');
SELECT is((SELECT next_tick_at FROM f2),
    queuert._cron_next(queuert._cron_parse('0 3 * * *'), 'Europe/Berlin', now()),
    'and the schedule resumes at the first tick after now');
SELECT is((SELECT priority FROM queuert.job WHERE id = (SELECT chain_id FROM f2)), 5, 'with the schedule''s priority');

-- The same tick again (a schedule deleted and set anew) is deduplicated.
UPDATE queuert.schedule SET next_tick_at = (SELECT tick_at FROM f2) WHERE name = 'nightly';
SELECT row_eq($$SELECT chain_id, deduplicated FROM queuert.fire_schedules(ARRAY['report'])$$,
    ROW((SELECT chain_id FROM f2), true), 'a tick fired before returns its chain, deduplicated');

-- Updating a schedule keeps a due tick unless its timing changed.
UPDATE queuert.schedule SET next_tick_at = now() - interval '1 minute' WHERE name = 'minutely';
SELECT is((SELECT next_tick_at FROM queuert.set_schedule('minutely', '* * * * *', 'tick', '{"v": 2}')),
    now() - interval '1 minute', 'new input, same cron: the due tick still fires');
SELECT is((SELECT next_tick_at FROM queuert.set_schedule('minutely', '*/5 * * * *', 'tick')),
    queuert._cron_next(queuert._cron_parse('*/5 * * * *'), 'UTC', now()), 'a new cron: the next tick from now');

SELECT ok(queuert.delete_schedule('minutely') AND NOT queuert.delete_schedule('minutely'),
    'delete_schedule: true once, then false');

SELECT * FROM finish();
ROLLBACK;
