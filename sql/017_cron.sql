-- Cron expressions, read by the engine itself so that psql, every driver
-- and every worker agree on a schedule's ticks (sql/120_schedules.sql).
--
-- Five fields (minute hour day-of-month month day-of-week) of numbers,
-- ranges, steps, lists and '*'; month and weekday names (JAN, MON); 7 is
-- Sunday too; @yearly @annually @monthly @weekly @daily @midnight @hourly.
-- When both day fields are restricted (neither starts with '*') a day
-- matches either, as in Vixie cron. A parsed expression is seven bigints:
-- one bit mask per field, then whether each day field is restricted.

CREATE OR REPLACE FUNCTION {{ schema }}._cron_field(
    expr text, field text, lo integer, hi integer, what text
)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    v_mask bigint := 0;
    v_item text;
    v_parts text [];
    v_from integer;
    v_to integer;
    v_step integer;
BEGIN
    FOREACH v_item IN ARRAY string_to_array(field, ',') LOOP
        v_parts := regexp_match(v_item, '^(\*|\d{1,2}|\d{1,2}-\d{1,2})(?:/(\d{1,2}))?$');
        IF v_parts IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'QU006',
                MESSAGE = format('cron %L: cannot read %s field %L', expr, what, field);
        END IF;
        v_step := coalesce(v_parts[2]::integer, 1);
        IF v_parts[1] = '*' THEN
            v_from := lo;
            v_to := hi;
        ELSIF strpos(v_parts[1], '-') > 0 THEN
            v_from := split_part(v_parts[1], '-', 1)::integer;
            v_to := split_part(v_parts[1], '-', 2)::integer;
        ELSE
            v_from := v_parts[1]::integer;
            -- "5/15" means from 5 to the end in steps of 15
            v_to := CASE WHEN v_parts[2] IS NULL THEN v_from ELSE hi END;
        END IF;
        IF v_step < 1 OR v_from < lo OR v_to > hi OR v_from > v_to THEN
            RAISE EXCEPTION USING ERRCODE = 'QU006',
                MESSAGE = format('cron %L: %s field %L is outside %s-%s', expr, what, field, lo, hi);
        END IF;
        FOR v IN v_from..v_to BY v_step LOOP
            v_mask := v_mask | (1::bigint << v);
        END LOOP;
    END LOOP;
    RETURN v_mask;
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}._cron_parse(expr text)
RETURNS bigint []
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    v_text text := lower(btrim(coalesce(expr, '')));
    v_fields text [];
    v_dow bigint;
    v_names text [] := ARRAY[
        'jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'
    ];
    v_days text [] := ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
BEGIN
    v_text := CASE v_text
        WHEN '@yearly' THEN '0 0 1 1 *'
        WHEN '@annually' THEN '0 0 1 1 *'
        WHEN '@monthly' THEN '0 0 1 * *'
        WHEN '@weekly' THEN '0 0 * * 0'
        WHEN '@daily' THEN '0 0 * * *'
        WHEN '@midnight' THEN '0 0 * * *'
        WHEN '@hourly' THEN '0 * * * *'
        ELSE v_text
    END;
    v_fields := regexp_split_to_array(v_text, '\s+');
    IF cardinality(v_fields) <> 5 OR length(v_text) > 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('cron %L must have five fields (minute hour day month weekday) or be an @macro', expr);
    END IF;
    FOR i IN 1..12 LOOP
        v_fields[4] := replace(v_fields[4], v_names[i], i::text);
    END LOOP;
    FOR i IN 1..7 LOOP
        v_fields[5] := replace(v_fields[5], v_days[i], (i - 1)::text);
    END LOOP;
    v_dow := {{ schema }}._cron_field(expr, v_fields[5], 0, 7, 'weekday');
    IF v_dow & (1::bigint << 7) <> 0 THEN
        v_dow := (v_dow | 1) & ~(1::bigint << 7);  -- 7 is Sunday
    END IF;
    RETURN ARRAY[
        {{ schema }}._cron_field(expr, v_fields[1], 0, 59, 'minute'),
        {{ schema }}._cron_field(expr, v_fields[2], 0, 23, 'hour'),
        {{ schema }}._cron_field(expr, v_fields[3], 1, 31, 'day-of-month'),
        {{ schema }}._cron_field(expr, v_fields[4], 1, 12, 'month'),
        v_dow,
        (left(v_fields[3], 1) <> '*')::integer::bigint,
        (left(v_fields[5], 1) <> '*')::integer::bigint
    ];
END;
$$;

