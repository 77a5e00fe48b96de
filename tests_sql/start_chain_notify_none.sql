-- start_chain's common path with queuert.notify = 'none' (a broker
-- producer's session, poll-only mode) has a branch of its own: the INSERT
-- with no notification at all. It must write the row the default path
-- writes and send nothing. Notifications only leave at commit, so two
-- dblink sessions commit starts of their own while a third LISTENs; the
-- rows they commit are deleted at the end.
BEGIN;
SELECT plan(5);
CREATE EXTENSION IF NOT EXISTS dblink;

CREATE TEMP TABLE conninfo AS
SELECT format('dbname=%s port=%s user=%s', current_database(), current_setting('port'), current_user)
    || coalesce(' host=' || host(inet_server_addr()), '') AS s;

SELECT dblink_connect('n11c_listen', (SELECT s FROM conninfo));
SELECT dblink_exec('n11c_listen', 'LISTEN queuert_job_ready');
SELECT dblink_connect('n11c_quiet', (SELECT s || ' options=''-c queuert.notify=none''' FROM conninfo));
SELECT dblink_connect('n11c_loud', (SELECT s FROM conninfo));

-- the quiet start first, then a default one: notifications arrive in commit
-- order, so once the loud one's has arrived the quiet one's would have too
CREATE TEMP TABLE quiet AS
SELECT * FROM dblink('n11c_quiet', $$
    SELECT current_setting('queuert.notify'), id::text
    FROM queuert.start_chain(type_name => 'n11c_quiet', input => '{"n": 1}')
$$) AS t (setting text, id text);
CREATE TEMP TABLE loud AS
SELECT * FROM dblink('n11c_loud', $$
    SELECT id::text FROM queuert.start_chain(type_name => 'n11c_loud', input => '{"n": 1}')
$$) AS t (id text);

CREATE TEMP TABLE heard (payload text);
DO $$
BEGIN
    FOR i IN 1..1000 LOOP  -- until the loud start's notification is in
        INSERT INTO heard SELECT n.extra FROM dblink_get_notify('n11c_listen') AS n;
        EXIT WHEN EXISTS (SELECT FROM heard WHERE payload = 'n11c_loud');
        PERFORM pg_sleep(0.01);
    END LOOP;
END;
$$;

SELECT is((SELECT setting FROM quiet), 'none', 'the quiet session runs with queuert.notify = none');
SELECT is(
    (SELECT count(*)::integer FROM heard WHERE payload = 'n11c_loud'), 1,
    'control: the default start is heard'
);
SELECT is(
    (SELECT count(*)::integer FROM heard WHERE payload = 'n11c_quiet'), 0,
    'queuert.notify = none: the common path sends no job_ready'
);
-- the same row as the default path's, column for column (but its own id
-- and input), committed
SELECT results_eq(
    $$SELECT j.type_name = j.chain_type_name, j.id = j.chain_id, j.chain_index, j.input,
        j.status::text, j.priority, j.scheduled_at = j.created_at, j.dedup_key, j.trace_context,
        j.chain_trace_context, j.open_blockers, substr(j.id::text, 15, 1)
      FROM queuert.job AS j JOIN quiet AS q ON q.id::uuid = j.id$$,
    $$SELECT j.type_name = j.chain_type_name, j.id = j.chain_id, j.chain_index, j.input,
        j.status::text, j.priority, j.scheduled_at = j.created_at, j.dedup_key, j.trace_context,
        j.chain_trace_context, j.open_blockers, substr(j.id::text, 15, 1)
      FROM queuert.job AS j JOIN loud AS l ON l.id::uuid = j.id$$,
    'queuert.notify = none: the row the default path writes'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.job WHERE type_name IN ('n11c_quiet', 'n11c_loud')),
    2, 'one row each'
);

SELECT dblink_exec('n11c_loud', $$DELETE FROM queuert.job WHERE type_name IN ('n11c_quiet', 'n11c_loud')$$);
SELECT dblink_disconnect('n11c_listen');
SELECT dblink_disconnect('n11c_quiet');
SELECT dblink_disconnect('n11c_loud');

SELECT * FROM finish();
ROLLBACK;
