-- claim: hand due pending jobs to a worker, in one statement.

CREATE OR REPLACE FUNCTION {{ schema }}.claim(
    worker_id text,
    type_names text [] DEFAULT NULL,
    max_jobs integer DEFAULT 1,
    lease interval DEFAULT NULL
)
RETURNS TABLE (
    id uuid,
    type_name text,
    chain_id uuid,
    chain_type_name text,
    chain_index integer,
    input jsonb,
    output jsonb,
    status {{ schema }}.job_status,
    priority integer,
    attempt integer,
    scheduled_at timestamptz,
    created_at timestamptz,
    completed_at timestamptz,
    completed_by text,
    leased_by text,
    leased_until timestamptz,
    last_attempt_at timestamptz,
    last_attempt_error text,
    continued_to uuid,
    dedup_key text,
    trace_context text,
    blockers jsonb,
    -- the FIFO tiebreak, so a worker holding jobs from several claims can
    -- start them in claim order (priority DESC, scheduled_at, seq)
    seq bigint
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
-- The candidate scan must walk job_claim_idx in claim order and stop after
-- max_jobs rows, whatever the statistics say: with sorting off, that walk is
-- the only plan left (docs/engine.md, "Plans").
SET enable_sort = off
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids uuid[];
    v_limited text[];
BEGIN
    IF claim.worker_id IS NULL OR claim.worker_id = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006', MESSAGE = 'claim needs a worker_id';
    END IF;
    IF claim.max_jobs < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('max_jobs must be at least 1, got %s', claim.max_jobs);
    END IF;
    IF claim.lease <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('lease must be positive, got %s', claim.lease);
    END IF;
    IF claim.lease > interval '1000 years' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('lease must be at most 1000 years, got %s', claim.lease);
    END IF;

    -- Types with a limit (set_job_type's max_running, rate_limit) take
    -- tokens as well (sql/018_claim_limits.sql); without any, this is one
    -- probe of an empty partial index and the plain scan below.
    v_limited := ARRAY(
        SELECT t.type_name FROM {{ schema }}.job_type AS t
        WHERE (t.max_running IS NOT NULL OR t.rate_limit IS NOT NULL)
            AND (claim.type_names IS NULL OR t.type_name = ANY(claim.type_names))
    );

    -- Candidates first, in a statement of their own per filter shape: each
    -- keeps a simple generic plan (an index scan of job_claim_idx), where one
    -- statement with "type_names IS NULL OR ..." is re-planned on every call.
    IF cardinality(v_limited) > 0 THEN
        v_ids := {{ schema }}._claim_limited(claim.type_names, coalesce(claim.max_jobs, 1), v_limited);
    ELSIF claim.type_names IS NULL THEN
        v_ids := ARRAY(
            SELECT j.id
            FROM {{ schema }}.job AS j
            WHERE j.status = 'pending' AND j.scheduled_at <= now()
            ORDER BY j.priority DESC, j.scheduled_at, j.seq
            LIMIT coalesce(claim.max_jobs, 1)
            FOR NO KEY UPDATE SKIP LOCKED
        );
    ELSE
        v_ids := ARRAY(
            SELECT j.id
            FROM {{ schema }}.job AS j
            WHERE j.status = 'pending' AND j.scheduled_at <= now()
                AND j.type_name = ANY(claim.type_names)
            ORDER BY j.priority DESC, j.scheduled_at, j.seq
            LIMIT coalesce(claim.max_jobs, 1)
            FOR NO KEY UPDATE SKIP LOCKED
        );
    END IF;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    -- Most claimed jobs wait on nothing: then the statement without the
    -- blockers' subquery, whose executor start-up (a subplan of about ten
    -- nodes) cost as much as the rest of the claim whether it found an edge
    -- or not. A job's edges are written with the job, never later.
    IF EXISTS (SELECT 1 FROM {{ schema }}.job_blocker AS b WHERE b.job_id = ANY(v_ids)) THEN
        RETURN QUERY
        WITH claimed AS (
            UPDATE {{ schema }}.job AS j
            SET
                status = 'running',
                attempt = j.attempt + 1,
                leased_by = claim.worker_id,
                leased_until = clock_timestamp() + coalesce(
                    claim.lease,
                    (SELECT t.lease FROM {{ schema }}.job_type AS t WHERE t.type_name = j.type_name),
                    interval '60 seconds'
                )
            WHERE j.id = ANY(v_ids)
            RETURNING j.*
        )
        SELECT
            c.id, c.type_name, c.chain_id, c.chain_type_name, c.chain_index,
            c.input, c.output, c.status, c.priority, c.attempt, c.scheduled_at,
            c.created_at, c.completed_at, c.completed_by, c.leased_by,
            c.leased_until, c.last_attempt_at, c.last_attempt_error,
            c.continued_to, c.dedup_key, c.trace_context,
            coalesce((
                -- job_blocker by job_id and one lateral tail lookup per edge: no
                -- join the planner could serve with another index in blocker
                -- order (it did, for a job_blocker it believed tiny). A chain's
                -- type is every job's chain_type_name.
                SELECT jsonb_agg(jsonb_build_object(
                    'chain_id', b.blocker_chain_id,
                    'type_name', tail.chain_type_name,
                    'output', tail.output,
                    -- for tracing: the blocker chain's trace and when it completed
                    'trace_context', tail.chain_trace_context,
                    'completed_at', tail.completed_at,
                    -- the span that completed it, when it resolved this edge
                    -- (migration 0008)
                    'resolved_trace_context', b.resolved_trace_context
                ) ORDER BY b.position)
                FROM {{ schema }}.job_blocker AS b
                CROSS JOIN LATERAL {{ schema }}._chain_tail(b.blocker_chain_id) AS tail
                WHERE b.job_id = c.id
            ), '[]'::jsonb),
            c.seq
        FROM claimed AS c
        ORDER BY c.priority DESC, c.scheduled_at, c.seq;
    ELSE
        RETURN QUERY
        WITH claimed AS (
            UPDATE {{ schema }}.job AS j
            SET
                status = 'running',
                attempt = j.attempt + 1,
                leased_by = claim.worker_id,
                leased_until = clock_timestamp() + coalesce(
                    claim.lease,
                    (SELECT t.lease FROM {{ schema }}.job_type AS t WHERE t.type_name = j.type_name),
                    interval '60 seconds'
                )
            WHERE j.id = ANY(v_ids)
            RETURNING j.*
        )
        SELECT
            c.id, c.type_name, c.chain_id, c.chain_type_name, c.chain_index,
            c.input, c.output, c.status, c.priority, c.attempt, c.scheduled_at,
            c.created_at, c.completed_at, c.completed_by, c.leased_by,
            c.leased_until, c.last_attempt_at, c.last_attempt_error,
            c.continued_to, c.dedup_key, c.trace_context,
            '[]'::jsonb,
            c.seq
        FROM claimed AS c
        ORDER BY c.priority DESC, c.scheduled_at, c.seq;
    END IF;
END;
$$;

-- When the next pending job of these types becomes due (NULL if none), so an
-- idle worker can sleep exactly that long. A loose index scan of
-- job_claim_idx: for each distinct priority (a few), the first entry in
-- due order.
CREATE OR REPLACE FUNCTION {{ schema }}.next_due_at(type_names text [] DEFAULT NULL)
RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    WITH RECURSIVE priorities (priority) AS (
        (
            SELECT j.priority FROM {{ schema }}.job AS j
            WHERE j.status = 'pending'
            ORDER BY j.priority DESC
            LIMIT 1
        )
        UNION ALL
        SELECT (
            SELECT j.priority FROM {{ schema }}.job AS j
            WHERE j.status = 'pending' AND j.priority < p.priority
            ORDER BY j.priority DESC
            LIMIT 1
        )
        FROM priorities AS p
        WHERE p.priority IS NOT NULL
    )
    SELECT min((
        SELECT j.scheduled_at FROM {{ schema }}.job AS j
        WHERE j.status = 'pending' AND j.priority = p.priority
            AND (next_due_at.type_names IS NULL OR j.type_name = ANY(next_due_at.type_names))
        ORDER BY j.priority DESC, j.scheduled_at
        LIMIT 1
    ))
    FROM priorities AS p
    WHERE p.priority IS NOT NULL;
$$;
