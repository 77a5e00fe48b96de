-- Blockers (fan-in): edges from a job to the chains it waits on, and what a
-- completed chain does to the jobs waiting on it.
--
-- Locking protocol (see docs/engine.md): whoever completes a chain holds its
-- root row FOR UPDATE; whoever adds an edge to a blocker chain holds that
-- chain's root FOR KEY SHARE (roots in id order) and reads "is it complete"
-- in a later statement. Claim and reap use FOR NO KEY UPDATE SKIP LOCKED,
-- which does not conflict with KEY SHARE.

-- Distinct blocker chain ids in first-seen order; NULL elements are QU006.
CREATE OR REPLACE FUNCTION {{ schema }}._distinct_blockers(blockers uuid [])
RETURNS uuid []
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF blockers IS NULL OR cardinality(blockers) = 0 THEN
        RETURN '{}';
    END IF;
    IF array_ndims(blockers) > 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006', MESSAGE = 'blockers must be a one-dimensional array';
    END IF;
    IF array_position(blockers, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006', MESSAGE = 'blockers must not contain NULL';
    END IF;
    RETURN ARRAY(
        SELECT u.b
        FROM unnest(blockers) WITH ORDINALITY AS u (b, o)
        GROUP BY u.b
        ORDER BY min(u.o)
    );
END;
$$;

-- Locks existing blocker chains' roots FOR KEY SHARE (in id order) and
-- returns those that are not complete. A missing chain is QU002.
CREATE OR REPLACE FUNCTION {{ schema }}._lock_blocker_chains(chain_ids uuid [])
RETURNS uuid []
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_locked integer;
    v_missing uuid;
    v_open uuid[];
BEGIN
    IF cardinality(chain_ids) = 0 THEN
        RETURN '{}';
    END IF;
    -- "A root" spelled chain_id = id (job_root_is_chain makes it the same as
    -- chain_index = 0): chain_index = 0 let the planner answer the id lookup
    -- from job_chain_root_created_idx, every root, when it had no statistics.
    PERFORM 1
    FROM {{ schema }}.job AS r
    WHERE r.id = ANY(chain_ids) AND r.chain_id = r.id
    ORDER BY r.id
    FOR KEY SHARE;
    GET DIAGNOSTICS v_locked = ROW_COUNT;
    IF v_locked < cardinality(chain_ids) THEN
        SELECT u.b INTO v_missing
        FROM unnest(chain_ids) WITH ORDINALITY AS u (b, o)
        WHERE NOT EXISTS (
            SELECT 1 FROM {{ schema }}.job AS r
            WHERE r.id = u.b AND r.chain_id = r.id
        )
        ORDER BY u.o
        LIMIT 1;
        RAISE EXCEPTION USING
            ERRCODE = 'QU002',
            MESSAGE = format('blocker chain %s not found', v_missing),
            DETAIL = format('chain_id=%s', v_missing);
    END IF;
    -- A later statement: its fresh snapshot sees a completion that committed
    -- while we waited for the lock.
    SELECT coalesce(array_agg(r.id), '{}') INTO v_open
    FROM {{ schema }}.job AS r
    WHERE r.id = ANY(chain_ids) AND r.chain_completed_at IS NULL;
    RETURN v_open;
END;
$$;

-- Chains that just completed: every job waiting on them loses one open
-- blocker per completed chain; a blocked job with none left becomes pending.
-- Returns the jobs it made pending (one of their completed blocker chains
-- each, and their type), so a batching worker can announce them itself.
--
-- The edges are read first, in a statement of their own (one probe of
-- job_blocker_chain_idx; most completed chains have no dependents and end
-- here), and the dependents are then updated by id. One statement joining
-- job_blocker to job let the planner choose a hash join over the whole job
-- table, or a full scan of another job_blocker index, whenever it believed
-- a table tiny or had no statistics (docs/engine.md, "Plans"). No
-- index-only scans: a full one of the unique (job_id, blocker_chain_id)
-- index, every edge, is what such a planner chose for the edge lookup.
--
-- trace_contexts (one per chain id, or NULL: no telemetry): the traceparent
-- of the span that completed each chain, written on the edges it resolves
-- (job_blocker.resolved_trace_context, migration 0008), so the dependent's
-- attempt can link to it. Read first, written only when there are edges: a
-- completion that nothing waits on (nearly all) costs the same with and
-- without telemetry.
CREATE OR REPLACE FUNCTION {{ schema }}._resolve_dependents(
    chain_ids uuid [], trace_contexts text [] DEFAULT NULL
)
RETURNS TABLE (chain_id uuid, type_name text)
LANGUAGE plpgsql VOLATILE
SET enable_indexonlyscan = off
AS $$
#variable_conflict use_column
DECLARE
    v_dependents uuid[];
    v_by_chains uuid[];
    v_chains uuid[];
    v_types text[];
    v_notified integer;
BEGIN
    SELECT coalesce(array_agg(b.job_id), '{}'), coalesce(array_agg(b.blocker_chain_id), '{}')
    INTO v_dependents, v_by_chains
    FROM {{ schema }}.job_blocker AS b
    WHERE b.blocker_chain_id = ANY(_resolve_dependents.chain_ids);
    IF cardinality(v_dependents) = 0 THEN
        -- the common case: nothing waits on these chains, and no edge to
        -- write a trace context on (no UPDATE planned or run for it)
        RETURN;
    END IF;
    IF _resolve_dependents.trace_contexts IS NOT NULL THEN
        UPDATE {{ schema }}.job_blocker AS b
        SET resolved_trace_context = t.tc
        FROM unnest(_resolve_dependents.chain_ids, _resolve_dependents.trace_contexts) AS t (c, tc)
        WHERE b.blocker_chain_id = t.c;
    END IF;

    WITH dec AS (
        SELECT e.job_id, count(*)::integer AS n, min(e.by_chain::text)::uuid AS by_chain
        FROM unnest(v_dependents, v_by_chains) AS e (job_id, by_chain)
        GROUP BY e.job_id
    ),
    unblocked AS (
        UPDATE {{ schema }}.job AS j
        SET
            open_blockers = j.open_blockers - dec.n,
            status = CASE
                WHEN j.status = 'blocked' AND j.open_blockers = dec.n
                    THEN 'pending'::{{ schema }}.job_status
                ELSE j.status
            END,
            scheduled_at = CASE
                WHEN j.status = 'blocked' AND j.open_blockers = dec.n
                    THEN greatest(j.scheduled_at, now())
                ELSE j.scheduled_at
            END
        FROM dec
        WHERE j.id = ANY(v_dependents) AND j.id = dec.job_id
        RETURNING dec.by_chain, j.type_name, j.status, j.open_blockers
    )
    SELECT coalesce(array_agg(u.by_chain), '{}'), coalesce(array_agg(u.type_name), '{}')
    INTO v_chains, v_types
    FROM unblocked AS u
    WHERE u.status = 'pending' AND u.open_blockers = 0;

    IF cardinality(v_types) > 0 THEN
        SELECT {{ schema }}._notify_batch('job_ready_unblocked', array_agg(DISTINCT t)) INTO v_notified
        FROM unnest(v_types) AS t;
        -- one row per dependent made pending: callers count them per type
        -- (a wake budget of N for N jobs)
        RETURN QUERY SELECT u.c, u.t FROM unnest(v_chains, v_types) AS u (c, t);
    END IF;
END;
$$;

-- The edges waiting on these chains, for the span a completion emits per
-- waiting job (queuert.telemetry): per chain that anything waits on, one
-- row with [{job_id, type_name, trace_context (the edge's: the waiting
-- job's creation), pending (no open blocker left)}] in job id order. One
-- statement for a whole batch: edges by job_blocker_chain_idx (one probe per
-- chain, most find nothing), then each waiting job by its id.
CREATE OR REPLACE FUNCTION {{ schema }}._blocker_dependents(chain_ids uuid [])
RETURNS TABLE (chain_id uuid, dependents jsonb)
LANGUAGE sql STABLE
SET enable_indexonlyscan = off
AS $$
    SELECT b.blocker_chain_id, jsonb_agg(jsonb_build_object(
        'job_id', b.job_id,
        'type_name', d.type_name,
        'trace_context', b.trace_context,
        'pending', d.status = 'pending'
    ) ORDER BY b.job_id)
    FROM {{ schema }}.job_blocker AS b
    CROSS JOIN LATERAL (
        SELECT x.type_name, x.status FROM {{ schema }}.job AS x WHERE x.id = b.job_id
    ) AS d
    WHERE b.blocker_chain_id = ANY(_blocker_dependents.chain_ids)
    GROUP BY b.blocker_chain_id
$$;
