-- continue_with: hand a chain on to its next job in one step.

CREATE OR REPLACE FUNCTION {{ schema }}.continue_with(
    job_id uuid,
    worker_id text,
    type_name text,
    input jsonb DEFAULT NULL,
    id uuid DEFAULT NULL,
    schedule_at timestamptz DEFAULT NULL,
    schedule_after interval DEFAULT NULL,
    blockers uuid [] DEFAULT NULL,
    priority integer DEFAULT NULL,
    trace_context text DEFAULT NULL,
    attempt integer DEFAULT NULL
)
RETURNS SETOF {{ schema }}.continue_with_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_chain_id uuid;
    j {{ schema }}.job;
    v_id uuid := coalesce(continue_with.id, {{ schema }}._new_job_id());
    v_scheduled_at timestamptz;
    v_blockers uuid[];
    v_open uuid[] := '{}';
    v_status {{ schema }}.job_status;
    v_inserted integer;
BEGIN
    PERFORM {{ schema }}._check_type_name(continue_with.type_name);
    v_scheduled_at := {{ schema }}._schedule(continue_with.schedule_at, continue_with.schedule_after);
    v_blockers := {{ schema }}._distinct_blockers(continue_with.blockers);

    SELECT x.chain_id INTO v_chain_id FROM {{ schema }}.job AS x WHERE x.id = continue_with.job_id;
    IF NOT FOUND THEN
        PERFORM {{ schema }}._job_not_found(continue_with.job_id);
    END IF;
    -- The root lock makes cancel/delete of this chain see the new job; NO KEY
    -- UPDATE leaves starters that wait on the chain (KEY SHARE) unblocked.
    PERFORM 1 FROM {{ schema }}.job AS r WHERE r.id = v_chain_id FOR NO KEY UPDATE;
    SELECT * INTO j FROM {{ schema }}.job AS x WHERE x.id = continue_with.job_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM {{ schema }}._job_not_found(continue_with.job_id);
    END IF;

    -- A repeated call from whoever made the first one returns the same next
    -- job; anyone else (another worker, a stale attempt, an outside caller
    -- after a worker, a worker after an outside caller) is refused.
    IF j.status = 'completed' AND j.continued_to IS NOT NULL THEN
        IF (continue_with.worker_id IS NOT NULL AND j.completed_by = continue_with.worker_id
                AND (continue_with.attempt IS NULL OR continue_with.attempt = j.attempt))
            OR (continue_with.worker_id IS NULL AND j.completed_by IS NULL) THEN
            RETURN QUERY
            SELECT n.id, n.chain_id, n.chain_index, n.type_name, n.status, n.scheduled_at, true
            FROM {{ schema }}.job AS n
            WHERE n.id = j.continued_to;
            RETURN;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'QU004',
            MESSAGE = format(
                'job %s was already continued by %s, not by %s',
                j.id, coalesce('worker ' || j.completed_by, 'an outside call'),
                CASE
                    WHEN continue_with.worker_id IS NULL THEN 'an outside call'
                    ELSE format('worker %s at attempt %s',
                        continue_with.worker_id, coalesce(continue_with.attempt, j.attempt))
                END
            ),
            DETAIL = format('job_id=%s', j.id);
    END IF;
    PERFORM {{ schema }}._check_owner(
        j, continue_with.worker_id, continue_with.attempt,
        '{blocked,pending,running}'::{{ schema }}.job_status[], 'continue'
    );

    IF j.chain_id = ANY(v_blockers) THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('a continuation of chain %s cannot be blocked on its own chain', j.chain_id),
            DETAIL = format('chain_id=%s', j.chain_id);
    END IF;
    IF cardinality(v_blockers) > 0 THEN
        v_open := {{ schema }}._lock_blocker_chains(v_blockers);
    END IF;
    v_status := CASE WHEN cardinality(v_open) > 0 THEN 'blocked' ELSE 'pending' END;

    INSERT INTO {{ schema }}.job (
        id, type_name, chain_id, chain_type_name, chain_index, input, status,
        priority, scheduled_at, trace_context, chain_trace_context, open_blockers
    )
    VALUES (
        v_id, continue_with.type_name, j.chain_id, j.chain_type_name, j.chain_index + 1,
        continue_with.input, v_status, coalesce(continue_with.priority, j.priority),
        v_scheduled_at, coalesce(continue_with.trace_context, j.trace_context),
        j.chain_trace_context, cardinality(v_open)
    )
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
    IF v_inserted = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('a job with id %s already exists', v_id),
            DETAIL = format('job_id=%s', v_id);
    END IF;
    IF cardinality(v_blockers) > 0 THEN
        -- each edge keeps the trace context the new job stores (migration 0008)
        INSERT INTO {{ schema }}.job_blocker (job_id, position, blocker_chain_id, trace_context)
        SELECT v_id, u.o, u.b, coalesce(continue_with.trace_context, j.trace_context)
        FROM unnest(v_blockers) WITH ORDINALITY AS u (b, o);
    END IF;

    UPDATE {{ schema }}.job AS x
    SET
        status = 'completed',
        output = NULL,
        continued_to = v_id,
        completed_at = now(),
        completed_by = continue_with.worker_id,
        leased_by = NULL,
        leased_until = NULL
    WHERE x.id = j.id;

    IF v_status = 'pending' THEN
        PERFORM {{ schema }}._notify_batch('job_ready', ARRAY[continue_with.type_name]);
    END IF;
    IF continue_with.worker_id IS NULL AND j.status = 'running' THEN
        PERFORM {{ schema }}._notify_batch('job_lost', ARRAY[j.id::text]);
    END IF;

    RETURN QUERY SELECT
        v_id, j.chain_id, j.chain_index + 1, continue_with.type_name, v_status,
        v_scheduled_at, false;
END;
$$;
