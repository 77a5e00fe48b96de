-- Notifications, sent with pg_notify from the engine's own statements (no
-- triggers), so they are delivered only if the transaction commits. Names
-- starting with an underscore are not part of the public API.
--
-- The setting queuert.notify (per session, role or database; unset means
-- 'all') selects the channels: 'all', 'none' (poll-only mode), or a comma
-- list of job_ready, chain_completed, job_lost. A NOTIFY serialises commits
-- (PostgreSQL holds a database-wide lock from pre-commit to the end of the
-- commit), so a worker that publishes after commit in batches can turn the
-- per-job ones off.
--
-- kind 'job_ready_unblocked' is job_ready for jobs that a completion
-- unblocked (fan-in): sent on the job_ready channel, selected by either
-- name. Such commits are rare, so a batching worker leaves them to the engine
-- ('job_lost,job_ready_unblocked') instead of looking the dependents up again.
--
-- Two ways to send, for two kinds of caller: _notify_batch, a PL/pgSQL call
-- with every payload of a statement (the setting read once per batch), and
-- _notify_inline, one payload as an SQL expression inlined into the caller's
-- statement (start_chain's one-statement common path).

-- The one place that reads queuert.notify: whether it selects this kind
-- (job_ready_unblocked also through job_ready): unset, '' and 'all' select
-- every kind. Inlined where it is used; every name is qualified, as in all
-- that start_chain's common path runs (_notify_inline).
CREATE OR REPLACE FUNCTION {{ schema }}._notify_enabled(kind text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(pg_catalog.current_setting('queuert.notify', true), '')
            OPERATOR(pg_catalog.=) ANY ('{"",all}'::pg_catalog.text [])
        OR kind OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array(
            pg_catalog.replace(pg_catalog.current_setting('queuert.notify', true), ' ', ''), ','
        ))
        OR (kind OPERATOR(pg_catalog.=) 'job_ready_unblocked'
            AND 'job_ready' OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array(
                pg_catalog.replace(pg_catalog.current_setting('queuert.notify', true), ' ', ''), ','
            )))
$$;

-- Sends one notification of this kind per payload (none when the array is
-- empty or the kind is off); returns how many were sent.
CREATE OR REPLACE FUNCTION {{ schema }}._notify_batch(kind text, payloads text [])
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_sent integer;
BEGIN
    -- One call per statement with all its payloads: the setting is read
    -- once, not once per completed chain of a batch. PL/pgSQL, not SQL: a
    -- SQL function called from a statement is planned again on every call.
    IF cardinality(payloads) > 0 AND {{ schema }}._notify_enabled(kind) THEN
        SELECT count(pg_notify(
            '{{ schema }}_' || CASE kind WHEN 'job_ready_unblocked' THEN 'job_ready' ELSE kind END, p
        )) INTO v_sent
        FROM unnest(payloads) AS p;
        RETURN v_sent;
    END IF;
    RETURN 0;
END;
$$;

-- One notification if queuert.notify selects its kind, as an SQL expression
-- that inlines into the caller's statement: no PL/pgSQL call, whose
-- expressions would be set up again in every transaction of an autocommit
-- caller (start_chain's common path, when queuert.notify is set; qualified
-- names, as everything that path runs).
CREATE OR REPLACE FUNCTION {{ schema }}._notify_inline(kind text, payload text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    SELECT CASE
        WHEN {{ schema }}._notify_enabled(kind)
            THEN pg_catalog.pg_notify(
                '{{ schema }}_' OPERATOR(pg_catalog.||) kind, payload
            ) IS NOT NULL
        ELSE false
    END
$$;
