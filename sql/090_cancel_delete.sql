-- cancel_chains and delete_chains: whole chains, optionally with the chains
-- they wait on (cascade), refused while anyone outside depends on them.

-- Resolves the set of chains to act on and locks their roots FOR UPDATE in
-- id order. Non-root ids, unknown ids and NULL elements are skipped. With
-- cascade, adds transitively every chain that a job of the set waits on.
-- Raises QU005 if a job outside the set has one of them as a blocker.
CREATE OR REPLACE FUNCTION {{ schema }}._lock_chain_set(
    chain_ids uuid [], cascade boolean, action text
)
RETURNS uuid []
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_set uuid[];
    v_more uuid[];
    v_order uuid[];
    v_bad record;
BEGIN
    IF chain_ids IS NULL OR array_ndims(chain_ids) > 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('%s needs a one-dimensional array of chain ids', action);
    END IF;
    v_set := ARRAY(
        SELECT r.id FROM {{ schema }}.job AS r
        WHERE r.id = ANY(chain_ids) AND r.chain_id = r.id  -- roots (see _lock_blocker_chains)
        ORDER BY r.id
    );
    IF NOT coalesce(cascade, false) THEN
        PERFORM 1 FROM {{ schema }}.job AS r WHERE r.id = ANY(v_set) ORDER BY r.id FOR UPDATE;
    ELSE
        -- Blocker chains are locked before the chains that wait on them
        -- (deepest first): the order a completion takes (its own root, then
        -- its dependents' rows), so cascading never deadlocks against it.
        v_more := v_set;
        v_set := '{}';
        WHILE cardinality(v_more) > 0 LOOP
            v_order := ARRAY(
                WITH RECURSIVE closure (id, depth, path) AS (
                    SELECT m.id, 0, ARRAY[m.id] FROM unnest(v_more) AS m (id)
                    UNION ALL
                    SELECT b.blocker_chain_id, c.depth + 1, c.path || b.blocker_chain_id
                    FROM closure AS c
                    CROSS JOIN LATERAL {{ schema }}._chain_job_ids(c.id) AS j (id)
                    JOIN {{ schema }}.job_blocker AS b ON b.job_id = j.id
                    WHERE NOT (b.blocker_chain_id = ANY(c.path))
                )
                SELECT c.id FROM closure AS c
                WHERE NOT (c.id = ANY(v_set))
                GROUP BY c.id
                ORDER BY max(c.depth) DESC, c.id
            );
            PERFORM 1
            FROM {{ schema }}.job AS r
            JOIN unnest(v_order) WITH ORDINALITY AS o (id, n) ON o.id = r.id
            ORDER BY o.n
            FOR UPDATE OF r;
            v_set := v_set || v_order;
            -- Edges added before our locks were taken: take their chains too.
            v_more := ARRAY(
                WITH RECURSIVE closure (id) AS (
                    SELECT unnest(v_set)
                    UNION
                    SELECT b.blocker_chain_id
                    FROM closure AS c
                    CROSS JOIN LATERAL {{ schema }}._chain_job_ids(c.id) AS j (id)
                    JOIN {{ schema }}.job_blocker AS b ON b.job_id = j.id
                )
                SELECT c.id FROM closure AS c WHERE NOT (c.id = ANY(v_set))
            );
        END LOOP;
    END IF;

    SELECT b.blocker_chain_id, b.job_id INTO v_bad
    FROM {{ schema }}.job_blocker AS b
    JOIN {{ schema }}.job AS j ON j.id = b.job_id
    WHERE b.blocker_chain_id = ANY(v_set) AND NOT (j.chain_id = ANY(v_set))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'QU005',
            MESSAGE = format(
                'cannot %s chain %s: job %s outside the set waits on it',
                action, v_bad.blocker_chain_id, v_bad.job_id
            ),
            DETAIL = format('chain_id=%s, job_id=%s', v_bad.blocker_chain_id, v_bad.job_id);
    END IF;
    RETURN v_set;
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}.cancel_chains(
    chain_ids uuid [], cascade boolean DEFAULT false
)
RETURNS TABLE (chain_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_set uuid[];
    v_chains uuid[];
    v_lost uuid[];
    v_notified integer;
BEGIN
    v_set := {{ schema }}._lock_chain_set(cancel_chains.chain_ids, cancel_chains.cascade, 'cancel');

    WITH target AS (
        SELECT j.id, j.status
        FROM {{ schema }}.job AS j
        WHERE ((j.chain_index > 0 AND j.chain_id = ANY(v_set)) OR (j.chain_index = 0 AND j.id = ANY(v_set))) AND j.status NOT IN ('completed', 'cancelled')
        ORDER BY j.chain_index > 0, j.id
        FOR NO KEY UPDATE
    ),
    cancelled AS (
        UPDATE {{ schema }}.job AS j
        SET status = 'cancelled', leased_by = NULL, leased_until = NULL
        FROM target AS t
        WHERE j.id = t.id
        RETURNING j.id, j.chain_id, t.status AS previous_status
    )
    SELECT
        coalesce(array_agg(DISTINCT c.chain_id), '{}'),
        coalesce(array_agg(c.id) FILTER (WHERE c.previous_status = 'running'), '{}')
    INTO v_chains, v_lost
    FROM cancelled AS c;

    SELECT {{ schema }}._notify_batch('job_lost', array_agg(l::text)) INTO v_notified
    FROM unnest(v_lost) AS l;

    RETURN QUERY
    SELECT c FROM unnest(v_chains) AS c
    ORDER BY array_position(cancel_chains.chain_ids, c) NULLS LAST, c;
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}.delete_chains(
    chain_ids uuid [], cascade boolean DEFAULT false
)
RETURNS TABLE (chain_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_set uuid[];
    v_lost uuid[];
    v_notified integer;
BEGIN
    v_set := {{ schema }}._lock_chain_set(delete_chains.chain_ids, delete_chains.cascade, 'delete');
    IF cardinality(v_set) = 0 THEN
        RETURN;
    END IF;

    -- Edges first: the set may wait on itself, and the foreign key on
    -- blocker_chain_id must never see a dangling edge.
    DELETE FROM {{ schema }}.job_blocker AS b
    USING {{ schema }}.job AS j
    WHERE b.job_id = j.id AND ((j.chain_index > 0 AND j.chain_id = ANY(v_set)) OR (j.chain_index = 0 AND j.id = ANY(v_set)));

    WITH deleted AS (
        DELETE FROM {{ schema }}.job AS j
        WHERE ((j.chain_index > 0 AND j.chain_id = ANY(v_set)) OR (j.chain_index = 0 AND j.id = ANY(v_set)))
        RETURNING j.id, j.status
    )
    SELECT coalesce(array_agg(d.id) FILTER (WHERE d.status = 'running'), '{}')
    INTO v_lost
    FROM deleted AS d;

    SELECT {{ schema }}._notify_batch('job_lost', array_agg(l::text)) INTO v_notified
    FROM unnest(v_lost) AS l;

    RETURN QUERY
    SELECT c FROM unnest(v_set) AS c
    ORDER BY array_position(delete_chains.chain_ids, c) NULLS LAST, c;
END;
$$;
