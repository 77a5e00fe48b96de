-- claim: hand due pending jobs to a worker, in one statement; next_due_at.
--
-- No SKIP LOCKED in SQLite: a claim runs under the database's single write
-- lock, so two claims never overlap and never hand out one job twice; they
-- simply take turns. Each claim walks the claim index in order and stops
-- after :max_jobs rows. The type filter is a parameter, as in
-- pick_for_worker: :type_name (one type, an equality), :type_names (a JSON
-- list) or neither (any type); SQLite computes the NULL tests once per run,
-- so each row pays only its own test (the three shapes had a statement
-- each, the same speed to within 1-4%: docs/sqlite.md "Speed").
-- RETURNING comes back in no particular order: the caller sorts the rows
-- into claim order (priority DESC, scheduled_at, seq). The blockers of the
-- claimed jobs that have some (blocker_count > 0) come from claim_blockers,
-- a second statement: a subquery in RETURNING cannot use the updated row as
-- an index key (SQLite scans the whole table there), a SELECT can.

-- name: claim
-- The engine's claim (queuert._sqlite.claim): every column of the job, then
-- seq and blocker_count.
UPDATE {{ schema }}_job AS j
SET
    status = 'running',
    attempt = j.attempt + 1,
    leased_by = :worker_id,
    leased_until = :now + coalesce(
        :lease,
        (
            SELECT t.lease FROM {{ schema }}_job_type AS t
            WHERE t.type_name = j.type_name
        ),
        60000000
    )
WHERE j.seq IN (
    SELECT c.seq FROM {{ schema }}_job AS c
    WHERE
        c.status = 'pending' AND c.scheduled_at <= :now
        AND (:type_name IS NULL OR c.type_name = :type_name)
        AND (
            :type_names IS NULL
            OR c.type_name IN (SELECT t.value FROM json_each(:type_names) AS t)
        )
    ORDER BY c.priority DESC, c.scheduled_at ASC, c.seq ASC
    LIMIT :max_jobs
)
RETURNING
    id, type_name, chain_id, chain_type_name, chain_index, input,
    output, status, priority, attempt, scheduled_at, created_at,
    completed_at, completed_by, leased_by, leased_until, last_attempt_at,
    last_attempt_error, continued_to, dedup_key, trace_context,
    seq, blocker_count;

-- name: claim_for_worker
-- claim for the worker: only the columns a worker's job needs (the job's
-- output, status, completion and lease owner are known or unused), then
-- seq and blocker_count. Fewer columns through RETURNING is less to
-- materialise (the eight more of claim cost about 0.9 us per job).
UPDATE {{ schema }}_job AS j
SET
    status = 'running',
    attempt = j.attempt + 1,
    leased_by = :worker_id,
    leased_until = :now + coalesce(
        :lease,
        (
            SELECT t.lease FROM {{ schema }}_job_type AS t
            WHERE t.type_name = j.type_name
        ),
        60000000
    )
WHERE j.seq IN (
    SELECT c.seq FROM {{ schema }}_job AS c
    WHERE
        c.status = 'pending' AND c.scheduled_at <= :now
        AND (:type_name IS NULL OR c.type_name = :type_name)
        AND (
            :type_names IS NULL
            OR c.type_name IN (SELECT t.value FROM json_each(:type_names) AS t)
        )
    ORDER BY c.priority DESC, c.scheduled_at ASC, c.seq ASC
    LIMIT :max_jobs
)
RETURNING
    id, type_name, chain_id, chain_type_name, chain_index, input,
    priority, attempt, scheduled_at, created_at, leased_until,
    last_attempt_error, trace_context, seq, blocker_count;

