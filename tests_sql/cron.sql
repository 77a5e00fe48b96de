-- The engine's cron reader (sql/017_cron.sql): syntax, refusals, next
-- ticks, time zones and daylight saving (Europe/Berlin).
BEGIN;
SELECT plan(30);

CREATE FUNCTION pg_temp.next(cron text, tz text, after timestamptz) RETURNS timestamptz
LANGUAGE sql AS $$ SELECT queuert._cron_next(queuert._cron_parse(cron), tz, after) $$;
-- The ticks after `after`, one after the other.
CREATE FUNCTION pg_temp.ticks(cron text, tz text, after timestamptz, n integer) RETURNS text []
LANGUAGE plpgsql AS $$
DECLARE
    v timestamptz := after;
    v_out text [] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        v := pg_temp.next(cron, tz, v);
        v_out := v_out || to_char(v AT TIME ZONE 'UTC', 'MM-DD HH24:MI');
    END LOOP;
    RETURN v_out;
END;
$$;

-- Syntax.
SELECT is(pg_temp.next('*/15 * * * *', 'UTC', '2026-01-01 10:07:30+00'), '2026-01-01 10:15+00', 'a step');
SELECT is(pg_temp.next('0 * * * *', 'UTC', '2026-01-01 10:00:00+00'), '2026-01-01 11:00+00',
    'strictly after: a tick at `after` itself is not next');
SELECT is(pg_temp.next('5,10-12 3 * * *', 'UTC', '2026-01-01 03:10+00'), '2026-01-01 03:11+00', 'lists and ranges');
SELECT is(pg_temp.next('10-40/15 * * * *', 'UTC', '2026-01-01 03:26+00'), '2026-01-01 03:40+00', 'a stepped range');
SELECT is(pg_temp.next('5/20 * * * *', 'UTC', '2026-01-01 03:26+00'), '2026-01-01 03:45+00', 'n/step: from n to the end');
SELECT is(pg_temp.next('0 9 * * mon-fri', 'UTC', '2026-12-05 00:00+00'), '2026-12-07 09:00+00',
    'weekday names (5 December 2026 is a Saturday)');
SELECT is(pg_temp.next('0 0 1 jan,jul *', 'UTC', '2026-02-01 00:00+00'), '2026-07-01 00:00+00', 'month names');
SELECT is(pg_temp.next('0 0 * * 7', 'UTC', '2026-12-05 00:00+00'), '2026-12-06 00:00+00', '7 is Sunday');
SELECT is(pg_temp.next('0 0 13 * 5', 'UTC', '2026-12-05 00:00+00'), '2026-12-11 00:00+00',
    'both day fields restricted: either matches (Friday the 11th comes before the 13th)');
SELECT is(pg_temp.next('0 0 */2 * 5', 'UTC', '2026-12-05 00:00+00'), '2026-12-11 00:00+00',
    'a day field starting with * counts as unrestricted: both must match');
SELECT is(pg_temp.next('@daily', 'UTC', '2026-12-05 00:00+00'), '2026-12-06 00:00+00', '@daily');
SELECT is(pg_temp.next('@hourly', 'UTC', '2026-12-05 00:30+00'), '2026-12-05 01:00+00', '@hourly');
SELECT is(pg_temp.next('@yearly', 'UTC', '2026-12-05 00:30+00'), '2027-01-01 00:00+00', '@yearly');
SELECT is(pg_temp.next('0 0 29 2 *', 'UTC', '2026-03-01 00:00+00'), '2028-02-29 00:00+00', 'the next leap day');
SELECT is(pg_temp.next('0 0 30 2 *', 'UTC', '2026-03-01 00:00+00'), NULL, 'a date that never comes: NULL');

-- Refusals: QU006 naming the expression.
SELECT throws_ok($$SELECT queuert._cron_parse('* * * *')$$, 'QU006', NULL, 'four fields');
SELECT throws_ok($$SELECT queuert._cron_parse('60 * * * *')$$, 'QU006', NULL, 'minute 60');
SELECT throws_ok($$SELECT queuert._cron_parse('* 24 * * *')$$, 'QU006', NULL, 'hour 24');
SELECT throws_ok($$SELECT queuert._cron_parse('* * 0 * *')$$, 'QU006', NULL, 'day 0');
SELECT throws_ok($$SELECT queuert._cron_parse('*/0 * * * *')$$, 'QU006', NULL, 'step 0');
SELECT throws_ok($$SELECT queuert._cron_parse('5-1 * * * *')$$, 'QU006', NULL, 'a backwards range');
SELECT throws_ok($$SELECT queuert._cron_parse('L * * * *')$$, 'QU006', NULL, 'an unknown token');
SELECT throws_ok($$SELECT queuert._cron_parse(NULL)$$, 'QU006', NULL, 'NULL');

-- Time zones: the wall clock of the zone, not UTC.
SELECT is(pg_temp.next('0 9 * * *', 'Europe/Berlin', '2026-12-05 00:00+00'), '2026-12-05 08:00+00',
    '09:00 in Berlin in winter is 08:00 UTC');
SELECT is(pg_temp.next('0 9 * * *', 'Europe/Berlin', '2026-07-05 00:00+00'), '2026-07-05 07:00+00',
    'and 07:00 UTC in summer');

-- Spring forward in Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC).
SELECT is(pg_temp.ticks('30 2 * * *', 'Europe/Berlin', '2026-03-27 12:00+00', 3),
    ARRAY['03-28 01:30', '03-29 01:30', '03-30 00:30'],
    'daily 02:30: on the night it does not exist it fires once, at 03:30 CEST (01:30 UTC)');
SELECT is(pg_temp.ticks('0,30 * * * *', 'Europe/Berlin', '2026-03-29 00:00+00', 4),
    ARRAY['03-29 00:30', '03-29 01:00', '03-29 01:30', '03-29 02:00'],
    'half-hourly: the skipped 02:00 and 02:30 coincide with 03:00 and 03:30, no tick twice');

-- Fall back in Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC).
SELECT is(pg_temp.ticks('30 2 * * *', 'Europe/Berlin', '2026-10-24 12:00+00', 2),
    ARRAY['10-25 00:30', '10-26 01:30'],
    'daily 02:30: the hour that repeats fires once, at its first occurrence (CEST)');
SELECT is(pg_temp.ticks('0,30 * * * *', 'Europe/Berlin', '2026-10-24 23:00+00', 5),
    ARRAY['10-24 23:30', '10-25 00:00', '10-25 00:30', '10-25 02:00', '10-25 02:30'],
    'half-hourly: each wall-clock time once; the repeated 02:00-02:59 CET is skipped');
SELECT is(pg_temp.next('30 2 * * *', 'Europe/Berlin', '2026-10-25 01:10+00'), '2026-10-26 01:30+00',
    'asked during the repeated hour, a time already passed that night waits for the next day');

SELECT * FROM finish();
ROLLBACK;
