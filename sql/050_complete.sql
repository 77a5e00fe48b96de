-- complete and complete_jobs: finish a chain's last job with an output.

-- Everything that follows the completion of chains whose roots the caller
-- holds FOR UPDATE: mark the roots, unblock dependents, tell listeners.
-- root_ids_to_mark are the roots that were not themselves the completed job.
-- Returns the dependents made pending (see _resolve_dependents, which
-- writes trace_contexts, one per chain or NULL, on the edges it resolves).
CREATE OR REPLACE FUNCTION {{ schema }}._chains_completed(
    chain_ids uuid [], root_ids_to_mark uuid [], trace_contexts text [] DEFAULT NULL
)
RETURNS TABLE (chain_id uuid, type_name text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_notified integer;
    v_chains uuid[];
    v_types text[];
BEGIN
    IF cardinality(root_ids_to_mark) > 0 THEN
        UPDATE {{ schema }}.job AS r
        SET chain_completed_at = now()
        WHERE r.id = ANY(root_ids_to_mark);
    END IF;
    SELECT coalesce(array_agg(d.chain_id), '{}'), coalesce(array_agg(d.type_name), '{}')
    INTO v_chains, v_types
    FROM {{ schema }}._resolve_dependents(_chains_completed.chain_ids, _chains_completed.trace_contexts) AS d;
    SELECT {{ schema }}._notify_batch('chain_completed', array_agg(c::text)) INTO v_notified
    FROM unnest(_chains_completed.chain_ids) AS c;
    RETURN QUERY SELECT u.c, u.t FROM unnest(v_chains, v_types) AS u (c, t);
END;
$$;

-- Complete one job, by the worker it runs under or (worker_id NULL) from
-- outside. trace_context: the traceparent of the span completing the job (an
-- attempt's, or complete_chain's settle span), or NULL. Given, it is written
-- on the blocker edges this completion resolves, and dependents lists them
-- (_blocker_dependents); NULL leaves both alone (dependents NULL).
-- unblocked_types (migration 0009): the types of the dependents this
-- completion made pending (a fan-in's last blocker), one element per job
-- (a type repeats for each, sorted: its count is the wake budget), so a caller that
-- announces job types itself (a notifier outside the database) needs no
-- second read of job_blocker.
CREATE OR REPLACE FUNCTION {{ schema }}.complete(
    job_id uuid,
    worker_id text,
    output jsonb DEFAULT NULL,
    attempt integer DEFAULT NULL,
    trace_context text DEFAULT NULL
)
RETURNS TABLE (
    id uuid,
    chain_id uuid,
    status {{ schema }}.job_status,
    chain_completed boolean,
    dependents jsonb,
    unblocked_types text []
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_chain_id uuid;
    v_unblocked text[];
    v_waited boolean;
    j {{ schema }}.job;
BEGIN
    SELECT x.chain_id INTO v_chain_id FROM {{ schema }}.job AS x WHERE x.id = complete.job_id;
    IF NOT FOUND THEN
        PERFORM {{ schema }}._job_not_found(complete.job_id);
    END IF;
    -- Root first (it never moves): serialises with anyone adding this chain
    -- as a blocker, and with cancel/delete. A chain's first job is its
    -- root: then the lock below is that one.
    IF v_chain_id <> complete.job_id THEN
        PERFORM 1 FROM {{ schema }}.job AS r WHERE r.id = v_chain_id FOR UPDATE;
    END IF;
    SELECT * INTO j FROM {{ schema }}.job AS x WHERE x.id = complete.job_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM {{ schema }}._job_not_found(complete.job_id);
    END IF;
    -- A worker's own running attempt passes _check_owner; only the other
    -- cases call it (an outside completion, or for the error to raise).
    -- One expression instead of a call per completion: the worker's path.
    IF complete.worker_id IS NULL OR j.status <> 'running' OR j.leased_by IS DISTINCT FROM complete.worker_id
        OR complete.attempt <> j.attempt THEN
        PERFORM {{ schema }}._check_owner(
            j, complete.worker_id, complete.attempt,
            '{blocked,pending,running}'::{{ schema }}.job_status[], 'complete'
        );
    END IF;

    UPDATE {{ schema }}.job AS x
    SET
        status = 'completed',
        output = complete.output,
        completed_at = now(),
        completed_by = complete.worker_id,
        leased_by = NULL,
        leased_until = NULL,
        chain_completed_at = CASE WHEN x.chain_index = 0 THEN now() END
    WHERE x.id = j.id;

    -- Whether anything waits on this chain. Stable from here: the root lock
    -- above serialises with anyone adding the chain as a blocker.
    v_waited := EXISTS (SELECT 1 FROM {{ schema }}.job_blocker AS b WHERE b.blocker_chain_id = j.chain_id);
    IF v_waited THEN
        SELECT coalesce(array_agg(d.type_name ORDER BY d.type_name), '{}')
        INTO v_unblocked
        FROM {{ schema }}._chains_completed(
            ARRAY[j.chain_id],
            CASE WHEN j.chain_index = 0 THEN '{}'::uuid[] ELSE ARRAY[j.chain_id] END,
            CASE WHEN complete.trace_context IS NOT NULL THEN ARRAY[complete.trace_context] END
        ) AS d;
    ELSE
        -- _chains_completed of one chain nothing waits on (nearly every
        -- completion), inline: no dependents to resolve, the root marked
        -- and chain_completed sent as it would, without three PL/pgSQL
        -- calls and their statements in every transaction
        v_unblocked := '{}';
        IF j.chain_index <> 0 THEN
            UPDATE {{ schema }}.job AS r SET chain_completed_at = now() WHERE r.id = j.chain_id;
        END IF;
        IF {{ schema }}._notify_enabled('chain_completed') THEN
            PERFORM pg_notify('{{ schema }}_chain_completed', j.chain_id::text);
        END IF;
    END IF;
    IF complete.worker_id IS NULL AND j.status = 'running' THEN
        PERFORM {{ schema }}._notify_batch('job_lost', ARRAY[j.id::text]);
    END IF;

    -- The row as OUT parameters and RETURN NEXT: no statement to start, as
    -- RETURN QUERY's would be (with the subquery below initialised always).
    -- Nothing waits on most chains: then no call of _blocker_dependents.
    id := j.id;
    chain_id := j.chain_id;
    status := 'completed';
    chain_completed := true;
    dependents := NULL;
    IF complete.trace_context IS NOT NULL AND v_waited THEN
        dependents := (SELECT d.dependents FROM {{ schema }}._blocker_dependents(ARRAY[j.chain_id]) AS d);
    END IF;
    unblocked_types := v_unblocked;
    RETURN NEXT;
END;
$$;

-- Batched acknowledgement for workers: completes each job that is running
-- under worker_id at the given attempt, in one transaction, and reports the
-- others instead of failing the batch. outcome: 'completed', 'taken' (another
-- worker holds it or the attempt is stale), 'finished' (no longer running),
-- 'not_found'. unblocked_types: on a completed row, the types of the jobs
-- that this completion made pending (dependents whose last blocker it was),
-- one element per job, sorted (a type repeats: its count is the wake budget),
-- so the worker can announce them without reading job_blocker again.
-- trace_contexts (one per job id, or NULL): as complete's trace_context;
-- dependents, on a completed row whose trace context was given, the edges
-- waiting on its chain (_blocker_dependents).
CREATE OR REPLACE FUNCTION {{ schema }}.complete_jobs(
    worker_id text,
    job_ids uuid [],
    outputs jsonb [] DEFAULT NULL,
    attempts integer [] DEFAULT NULL,
    trace_contexts text [] DEFAULT NULL
)
RETURNS TABLE (job_id uuid, outcome text, unblocked_types text [], dependents jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_done_chains uuid[];
    v_marks uuid[];
    v_done uuid[];
    v_done_traces text[];
    v_dep_chains uuid[] := '{}';
    v_dep_lists jsonb[] := '{}';
    v_unblocked_chains uuid[] := '{}';
    v_unblocked_types text[] := '{}';
BEGIN
    IF complete_jobs.worker_id IS NULL OR complete_jobs.job_ids IS NULL
        OR array_ndims(complete_jobs.job_ids) > 1
        OR array_position(complete_jobs.job_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'complete_jobs needs a worker_id and an array of job ids without NULLs';
    END IF;
    IF cardinality(complete_jobs.outputs) <> cardinality(complete_jobs.job_ids)
        OR cardinality(complete_jobs.attempts) <> cardinality(complete_jobs.job_ids)
        OR cardinality(complete_jobs.trace_contexts) <> cardinality(complete_jobs.job_ids) THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'outputs, attempts and trace_contexts must have one element per job id';
    END IF;

    -- Roots first, in id order (the lock order every writer uses).
    PERFORM 1
    FROM {{ schema }}.job AS r
    WHERE r.id IN (
        SELECT x.chain_id FROM {{ schema }}.job AS x WHERE x.id = ANY(complete_jobs.job_ids)
    )
    ORDER BY r.id
    FOR UPDATE;
    -- Then the other jobs, in id order: renew_leases locks the same way
    -- (roots, then the rest), so a flush and a heartbeat never deadlock.
    PERFORM 1
    FROM {{ schema }}.job AS x
    WHERE x.id = ANY(complete_jobs.job_ids) AND x.chain_index > 0
    ORDER BY x.id
    FOR NO KEY UPDATE;

    WITH req AS (
        SELECT DISTINCT ON (u.id) u.id, u.output, u.attempt, u.tc
        FROM unnest(
            complete_jobs.job_ids,
            coalesce(complete_jobs.outputs, array_fill(NULL::jsonb, ARRAY[cardinality(complete_jobs.job_ids)])),
            coalesce(complete_jobs.attempts, array_fill(NULL::integer, ARRAY[cardinality(complete_jobs.job_ids)])),
            coalesce(complete_jobs.trace_contexts, array_fill(NULL::text, ARRAY[cardinality(complete_jobs.job_ids)]))
        ) WITH ORDINALITY AS u (id, output, attempt, tc, o)
        ORDER BY u.id, u.o
    ),
    done AS (
        UPDATE {{ schema }}.job AS x
        SET
            status = 'completed',
            output = req.output,
            completed_at = now(),
            completed_by = complete_jobs.worker_id,
            leased_by = NULL,
            leased_until = NULL,
            chain_completed_at = CASE WHEN x.chain_index = 0 THEN now() END
        FROM req
        WHERE x.id = req.id
            AND x.status = 'running'
            AND x.leased_by = complete_jobs.worker_id
            AND (req.attempt IS NULL OR x.attempt = req.attempt)
        RETURNING x.id, x.chain_id, x.chain_index, req.tc
    )
    SELECT
        coalesce(array_agg(done.id), '{}'),
        coalesce(array_agg(done.chain_id), '{}'),
        coalesce(array_agg(done.chain_id) FILTER (WHERE done.chain_index > 0), '{}'),
        coalesce(array_agg(done.tc), '{}')
    INTO v_done, v_done_chains, v_marks, v_done_traces
    FROM done;

    IF cardinality(v_done) > 0 THEN
        SELECT coalesce(array_agg(d.chain_id), '{}'), coalesce(array_agg(d.type_name), '{}')
        INTO v_unblocked_chains, v_unblocked_types
        FROM {{ schema }}._chains_completed(
            v_done_chains, v_marks,
            CASE WHEN complete_jobs.trace_contexts IS NOT NULL THEN v_done_traces END
        ) AS d;
        IF complete_jobs.trace_contexts IS NOT NULL AND EXISTS (
            SELECT 1 FROM {{ schema }}.job_blocker AS b WHERE b.blocker_chain_id = ANY(v_done_chains)
        ) THEN
            -- the jobs waiting on the traced completions' chains, in one statement
            SELECT coalesce(array_agg(d.chain_id), '{}'), coalesce(array_agg(d.dependents), '{}')
            INTO v_dep_chains, v_dep_lists
            FROM {{ schema }}._blocker_dependents(ARRAY(
                SELECT u.c FROM unnest(v_done_chains, v_done_traces) AS u (c, tc) WHERE u.tc IS NOT NULL
            )) AS d;
        END IF;
    END IF;

    RETURN QUERY
    SELECT
        o.job_id,
        o.outcome,
        CASE
            WHEN cardinality(v_unblocked_types) = 0 OR o.outcome <> 'completed' THEN '{}'::text[]
            ELSE ARRAY(
                SELECT u.t
                FROM unnest(v_unblocked_chains, v_unblocked_types) AS u (c, t)
                WHERE u.c = v_done_chains[array_position(v_done, o.job_id)]
                ORDER BY u.t
            )
        END,
        CASE
            WHEN cardinality(v_dep_chains) = 0 OR o.outcome <> 'completed' THEN NULL
            ELSE v_dep_lists[array_position(v_dep_chains, v_done_chains[array_position(v_done, o.job_id)])]
        END
    FROM {{ schema }}._batch_outcomes(complete_jobs.job_ids, v_done, 'completed') AS o;
END;
$$;
