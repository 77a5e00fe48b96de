-- Checks of the arguments that several functions share; each raises QU006
-- with a message naming the argument.

CREATE OR REPLACE FUNCTION {{ schema }}._check_type_name(type_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF type_name IS NULL OR length(type_name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format(
                'type name must be 1 to 255 characters, got %s',
                coalesce(length(type_name)::text || ' characters', 'NULL')
            );
    END IF;
END;
$$;

-- When a job should run: an explicit time (a past one is clamped to now) or
-- a delay from now; never both, never a negative delay.
CREATE OR REPLACE FUNCTION {{ schema }}._schedule(
    schedule_at timestamptz, schedule_after interval
)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF schedule_at IS NOT NULL AND schedule_after IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = 'give schedule_at or schedule_after, not both';
    END IF;
    IF schedule_after < interval '0' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('schedule_after must not be negative, got %s', schedule_after);
    END IF;
    IF schedule_after > interval '1000 years' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('schedule_after must be at most 1000 years, got %s', schedule_after);
    END IF;
    -- Year 10000 and later (and infinity) cannot be read back by common
    -- drivers (Python's datetime stops at 9999): refused, never stored.
    IF schedule_at >= timestamptz '10000-01-01 00:00:00+00' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('schedule_at must be before the year 10000, got %s', schedule_at);
    END IF;
    RETURN greatest(coalesce(schedule_at, now() + schedule_after, now()), now());
END;
$$;
