-- start_chain pins no search_path (sql/030_start_chain.sql): it must run the
-- same under a caller's hostile one. A schema placed before pg_catalog
-- defines, for the names start_chain's common path and what it inlines
-- (_new_job_id, _notify_inline, _notify_enabled) use, look-alikes that
-- would win over pg_catalog's if a name were unqualified (an exact match
-- listed first in the path); each one raises. Controls prove they would be
-- picked. This file runs first in its own session (pg_prove), so the
-- function is compiled and planned under the hostile path.
BEGIN;
SELECT plan(14);


CREATE SCHEMA hostile;
CREATE FUNCTION hostile.trap() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hostile object used';
END $$;
CREATE FUNCTION hostile.text_eq(pg_catalog.text, pg_catalog.text) RETURNS boolean
LANGUAGE sql AS $$ SELECT hostile.trap() $$;
CREATE OPERATOR hostile.= (
    LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = hostile.text_eq
);
CREATE OPERATOR hostile.<> (
    LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = hostile.text_eq
);
-- an exact match for the common path's num_nulls arguments, which would win
-- over pg_catalog's VARIADIC "any" one
CREATE FUNCTION hostile.num_nulls(
    pg_catalog.uuid, timestamptz, interval, pg_catalog.uuid [], pg_catalog.text, interval
) RETURNS integer
LANGUAGE sql AS $$ SELECT hostile.trap()::integer $$;
CREATE FUNCTION hostile.int_cmp(integer, integer) RETURNS boolean
LANGUAGE sql AS $$ SELECT hostile.trap() $$;
CREATE OPERATOR hostile.>= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.int_cmp);
CREATE OPERATOR hostile.<= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.int_cmp);
CREATE FUNCTION hostile.text_cat(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.text
LANGUAGE sql AS $$ SELECT hostile.trap()::pg_catalog.text $$;
CREATE OPERATOR hostile.|| (
    LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = hostile.text_cat
);
CREATE FUNCTION hostile.float_mul(double precision, integer) RETURNS double precision
LANGUAGE sql AS $$ SELECT hostile.trap()::integer::double precision $$;
CREATE OPERATOR hostile.* (LEFTARG = double precision, RIGHTARG = integer, FUNCTION = hostile.float_mul);
CREATE FUNCTION hostile.length(pg_catalog.text) RETURNS integer
LANGUAGE sql AS $$ SELECT hostile.trap()::integer $$;
CREATE FUNCTION hostile.now() RETURNS timestamptz
LANGUAGE sql AS $$ SELECT hostile.trap()::integer::text::timestamptz $$;
CREATE FUNCTION hostile.current_setting(pg_catalog.text, boolean) RETURNS pg_catalog.text
LANGUAGE sql AS $$ SELECT hostile.trap()::pg_catalog.text $$;
CREATE FUNCTION hostile.pg_notify(pg_catalog.text, pg_catalog.text) RETURNS void
LANGUAGE sql AS $$ SELECT hostile.trap(); SELECT NULL::void $$;
CREATE FUNCTION hostile.gen_random_uuid() RETURNS uuid
LANGUAGE sql AS $$ SELECT hostile.trap()::integer::text::uuid $$;
CREATE FUNCTION hostile.clock_timestamp() RETURNS timestamptz
LANGUAGE sql AS $$ SELECT hostile.trap()::integer::text::timestamptz $$;
CREATE FUNCTION hostile.set_bit(bytea, integer, integer) RETURNS bytea
LANGUAGE sql AS $$ SELECT hostile.trap()::integer::text::bytea $$;
CREATE FUNCTION hostile.encode(bytea, pg_catalog.text) RETURNS pg_catalog.text
LANGUAGE sql AS $$ SELECT hostile.trap()::pg_catalog.text $$;
CREATE FUNCTION hostile.string_to_array(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.text []
LANGUAGE sql AS $$ SELECT hostile.trap()::pg_catalog.text::pg_catalog.text [] $$;
-- a type named like one of pg_catalog's: a cast to it would not be a uuid
CREATE DOMAIN hostile.uuid AS pg_catalog.text;

-- The error a statement raises, or NULL: pgTAP itself cannot run under the
-- hostile path (its functions use unqualified names), so the controls are
-- captured here and checked after RESET.
CREATE FUNCTION pg_temp.error_of(statement pg_catalog.text) RETURNS pg_catalog.text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END $$;

SET LOCAL search_path = hostile, pg_catalog, pg_temp;

-- Controls: unqualified, these names reach the look-alikes.
CREATE TEMP TABLE controls AS
SELECT
    pg_temp.error_of($$SELECT 'a'::text = 'b'::text$$) AS eq,
    pg_temp.error_of($$SELECT length('abc'::text)$$) AS len,
    pg_temp.error_of($$SELECT 'a'::text <> 'b'::text$$) AS ne,
    pg_temp.error_of($$SELECT num_nulls(NULL::pg_catalog.uuid, NULL::timestamptz, NULL::interval,
        NULL::pg_catalog.uuid [], NULL::pg_catalog.text, NULL::interval)$$) AS nn,
    pg_temp.error_of($$SELECT set_bit('\x00'::bytea, 1, 1)$$) AS setbit,
    pg_temp.error_of($$SELECT now()$$) AS now,
    pg_typeof('00000000-0000-0000-0000-000000000000'::uuid)::pg_catalog.oid AS uuid_type;

-- The common path, queuert.notify unset (its bare pg_notify) and set (the
-- inlined _notify_inline / _notify_enabled).
CREATE TEMP TABLE s1 AS
SELECT * FROM queuert.start_chain(type_name => 'hostile-path', input => '{"n": 1}');
SET LOCAL queuert.notify = 'job_ready,job_lost';
CREATE TEMP TABLE s2 AS
SELECT * FROM queuert.start_chain(type_name => 'hostile-path', input => '{"n": 2}');
RESET queuert.notify;
-- The general path (a given id, then a dedup key).
CREATE TEMP TABLE s3 AS
SELECT * FROM queuert.start_chain(
    type_name => 'hostile-path', id => '00000000-0000-7000-8000-000000000003'::pg_catalog.uuid
);
CREATE TEMP TABLE s4 AS
SELECT * FROM queuert.start_chain(type_name => 'hostile-path', dedup_key => 'k');
CREATE TEMP TABLE s5 AS
SELECT * FROM queuert.start_chain(type_name => 'hostile-path', dedup_key => 'k');

RESET search_path;

SELECT is((SELECT eq FROM controls), 'hostile object used',
    'control: an unqualified = on text is hostile''s');
SELECT is((SELECT len FROM controls), 'hostile object used',
    'control: an unqualified length is hostile''s');
SELECT is((SELECT ne FROM controls), 'hostile object used',
    'control: an unqualified <> on text is hostile''s');
SELECT is((SELECT nn FROM controls), 'hostile object used',
    'control: an unqualified num_nulls of the common path''s argument types is hostile''s');
SELECT is((SELECT setbit FROM controls), 'hostile object used',
    'control: an unqualified set_bit with integer literals is hostile''s');
SELECT is((SELECT now FROM controls), 'hostile object used',
    'control: an unqualified now() is hostile''s');
SELECT is((SELECT uuid_type FROM controls), 'hostile.uuid'::regtype::oid,
    'control: an unqualified uuid is hostile''s');

SELECT is((SELECT count(*)::integer FROM s1), 1, 'common path under a hostile path: one row');
SELECT is((SELECT status::text FROM s1), 'pending', 'common path under a hostile path: pending');
SELECT is((SELECT substr(id::text, 15, 1) FROM s1), '7',
    'common path under a hostile path: _new_job_id''s own version 7 id');
SELECT is((SELECT status::text FROM s2), 'pending',
    'common path with queuert.notify set, under a hostile path: pending');
SELECT is((SELECT id FROM s3), '00000000-0000-7000-8000-000000000003'::uuid,
    'general path under a hostile path: the given id');
SELECT is((SELECT deduplicated FROM s5), true,
    'general path under a hostile path: the second start with a dedup key is deduplicated');
SELECT is(
    (SELECT count(*)::integer FROM queuert.job WHERE type_name = 'hostile-path'), 4,
    'four roots written, none by a look-alike'
);

SELECT * FROM finish();
ROLLBACK;