-- name: claim_for_worker_one_job
-- claim_for_worker for one job (a worker's claim of one): `=` on the one
-- seq the subquery picks, where `IN` makes SQLite build a temporary b-tree
-- of the picked seqs on every run (about 3 us of an atomic job's 40 us of
-- SQL). No pending job: the subquery is NULL and nothing is claimed.
UPDATE {{ schema }}_job AS j
SET
    status = 'running',
    attempt = j.attempt + 1,
    leased_by = :worker_id,
    leased_until = :now + coalesce(
        :lease,
        (
            SELECT t.lease FROM {{ schema }}_job_type AS t
            WHERE t.type_name = j.type_name
        ),
        60000000
    )
WHERE j.seq = (
    SELECT c.seq FROM {{ schema }}_job AS c
    WHERE
        c.status = 'pending' AND c.scheduled_at <= :now
        AND (:type_name IS NULL OR c.type_name = :type_name)
        AND (
            :type_names IS NULL
            OR c.type_name IN (SELECT t.value FROM json_each(:type_names) AS t)
        )
    ORDER BY c.priority DESC, c.scheduled_at ASC, c.seq ASC
    LIMIT 1
)
RETURNING
    id, type_name, chain_id, chain_type_name, chain_index, input,
    priority, attempt, scheduled_at, created_at, leased_until,
    last_attempt_error, trace_context, seq, blocker_count;

-- name: claim_blockers
-- For each claimed job of :job_ids: its blocker chains in blocker order, each
-- with the chain's id, its (root's) type and its final output (its last
-- job's), as a JSON array ('[]' when it has none). For tracing: the chain's
-- trace (its root's trace_context), when it completed (ISO text) and the
-- span that completed it, when that resolved this edge (migration 0004).
SELECT
    c.value AS job_id,
    (
        SELECT json_group_array(json_object(
            'chain_id', bc.blocker_chain_id,
            'type_name', bc.type_name,
            'output', json(bc.output),
            'trace_context', bc.trace_context,
            'completed_at', bc.completed_at,
            'resolved_trace_context', bc.resolved_trace_context
        ))
        FROM (
            SELECT
                b.blocker_chain_id,
                r.type_name,
                coalesce((
                    SELECT l.output FROM {{ schema }}_job AS l
                    WHERE l.chain_id = b.blocker_chain_id AND l.chain_index > 0
                    ORDER BY l.chain_index DESC
                    LIMIT 1
                ), r.output) AS output,
                r.trace_context,
                strftime(
                    '%Y-%m-%dT%H:%M:%f+00:00', r.chain_completed_at / 1000000.0, 'unixepoch'
                ) AS completed_at,
                b.resolved_trace_context
            FROM {{ schema }}_job_blocker AS b
            INNER JOIN {{ schema }}_job AS r ON b.blocker_chain_id = r.id
            WHERE b.job_id = c.value
            ORDER BY b.position
        ) AS bc
    ) AS blockers
FROM json_each(:job_ids) AS c;

-- name: next_due_at
-- When the next pending job of these types (NULL: any) becomes due, NULL if
-- none, so an idle worker can sleep exactly that long. A loose index scan of
-- job_claim_idx: for each distinct priority (a few), the first entry in due
-- order.
WITH RECURSIVE priorities (priority) AS (
    SELECT (
        SELECT max(j.priority) FROM {{ schema }}_job AS j
        WHERE j.status = 'pending'
    )
    UNION ALL
    SELECT (
        SELECT max(j.priority) FROM {{ schema }}_job AS j
        WHERE j.status = 'pending' AND j.priority < p.priority
    )
    FROM priorities AS p
    WHERE p.priority IS NOT NULL
)

SELECT min((
    SELECT j.scheduled_at FROM {{ schema }}_job AS j
    WHERE
        j.status = 'pending'
        AND j.priority = p.priority
        AND (
            :type_names IS NULL
            OR j.type_name IN (SELECT t.value FROM json_each(:type_names) AS t)
        )
    ORDER BY j.scheduled_at
    LIMIT 1
)) AS next_due_at
FROM priorities AS p
WHERE p.priority IS NOT NULL;

-- name: pick_for_worker
-- An atomic slot's claim, in two halves (docs/sqlite.md "Atomic mode"):
-- the job claim_for_worker_one_job would claim, read without writing, with
-- the values the claim would give it (its next attempt, its lease's end).
-- The slot's transaction holds the write lock from its BEGIN IMMEDIATE, so
-- nobody else can claim or see the job meanwhile; the claim is written by
-- claim_picked when the handler first uses job.conn (or its outcome is not
-- a completion), else complete_picked takes the job from pending to
-- completed in one UPDATE. Types: :type_name (one), :type_names (a JSON
-- list), or neither (any); the filter runs on the claim index's rows.
SELECT
    c.id, c.type_name, c.chain_id, c.chain_type_name, c.chain_index, c.input,
    c.priority, c.attempt + 1 AS attempt, c.scheduled_at, c.created_at,
    :now + coalesce(
        :lease,
        (
            SELECT t.lease FROM {{ schema }}_job_type AS t
            WHERE t.type_name = c.type_name
        ),
        60000000
    ) AS leased_until,
    c.last_attempt_error, c.trace_context, c.seq, c.blocker_count,
    c.has_dependents
FROM {{ schema }}_job AS c
WHERE
    c.status = 'pending' AND c.scheduled_at <= :now
    AND (:type_name IS NULL OR c.type_name = :type_name)
    AND (
        :type_names IS NULL
        OR c.type_name IN (SELECT t.value FROM json_each(:type_names) AS t)
    )
ORDER BY c.priority DESC, c.scheduled_at ASC, c.seq ASC
LIMIT 1;

-- name: claim_picked
-- Write the claim of a job pick_for_worker read, in the same transaction:
-- what claim_for_worker_one_job would have written (:attempt and
-- :leased_until as the pick computed them).
UPDATE {{ schema }}_job
SET
    status = 'running',
    attempt = :attempt,
    leased_by = :worker_id,
    leased_until = :leased_until
WHERE seq = :seq AND status = 'pending' AND attempt = :attempt - 1;
