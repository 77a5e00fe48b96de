#!/usr/bin/env bash
# queuert in psql: the signup flow.
#
# A signup inserts the user AND starts the welcome-email chain in ONE
# transaction: both commit, or neither does. A worker then claims the job
# and completes it. Runs in its own database (queuert_demo, recreated each
# time) on the server of DATABASE_URL (default: the local server).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
PY="${PY:-.venv/bin/python}"
DB=queuert_demo
DEMO_DSN=$("$PY" -c 'import sys; from psycopg.conninfo import make_conninfo; print(make_conninfo(sys.argv[1], dbname=sys.argv[2]))' "$BASE" "$DB")

PGOPTIONS="-c client_min_messages=warning" psql "$BASE" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql "$BASE" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $DB"
echo "== queuert migrate --dsn <$DB>"
"$PY" -m queuert.cli migrate --dsn "$DEMO_DSN"
echo

psql "$DEMO_DSN" -v ON_ERROR_STOP=1 -q -P pager=off <<'SQL'
\echo '== the application''s own table'
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE
);

\echo '== signup 1: insert the user and start its chain in one transaction, COMMIT'
BEGIN;
WITH new_user AS (
    INSERT INTO users (email) VALUES ('ada@example.com') RETURNING id
)
SELECT job.chain_id, job.type_name, job.status
FROM new_user
CROSS JOIN LATERAL queuert.start_chain(
    type_name => 'send-welcome-email',
    input => jsonb_build_object('user_id', new_user.id)
) AS job;
COMMIT;

\echo '== signup 2: the same, but the transaction is rolled back'
BEGIN;
WITH new_user AS (
    INSERT INTO users (email) VALUES ('bob@example.com') RETURNING id
)
SELECT job.chain_id, job.status
FROM new_user
CROSS JOIN LATERAL queuert.start_chain(
    type_name => 'send-welcome-email',
    input => jsonb_build_object('user_id', new_user.id)
) AS job;
ROLLBACK;

\echo '== after both: one user, one job (the rolled-back signup left neither)'
SELECT
    (SELECT count(*) FROM users) AS users,
    (SELECT count(*) FROM queuert.job) AS jobs;
DO $$
BEGIN
    IF (SELECT count(*) FROM users) <> 1 OR (SELECT count(*) FROM queuert.job) <> 1 THEN
        RAISE EXCEPTION 'demo: expected exactly one user and one job';
    END IF;
END;
$$;

\echo '== a worker claims the job (lease 30 s)'
SELECT id AS job_id, input ->> 'user_id' AS user_id
FROM queuert.claim(
    worker_id => 'demo-worker',
    type_names => ARRAY['send-welcome-email'],
    lease => '30 seconds'
) \gset
SELECT id, type_name, status, attempt, leased_by, input
FROM queuert.job WHERE id = :'job_id';

\echo '== ... the worker sends the welcome email to user' :user_id
\echo '== and completes the job with its output'
SELECT *
FROM queuert.complete(
    job_id => :'job_id',
    worker_id => 'demo-worker',
    output => jsonb_build_object('sent_to', (SELECT email FROM users WHERE id = :user_id))
);

\echo '== the job row afterwards'
SELECT type_name, status, attempt, completed_by, output
FROM queuert.job WHERE id = :'job_id';
DO $$
BEGIN
    IF (SELECT status::text FROM queuert.job) <> 'completed' THEN
        RAISE EXCEPTION 'demo: the job should be completed';
    END IF;
END;
$$;
SQL

echo
echo "Demo done. Look around: psql '$DEMO_DSN'  (e.g. SELECT * FROM queuert.job;)"
