-- Retention: prune deletes finished chains that nothing waits on, one
-- small batch per call, so no call holds many locks or runs long; callers
-- (the worker's pruner, `queuert prune`) commit and call again.

CREATE OR REPLACE FUNCTION {{ schema }}.prune(
    older_than interval,
    batch_size integer DEFAULT 1000,
    failed_older_than interval DEFAULT NULL
)
RETURNS TABLE (chains integer, jobs integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_done timestamptz;
    v_failed timestamptz;
    v_roots uuid [];
    v_more uuid [];
    v_locked uuid [];
    v_deleted integer;
BEGIN
    IF prune.older_than IS NULL OR prune.older_than < interval '0'
        OR prune.failed_older_than < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'prune needs older_than (and failed_older_than, when given) of at least 0';
    END IF;
    IF prune.older_than > interval '1000 years' OR prune.failed_older_than > interval '1000 years' THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'older_than and failed_older_than must be at most 1000 years';
    END IF;
    IF prune.batch_size IS NULL OR prune.batch_size NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('batch_size must be between 1 and 100000, got %s', prune.batch_size);
    END IF;
    v_done := now() - prune.older_than;
    v_failed := now() - prune.failed_older_than;

    -- Candidates, oldest first, each through its own partial index: roots
    -- of completed chains (job_completed_chain_idx), cancelled jobs
    -- (job_cancelled_idx, aged by creation: cancelling stamps no time) and,
    -- when asked, failed jobs (job_failed_idx, aged by their last attempt).
    -- A chain another chain has as a blocker stays (its edge would dangle);
    -- it goes in a later call, after its dependents. That test is a probe of
    -- job_blocker_chain_idx per candidate: OFFSET 0 keeps each NOT EXISTS a
    -- subplan, where the planner, misled by a tiny table's statistics, made
    -- it an anti-join reading the whole index.
    v_roots := ARRAY(
        SELECT r.id FROM {{ schema }}.job AS r
        WHERE r.chain_index = 0 AND r.chain_completed_at IS NOT NULL
            AND r.chain_completed_at <= v_done
            AND NOT EXISTS (
                SELECT 1 FROM {{ schema }}.job_blocker AS b
                WHERE b.blocker_chain_id = r.id OFFSET 0
            )
        -- oldest first: the walk of job_completed_chain_idx (without the
        -- order a plan may walk job_pkey instead, every root)
        ORDER BY r.chain_completed_at
        LIMIT prune.batch_size
        FOR UPDATE OF r SKIP LOCKED
    );
    IF cardinality(v_roots) < prune.batch_size THEN
        v_more := ARRAY(
            SELECT DISTINCT j.chain_id FROM {{ schema }}.job AS j
            WHERE j.status = 'cancelled' AND j.created_at <= v_done
                AND NOT EXISTS (
                    SELECT 1 FROM {{ schema }}.job_blocker AS b
                    WHERE b.blocker_chain_id = j.chain_id OFFSET 0
                )
            LIMIT prune.batch_size - cardinality(v_roots)
        );
        v_roots := v_roots || v_more;
    END IF;
    IF v_failed IS NOT NULL AND cardinality(v_roots) < prune.batch_size THEN
        v_more := ARRAY(
            SELECT DISTINCT j.chain_id FROM {{ schema }}.job AS j
            WHERE j.status = 'failed' AND j.last_attempt_at <= v_failed
                AND NOT EXISTS (
                    SELECT 1 FROM {{ schema }}.job_blocker AS b
                    WHERE b.blocker_chain_id = j.chain_id OFFSET 0
                )
            LIMIT prune.batch_size - cardinality(v_roots)
        );
        v_roots := v_roots || v_more;
    END IF;
    IF cardinality(v_roots) = 0 THEN
        chains := 0;
        jobs := 0;
        RETURN NEXT;
        RETURN;
    END IF;

    -- Lock every job of the candidate chains without waiting (a chain
    -- someone is working on is skipped this time), then keep the chains
    -- whose jobs are all ours and that are still finished, with a snapshot
    -- taken under those locks: a retry, a new blocker edge (it locks the
    -- root) or a late continuation that committed meanwhile keeps a chain.
    v_locked := ARRAY(
        SELECT j.id FROM {{ schema }}.job AS j
        WHERE (j.chain_index > 0 AND j.chain_id = ANY(v_roots)) OR (j.chain_index = 0 AND j.id = ANY(v_roots))
        FOR UPDATE OF j SKIP LOCKED
    );
    v_roots := ARRAY(
        SELECT r.id
        FROM {{ schema }}.job AS r
        CROSS JOIN LATERAL {{ schema }}._chain_tail(r.id) AS t
        WHERE r.id = ANY(v_roots) AND r.chain_id = r.id
            AND (
                (r.chain_completed_at IS NOT NULL AND r.chain_completed_at <= v_done)
                OR (t.status = 'cancelled' AND t.created_at <= v_done)
                OR (t.status = 'failed' AND t.last_attempt_at <= v_failed)
            )
            AND NOT EXISTS (
                SELECT 1 FROM {{ schema }}.job_blocker AS b
                WHERE b.blocker_chain_id = r.id OFFSET 0
            )
            AND NOT EXISTS (
                SELECT 1 FROM {{ schema }}._chain_job_ids(r.id) AS m (id)
                WHERE NOT (m.id = ANY(v_locked))
            )
    );

    -- Their own edges go with them (ON DELETE CASCADE on job_id). None
    -- kept: deletes nothing and answers (0, 0).
    DELETE FROM {{ schema }}.job AS j
    WHERE (j.chain_index > 0 AND j.chain_id = ANY(v_roots)) OR (j.chain_index = 0 AND j.id = ANY(v_roots));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    chains := cardinality(v_roots);
    jobs := v_deleted;
    RETURN NEXT;
END;
$$;
