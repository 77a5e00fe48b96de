-- Statements shared by several operations of the SQLite engine.
--
-- Format (queuert/_sqlite/_statements.py): each statement starts with a line
-- "-- name: <name>" and is run alone by the Python layer; {{ schema }} is the
-- table prefix. Times are epoch microseconds, id lists JSON arrays.

-- name: take_write_lock
-- A write that changes nothing: inside a caller's transaction it takes
-- SQLite's write lock before the call reads anything, as BEGIN IMMEDIATE
-- does for the engine's own transactions.
UPDATE {{ schema }}_job_type
SET type_name = type_name
WHERE 0;

-- name: job_for_action
-- The job that complete, continue_with or fail acts on, with the verdict of
-- their shared ownership and fencing rule (the PostgreSQL _check_owner).
-- With a worker the job must be running under it (an expired lease that
-- nobody reclaimed still counts); without one (a call from outside) its
-- status must be one of :outside_statuses; a given attempt must be the
-- current one. For continue_with, a job that already continued answers
-- 'repeat' to whoever made the first call and QU004 to anyone else.
-- code is NULL when the call may go ahead.
SELECT
    v.id,
    v.chain_id,
    v.chain_type_name,
    v.chain_index,
    v.type_name,
    v.status,
    v.attempt,
    v.priority,
    v.trace_context,
    v.continued_to,
    CASE v.reason
        WHEN 'repeat' THEN 'repeat'
        WHEN 'continued' THEN 'QU004'
        WHEN 'not_running' THEN 'QU003'
        WHEN 'held' THEN 'QU004'
        WHEN 'outside' THEN 'QU003'
        WHEN 'stale' THEN 'QU004'
    END AS code,
    CASE v.reason
        WHEN 'continued' THEN printf(
            'job %s was already continued by %s, not by %s',
            v.id,
            coalesce('worker ' || v.completed_by, 'an outside call'),
            CASE
                WHEN :worker_id IS NULL THEN 'an outside call'
                ELSE printf('worker %s at attempt %d', :worker_id, coalesce(:attempt, v.attempt))
            END
        )
        WHEN 'not_running' THEN printf(
            'cannot %s job %s: it is %s, not running', :action, v.id, v.status
        )
        WHEN 'held' THEN printf(
            'cannot %s job %s: it is held by worker %s, not %s',
            :action, v.id, v.leased_by, :worker_id
        )
        WHEN 'outside' THEN printf(
            'cannot %s job %s from outside: it is %s', :action, v.id, v.status
        )
        WHEN 'stale' THEN printf(
            'cannot %s job %s: attempt %d is stale, the job is at attempt %d',
            :action, v.id, :attempt, v.attempt
        )
    END AS message,
    CASE
        WHEN v.reason IN ('not_running', 'outside')
            THEN printf('job_id=%s, status=%s', v.id, v.status)
        WHEN v.reason = 'held' THEN printf('job_id=%s, worker_id=%s', v.id, v.leased_by)
        WHEN v.reason = 'stale' THEN printf('job_id=%s, attempt=%d', v.id, v.attempt)
        WHEN v.reason = 'continued' THEN printf('job_id=%s', v.id)
    END AS detail
FROM (
    SELECT
        j.*,
        CASE
            WHEN :action = 'continue' AND j.status = 'completed' AND j.continued_to IS NOT NULL
                THEN CASE
                    WHEN (
                        :worker_id IS NOT NULL AND j.completed_by = :worker_id
                        AND (:attempt IS NULL OR :attempt = j.attempt)
                    ) OR (:worker_id IS NULL AND j.completed_by IS NULL) THEN 'repeat'
                    ELSE 'continued'
                END
            WHEN :worker_id IS NOT NULL AND j.status <> 'running' THEN 'not_running'
            WHEN :worker_id IS NOT NULL AND j.leased_by IS NOT :worker_id THEN 'held'
            WHEN :worker_id IS NULL
                AND j.status NOT IN (SELECT s.value FROM json_each(:outside_statuses) AS s)
                THEN 'outside'
            WHEN :attempt IS NOT NULL AND :attempt <> j.attempt THEN 'stale'
        END AS reason
    FROM {{ schema }}_job AS j
    WHERE j.id = :job_id
) AS v;

-- name: blocker_state
-- The blocker chains given to a new job (distinct, in blocker order): the
-- first that is not a chain (no root job with that id: QU002), and how many
-- are not complete yet (the new job's open_blockers).
SELECT
    (
        SELECT b.value FROM json_each(:blockers) AS b
        WHERE NOT EXISTS (
            SELECT 1 FROM {{ schema }}_job AS r
            WHERE r.id = b.value AND r.chain_index = 0
        )
        ORDER BY b.key
        LIMIT 1
    ) AS missing,
    (
        SELECT count(*) FROM json_each(:blockers) AS b
        INNER JOIN {{ schema }}_job AS r ON b.value = r.id AND r.chain_index = 0
        WHERE r.chain_completed_at IS NULL
    ) AS open_count;

-- name: insert_blockers
-- A new job's blocker edges, in blocker order, each keeping the new job's
-- trace_context (migration 0004).
INSERT INTO {{ schema }}_job_blocker (job_id, position, blocker_chain_id, trace_context)
SELECT
    :job_id AS job_id,
    b.key + 1 AS position,
    b.value AS blocker_chain_id,
    :trace_context AS trace_context
FROM json_each(:blockers) AS b;

-- name: batch_outcomes
-- The per-job answer of a fenced batch call (complete_jobs, fail_jobs,
-- release_jobs, renew_leases), in input order: :done_outcome for the jobs
-- it changed, else why not: 'not_found', 'taken' (running under another
-- worker or attempt) or 'finished' (no longer running).
SELECT
    u.value AS job_id,
    CASE
        WHEN u.value IN (SELECT d.value FROM json_each(:done) AS d) THEN :done_outcome
        WHEN x.id IS NULL THEN 'not_found'
        WHEN x.status = 'running' THEN 'taken'
        ELSE 'finished'
    END AS outcome
FROM json_each(:job_ids) AS u
LEFT JOIN {{ schema }}_job AS x ON u.value = x.id
ORDER BY u.key;

-- name: unblocked_by
-- After chains completed in this call (resolve_dependents has resolved
-- their dependents): the dependents that became pending, each with
-- the first of those chains it waited on. A dependent of a chain that was
-- incomplete until now was blocked on it, so "pending with no open blocker
-- left" means "unblocked by this call".
SELECT
    (
        SELECT min(b2.blocker_chain_id) FROM {{ schema }}_job_blocker AS b2
        WHERE
            b2.job_id = j.id
            AND b2.blocker_chain_id IN (SELECT c.value FROM json_each(:chain_ids) AS c)
    ) AS by_chain,
    j.type_name
FROM {{ schema }}_job AS j
WHERE
    j.id IN (
        SELECT b.job_id FROM {{ schema }}_job_blocker AS b
        WHERE b.blocker_chain_id IN (SELECT c.value FROM json_each(:chain_ids) AS c)
    )
    AND j.status = 'pending'
    AND j.open_blockers = 0;