-- The first local wall-clock minute at or after from_local that matches
-- (NULL if none within nine years: "0 0 30 2 *" never does).
CREATE OR REPLACE FUNCTION {{ schema }}._cron_next_local(cron bigint [], from_local timestamp)
RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    v timestamp := date_trunc('minute', from_local);
    v_limit timestamp;
    v_dom boolean;
    v_dow boolean;
BEGIN
    IF v < from_local THEN
        v := v + interval '1 minute';
    END IF;
    v_limit := v + interval '9 years';
    WHILE v < v_limit LOOP
        IF cron[4] & (1::bigint << extract(MONTH FROM v)::integer) = 0 THEN
            v := date_trunc('month', v) + interval '1 month';
            CONTINUE;
        END IF;
        v_dom := cron[3] & (1::bigint << extract(DAY FROM v)::integer) <> 0;
        v_dow := cron[5] & (1::bigint << extract(DOW FROM v)::integer) <> 0;
        IF NOT (CASE WHEN cron[6] = 1 AND cron[7] = 1 THEN v_dom OR v_dow ELSE v_dom AND v_dow END) THEN
            v := date_trunc('day', v) + interval '1 day';
            CONTINUE;
        END IF;
        IF cron[2] & (1::bigint << extract(HOUR FROM v)::integer) = 0 THEN
            v := date_trunc('hour', v) + interval '1 hour';
            CONTINUE;
        END IF;
        IF cron[1] & (1::bigint << extract(MINUTE FROM v)::integer) = 0 THEN
            v := v + interval '1 minute';
            CONTINUE;
        END IF;
        RETURN v;
    END LOOP;
    RETURN NULL;
END;
$$;

-- tz's offset from UTC at an instant.
CREATE OR REPLACE FUNCTION {{ schema }}._utc_offset(tz text, at timestamptz)
RETURNS interval
LANGUAGE sql STABLE
AS $$
    SELECT (at AT TIME ZONE tz) - (at AT TIME ZONE 'UTC')
$$;

-- The first tick strictly after `after`, in time zone tz. Every wall-clock
-- time that matches fires once. Daylight saving: a wall-clock time the
-- clocks skip (02:30 on a spring-forward night in Europe/Berlin) is read
-- as PostgreSQL reads it, with the offset before the change, so it fires
-- at 03:30 local; a wall-clock time that occurs twice (02:30 on a
-- fall-back night) fires at its first occurrence only, so a daily job runs
-- once and "*/15" pauses for the repeated hour. Without a change near
-- `after` and the candidate (the usual case) the first matching minute is
-- the answer; otherwise matches from two hours back (no zone moves its
-- clocks by more) are mapped to their first instants and the earliest
-- after `after` wins.
CREATE OR REPLACE FUNCTION {{ schema }}._cron_next(cron bigint [], tz text, after timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_local timestamp := after AT TIME ZONE tz;
    v_l timestamp;
    v_u timestamptz;
    v_c timestamptz;
    v_best timestamptz;
    v_first timestamptz;
BEGIN
    v_l := {{ schema }}._cron_next_local(cron, date_trunc('minute', v_local) + interval '1 minute');
    IF v_l IS NULL THEN
        RETURN NULL;
    END IF;
    v_u := v_l AT TIME ZONE tz;
    IF v_u > after AND v_u - after <= interval '7 days'
        AND {{ schema }}._utc_offset(tz, after - interval '3 hours') = {{ schema }}._utc_offset(tz, after)
        AND {{ schema }}._utc_offset(tz, after) = {{ schema }}._utc_offset(tz, v_u) THEN
        RETURN v_u;
    END IF;

    v_l := date_trunc('minute', v_local) - interval '2 hours';
    LOOP
        v_l := {{ schema }}._cron_next_local(cron, v_l + interval '1 minute');
        EXIT WHEN v_l IS NULL;
        EXIT WHEN v_best IS NOT NULL AND v_l > (v_best AT TIME ZONE tz) + interval '2 hours';
        v_u := v_l AT TIME ZONE tz;
        v_first := NULL;
        FOR k IN -4..4 LOOP
            v_c := v_u + k * interval '30 minutes';
            IF (v_c AT TIME ZONE tz) = v_l THEN
                v_first := v_c;
                EXIT;
            END IF;
        END LOOP;
        -- NULL: a skipped wall-clock time; PostgreSQL's reading lands after the gap
        v_first := coalesce(v_first, v_u);
        IF v_first > after THEN
            v_best := least(v_best, v_first);
        END IF;
    END LOOP;
    RETURN v_best;
END;
$$;
