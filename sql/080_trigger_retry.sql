-- trigger_jobs and retry_jobs: all-or-nothing operations on explicit jobs.

-- Locks the jobs (id order) and checks they exist and have one of the
-- allowed statuses; returns the distinct ids in first-seen order.
CREATE OR REPLACE FUNCTION {{ schema }}._lock_jobs_with_status(
    job_ids uuid [],
    allowed {{ schema }}.job_status [],
    action text
)
RETURNS uuid []
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_ids uuid[];
    v_bad record;
BEGIN
    IF job_ids IS NULL OR array_ndims(job_ids) > 1
        OR array_position(job_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('%s needs an array of job ids without NULLs', action);
    END IF;
    v_ids := ARRAY(
        SELECT u.id FROM unnest(job_ids) WITH ORDINALITY AS u (id, o)
        GROUP BY u.id ORDER BY min(u.o)
    );
    PERFORM 1 FROM {{ schema }}.job AS j WHERE j.id = ANY(v_ids) ORDER BY j.id FOR NO KEY UPDATE;

    SELECT u.id, j.status INTO v_bad
    FROM unnest(v_ids) WITH ORDINALITY AS u (id, o)
    LEFT JOIN {{ schema }}.job AS j ON j.id = u.id
    WHERE j.id IS NULL OR NOT (j.status = ANY(allowed))
    ORDER BY (j.id IS NOT NULL), u.o
    LIMIT 1;
    IF FOUND THEN
        IF v_bad.status IS NULL THEN
            PERFORM {{ schema }}._job_not_found(v_bad.id);
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'QU003',
            MESSAGE = format(
                'cannot %s job %s: it is %s, not %s',
                action, v_bad.id, v_bad.status, array_to_string(allowed, ' or ')
            ),
            DETAIL = format('job_id=%s, status=%s', v_bad.id, v_bad.status);
    END IF;
    RETURN v_ids;
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}.trigger_jobs(job_ids uuid [])
RETURNS TABLE (job_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids uuid[];
    v_notified integer;
BEGIN
    v_ids := {{ schema }}._lock_jobs_with_status(
        trigger_jobs.job_ids, '{pending}'::{{ schema }}.job_status[], 'trigger'
    );
    WITH triggered AS (
        UPDATE {{ schema }}.job AS j
        SET scheduled_at = least(j.scheduled_at, now())
        WHERE j.id = ANY(v_ids)
        RETURNING j.type_name
    )
    SELECT {{ schema }}._notify_batch('job_ready', array_agg(d.type_name)) INTO v_notified
    FROM (SELECT DISTINCT t.type_name FROM triggered AS t) AS d;
    RETURN QUERY SELECT u.id FROM unnest(v_ids) AS u (id);
END;
$$;

-- failed or cancelled jobs run again: attempt back to 0 so max_attempts
-- applies afresh; blocked again if a blocker chain is still incomplete.
CREATE OR REPLACE FUNCTION {{ schema }}.retry_jobs(job_ids uuid [])
RETURNS TABLE (job_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids uuid[];
    v_notified integer;
BEGIN
    v_ids := {{ schema }}._lock_jobs_with_status(
        retry_jobs.job_ids, '{failed,cancelled}'::{{ schema }}.job_status[], 'retry'
    );
    -- A completion racing this waits for our row lock before it decrements
    -- open_blockers, so counting incomplete blockers here stays exact.
    WITH open_count AS (
        SELECT b.job_id, count(*)::integer AS n
        FROM {{ schema }}.job_blocker AS b
        JOIN {{ schema }}.job AS r ON r.id = b.blocker_chain_id
        WHERE b.job_id = ANY(v_ids) AND r.chain_completed_at IS NULL
        GROUP BY b.job_id
    ),
    retried AS (
        UPDATE {{ schema }}.job AS j
        SET
            status = CASE WHEN coalesce(oc.n, 0) > 0 THEN 'blocked' ELSE 'pending' END
                ::{{ schema }}.job_status,
            open_blockers = coalesce(oc.n, 0),
            attempt = 0,
            scheduled_at = now(),
            leased_by = NULL,
            leased_until = NULL
        FROM unnest(v_ids) AS u (id)
        LEFT JOIN open_count AS oc ON oc.job_id = u.id
        WHERE j.id = u.id
        RETURNING j.type_name, j.status
    )
    SELECT {{ schema }}._notify_batch('job_ready', array_agg(d.type_name)) INTO v_notified
    FROM (SELECT DISTINCT r.type_name FROM retried AS r WHERE r.status = 'pending') AS d;
    RETURN QUERY SELECT u.id FROM unnest(v_ids) AS u (id);
END;
$$;
