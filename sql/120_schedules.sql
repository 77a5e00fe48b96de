-- Recurring chains: schedules (cron in a time zone) and the call workers
-- make to start the chains of due ticks, exactly one per (schedule, tick).

CREATE OR REPLACE FUNCTION {{ schema }}.set_schedule(
    name text,
    cron text,
    type_name text,
    input jsonb DEFAULT NULL,
    timezone text DEFAULT 'UTC',
    priority integer DEFAULT 0
)
RETURNS {{ schema }}.schedule
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_tz text := coalesce(set_schedule.timezone, 'UTC');
    v_cron bigint [];
    v_next timestamptz;
    v_row {{ schema }}.schedule;
BEGIN
    IF set_schedule.name IS NULL OR length(set_schedule.name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'schedule name must be 1 to 255 characters';
    END IF;
    PERFORM {{ schema }}._check_type_name(set_schedule.type_name);
    v_cron := {{ schema }}._cron_parse(set_schedule.cron);
    BEGIN
        PERFORM now() AT TIME ZONE v_tz;
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('unknown time zone %L', v_tz);
    END;
    v_next := {{ schema }}._cron_next(v_cron, v_tz, now());
    IF v_next IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('cron %L never matches a date', set_schedule.cron);
    END IF;
    INSERT INTO {{ schema }}.schedule AS s (
        name, cron, timezone, type_name, input, priority, next_tick_at
    )
    VALUES (
        set_schedule.name, btrim(set_schedule.cron), v_tz, set_schedule.type_name,
        set_schedule.input, coalesce(set_schedule.priority, 0), v_next
    )
    ON CONFLICT (name) DO UPDATE SET
        cron = excluded.cron,
        timezone = excluded.timezone,
        type_name = excluded.type_name,
        input = excluded.input,
        priority = excluded.priority,
        -- a tick already due still fires unless the timing itself changed
        next_tick_at = CASE
            WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone THEN s.next_tick_at
            ELSE excluded.next_tick_at
        END,
        updated_at = now()
    RETURNING s.* INTO v_row;
    RETURN v_row;
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}.delete_schedule(name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    DELETE FROM {{ schema }}.schedule AS s WHERE s.name = delete_schedule.name;
    RETURN FOUND;
END;
$$;

-- Starts the chain of every due schedule of these types (NULL: all) and
-- moves it to its next tick. Each schedule row is locked with SKIP LOCKED
-- and its next tick written in the same transaction, so however many
-- workers call this at once a tick starts one chain; the chain's dedup key
-- 'schedule:<name>@<tick in UTC>' (scope any) keeps it one even if a
-- schedule is deleted and set again. Ticks missed while nothing called
-- this are not replayed: one chain for the first missed tick, then the
-- first tick after now. type_name (migration 0009): the type of the chain
-- started, so a caller that announces job types itself (a notifier outside
-- the database) needs no second read.
CREATE OR REPLACE FUNCTION {{ schema }}.fire_schedules(type_names text [] DEFAULT NULL)
RETURNS TABLE (
    schedule_name text,
    tick_at timestamptz,
    chain_id uuid,
    deduplicated boolean,
    next_tick_at timestamptz,
    type_name text
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_due record;
    v_started {{ schema }}.start_chain_result;
    v_next timestamptz;
BEGIN
    FOR v_due IN
        SELECT s.name, s.cron, s.timezone, s.type_name, s.input, s.priority, s.next_tick_at
        FROM {{ schema }}.schedule AS s
        WHERE s.next_tick_at <= now()
            AND (fire_schedules.type_names IS NULL OR s.type_name = ANY(fire_schedules.type_names))
        FOR UPDATE OF s SKIP LOCKED
    LOOP
        SELECT * INTO v_started
        FROM {{ schema }}.start_chain(
            type_name => v_due.type_name,
            input => v_due.input,
            dedup_key => format(
                'schedule:%s@%s', v_due.name,
                to_char(v_due.next_tick_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')
            ),
            dedup_scope => 'any',
            priority => v_due.priority
        );
        v_next := coalesce(
            {{ schema }}._cron_next(
                {{ schema }}._cron_parse(v_due.cron), v_due.timezone, greatest(now(), v_due.next_tick_at)
            ),
            'infinity'
        );
        UPDATE {{ schema }}.schedule AS s
        SET next_tick_at = v_next, last_tick_at = v_due.next_tick_at, last_chain_id = v_started.chain_id
        WHERE s.name = v_due.name;
        schedule_name := v_due.name;
        tick_at := v_due.next_tick_at;
        chain_id := v_started.chain_id;
        deduplicated := v_started.deduplicated;
        next_tick_at := v_next;
        type_name := v_due.type_name;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- When the next schedule of these types is due (NULL if none), so a
-- worker's ticker can sleep exactly that long.
CREATE OR REPLACE FUNCTION {{ schema }}.next_schedule_at(type_names text [] DEFAULT NULL)
RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    SELECT min(s.next_tick_at) FROM {{ schema }}.schedule AS s
    WHERE next_schedule_at.type_names IS NULL OR s.type_name = ANY(next_schedule_at.type_names);
$$;
