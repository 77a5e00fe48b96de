-- Read functions of the dashboard (queuert.dashboard, docs/dashboard.md).
-- They only read; every action of the dashboard goes through the public API
-- (trigger_jobs, retry_jobs, cancel_chains, delete_chains). SECURITY
-- DEFINER like the rest of the API, so a read-only dashboard role needs
-- EXECUTE on these and nothing else (docs/security.md).

-- Chains newest first (created_at DESC, id DESC), filtered, one page at a
-- time. Keyset: pass the position of the previous page's end as
-- after_created_at / after_id. Never counts the table.
--
-- Roots are walked through job_chain_root_created_idx; a root's last job is
-- probed only when the root-only filters pass (a chain that completed is
-- never probed for an open status). The walk reads at most scan_limit
-- roots, so a filter that rarely matches still answers in bounded time.
-- The failed filter alone reads job_failed_idx instead when failed jobs are
-- few: up to 0.4 * sqrt(max_rows * chains) of them, where reading them all
-- (about 13 us each here) costs less than the walk to fill a page would
-- (about 2 us per root, max_rows * chains / failed roots).
--
-- The last row may be a cursor row (is_cursor = true, only created_at and
-- chain_id set): the position to pass for the next page. It follows a full
-- page, or fewer matches when the walk stopped at scan_limit (older chains
-- were not examined yet). No cursor row: nothing more matches.
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_chains(
    chain_type text DEFAULT NULL,
    statuses {{ schema }}.job_status [] DEFAULT NULL,
    created_from timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL,
    hide_blockers boolean DEFAULT FALSE,
    chain_or_job_id uuid DEFAULT NULL,
    after_created_at timestamptz DEFAULT NULL,
    after_id uuid DEFAULT NULL,
    max_rows integer DEFAULT 50,
    scan_limit integer DEFAULT 10000
)
RETURNS TABLE (
    chain_id uuid,
    type_name text,
    status {{ schema }}.job_status,
    current_job_id uuid,
    current_type_name text,
    job_count integer,
    created_at timestamptz,
    completed_at timestamptz,
    attempt integer,
    scheduled_at timestamptz,
    last_attempt_at timestamptz,
    waited_on boolean,
    is_cursor boolean
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_upper_at timestamptz := 'infinity';
    v_upper_id uuid := 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    v_from timestamptz := coalesce(dashboard_chains.created_from, '-infinity');
    v_statuses {{ schema }}.job_status[] := dashboard_chains.statuses;
    v_hide boolean := coalesce(dashboard_chains.hide_blockers, false);
    v_completed boolean;
    v_open boolean;
    v_sparse boolean := false;
    v_probe integer;
    v_n integer := 0;
    v_row record;
BEGIN
    IF dashboard_chains.max_rows IS NULL OR dashboard_chains.max_rows NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('max_rows must be between 1 and 1000, got %s', dashboard_chains.max_rows);
    END IF;
    IF dashboard_chains.scan_limit IS NULL OR dashboard_chains.scan_limit < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = format('scan_limit must be at least 1, got %s', dashboard_chains.scan_limit);
    END IF;
    IF (dashboard_chains.after_created_at IS NULL) <> (dashboard_chains.after_id IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'after_created_at and after_id go together';
    END IF;
    IF array_ndims(v_statuses) > 1 OR array_position(v_statuses, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'QU006',
            MESSAGE = 'statuses must be a one-dimensional array without NULLs';
    END IF;
    IF cardinality(v_statuses) = 0 THEN
        v_statuses := NULL;
    END IF;

    -- One exclusive upper bound and one inclusive lower bound, always set:
    -- the walk is an index range scan whatever the filters (and one plan).
    IF dashboard_chains.created_before IS NOT NULL THEN
        v_upper_at := dashboard_chains.created_before;
        v_upper_id := '00000000-0000-0000-0000-000000000000';
    END IF;
    IF dashboard_chains.after_id IS NOT NULL
        AND (dashboard_chains.after_created_at, dashboard_chains.after_id)
        < (v_upper_at, v_upper_id) THEN
        v_upper_at := dashboard_chains.after_created_at;
        v_upper_id := dashboard_chains.after_id;
    END IF;

    v_completed := v_statuses IS NULL OR 'completed' = ANY(v_statuses);
    v_open := v_statuses IS NULL OR v_statuses <> '{completed}';

    IF v_statuses = '{failed}' AND dashboard_chains.chain_or_job_id IS NULL THEN
        v_probe := greatest(
            0.4 * sqrt(
                dashboard_chains.max_rows * coalesce({{ schema }}.dashboard_chain_estimate(), 0)
            ),
            1000
        )::integer;
        SELECT count(*) <= v_probe INTO v_sparse
        FROM (
            SELECT 1 FROM {{ schema }}.job AS f WHERE f.status = 'failed' LIMIT v_probe + 1
        ) AS f;
    END IF;

    FOR v_row IN
        WITH candidate AS (
            (
                SELECT r.*
                FROM {{ schema }}.job AS r
                WHERE NOT v_sparse AND dashboard_chains.chain_or_job_id IS NULL
                    AND r.chain_index = 0
                    AND (r.created_at, r.id) < (v_upper_at, v_upper_id)
                    AND r.created_at >= v_from
                ORDER BY r.created_at DESC, r.id DESC
                LIMIT dashboard_chains.scan_limit
            )
            UNION ALL
            SELECT r.*
            FROM {{ schema }}.job AS r
            WHERE dashboard_chains.chain_or_job_id IS NOT NULL
                AND r.chain_index = 0
                AND r.id = (
                    SELECT j.chain_id FROM {{ schema }}.job AS j
                    WHERE j.id = dashboard_chains.chain_or_job_id
                )
                AND (r.created_at, r.id) < (v_upper_at, v_upper_id)
                AND r.created_at >= v_from
            UNION ALL
            -- Only a chain's last job can be failed, so each failed job
            -- names one chain; sorted here, probed below for one page only.
            (
                SELECT r.*
                FROM {{ schema }}.job AS f
                JOIN {{ schema }}.job AS r ON r.id = f.chain_id AND r.chain_index = 0
                WHERE v_sparse AND f.status = 'failed'
                    AND (r.created_at, r.id) < (v_upper_at, v_upper_id)
                    AND r.created_at >= v_from
                    AND (dashboard_chains.chain_type IS NULL OR r.type_name = dashboard_chains.chain_type)
                    AND NOT (v_hide AND EXISTS (
                        SELECT 1 FROM {{ schema }}.job_blocker AS b WHERE b.blocker_chain_id = r.id
                    ))
                ORDER BY r.created_at DESC, r.id DESC
                LIMIT dashboard_chains.max_rows + 1
            )
        )
        SELECT
            s.id AS chain_id, s.type_name, t.status, t.id AS current_job_id,
            t.type_name AS current_type_name, t.chain_index + 1 AS job_count,
            s.created_at, s.chain_completed_at AS completed_at,
            t.attempt, t.scheduled_at, t.last_attempt_at,
            EXISTS (
                SELECT 1 FROM {{ schema }}.job_blocker AS b WHERE b.blocker_chain_id = s.id
            ) AS waited_on
        FROM candidate AS s
        -- The last job: the root itself unless it continued.
        CROSS JOIN LATERAL (
            (
                SELECT l.id, l.type_name, l.status, l.chain_index, l.attempt,
                    l.scheduled_at, l.last_attempt_at
                FROM {{ schema }}.job AS l
                WHERE s.continued_to IS NOT NULL AND l.chain_id = s.id AND l.chain_index > 0
                ORDER BY l.chain_index DESC
                LIMIT 1
            )
            UNION ALL
            SELECT s.id, s.type_name, s.status, s.chain_index, s.attempt,
                s.scheduled_at, s.last_attempt_at
            ORDER BY chain_index DESC
            LIMIT 1
        ) AS t
        WHERE (dashboard_chains.chain_type IS NULL OR s.type_name = dashboard_chains.chain_type)
            AND CASE WHEN s.chain_completed_at IS NOT NULL THEN v_completed ELSE v_open END
            AND (v_statuses IS NULL OR t.status = ANY(v_statuses))
            AND NOT (v_hide AND EXISTS (
                SELECT 1 FROM {{ schema }}.job_blocker AS b WHERE b.blocker_chain_id = s.id
            ))
        ORDER BY s.created_at DESC, s.id DESC
        LIMIT dashboard_chains.max_rows + 1
    LOOP
        v_n := v_n + 1;
        IF v_n > dashboard_chains.max_rows THEN
            -- More follow: the cursor is the last row returned.
            type_name := NULL; status := NULL; current_job_id := NULL;
            current_type_name := NULL; job_count := NULL; completed_at := NULL;
            attempt := NULL; scheduled_at := NULL; last_attempt_at := NULL;
            waited_on := NULL; is_cursor := true;
            RETURN NEXT;
            RETURN;
        END IF;
        chain_id := v_row.chain_id; type_name := v_row.type_name; status := v_row.status;
        current_job_id := v_row.current_job_id; current_type_name := v_row.current_type_name;
        job_count := v_row.job_count; created_at := v_row.created_at;
        completed_at := v_row.completed_at; attempt := v_row.attempt;
        scheduled_at := v_row.scheduled_at; last_attempt_at := v_row.last_attempt_at;
        waited_on := v_row.waited_on; is_cursor := false;
        RETURN NEXT;
    END LOOP;

    -- A short page from a walk that may have stopped at scan_limit: find
    -- where it stopped (an index-only walk of the same range).
    IF NOT v_sparse AND dashboard_chains.chain_or_job_id IS NULL THEN
        SELECT r.created_at, r.id INTO v_row
        FROM {{ schema }}.job AS r
        WHERE r.chain_index = 0
            AND (r.created_at, r.id) < (v_upper_at, v_upper_id)
            AND r.created_at >= v_from
        ORDER BY r.created_at DESC, r.id DESC
        OFFSET dashboard_chains.scan_limit - 1
        LIMIT 1;
        IF FOUND THEN
            chain_id := v_row.id; created_at := v_row.created_at;
            type_name := NULL; status := NULL; current_job_id := NULL;
            current_type_name := NULL; job_count := NULL; completed_at := NULL;
            attempt := NULL; scheduled_at := NULL; last_attempt_at := NULL;
            waited_on := NULL; is_cursor := true;
            RETURN NEXT;
        END IF;
    END IF;
END;
$$;

-- An estimate of the number of chains (the planner's row count of the
-- chain-root index, refreshed by VACUUM and ANALYZE); NULL before the first.
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_chain_estimate()
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END
    FROM pg_catalog.pg_class AS c
    WHERE c.oid = '{{ schema }}.job_chain_root_created_idx'::regclass;
$$;

-- Jobs per type and status (as the stats view) with how many reached that
-- status within `recent` (completed: completed_at; failed: last attempt).
-- One pass over the table, like the stats view.
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_stats(recent interval DEFAULT '1 hour')
RETURNS TABLE (
    type_name text,
    status {{ schema }}.job_status,
    count bigint,
    oldest_due_age interval,
    recent_count bigint
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT
        j.type_name,
        j.status,
        count(*),
        now() - min(j.scheduled_at) FILTER (
            WHERE j.status = 'pending' AND j.scheduled_at <= now()
        ),
        CASE WHEN j.status IN ('completed', 'failed') THEN count(*) FILTER (
            WHERE CASE j.status
                WHEN 'completed' THEN j.completed_at
                WHEN 'failed' THEN j.last_attempt_at
            END >= now() - dashboard_stats.recent
        ) END
    FROM {{ schema }}.job AS j
    GROUP BY j.type_name, j.status
    ORDER BY j.type_name, j.status;
$$;

-- Failed jobs, most recent failure first (job_failed_idx), optionally of
-- chains of one type created in a time range: the overview's recent
-- failures and the "retry all failed" selection.
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_failures(
    chain_type text DEFAULT NULL,
    created_from timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL,
    max_rows integer DEFAULT 10
)
RETURNS TABLE (
    job_id uuid,
    chain_id uuid,
    type_name text,
    chain_type_name text,
    attempt integer,
    last_attempt_at timestamptz,
    last_attempt_error text,
    chain_created_at timestamptz
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    SELECT
        f.id, f.chain_id, f.type_name, f.chain_type_name, f.attempt,
        f.last_attempt_at, f.last_attempt_error, r.created_at
    FROM {{ schema }}.job AS f
    JOIN {{ schema }}.job AS r ON r.id = f.chain_id
    WHERE f.status = 'failed'
        AND (
            dashboard_failures.chain_type IS NULL
            OR f.chain_type_name = dashboard_failures.chain_type
        )
        AND (dashboard_failures.created_from IS NULL OR r.created_at >= dashboard_failures.created_from)
        AND (
            dashboard_failures.created_before IS NULL
            OR r.created_at < dashboard_failures.created_before
        )
    ORDER BY f.last_attempt_at DESC, f.id DESC
    LIMIT greatest(dashboard_failures.max_rows, 0);
$$;

-- Workers seen through their leases: one row per worker holding running
-- jobs (job_lease_idx), with how many of its leases already expired.
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_workers()
RETURNS TABLE (
    worker_id text,
    running bigint,
    expired bigint,
    type_names text [],
    oldest_claim_at timestamptz,
    lease_ends_at timestamptz
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    SELECT
        j.leased_by,
        count(*),
        count(*) FILTER (WHERE j.leased_until < clock_timestamp()),
        array_agg(DISTINCT j.type_name ORDER BY j.type_name),
        min(j.last_attempt_at),
        max(j.leased_until)
    FROM {{ schema }}.job AS j
    WHERE j.status = 'running'
    GROUP BY j.leased_by
    ORDER BY j.leased_by;
$$;

-- One job by id (no row: unknown id).
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_job(job_id uuid)
RETURNS SETOF {{ schema }}.job
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    SELECT j.* FROM {{ schema }}.job AS j WHERE j.id = dashboard_job.job_id;
$$;

-- The blocker edges around a chain: the chains its jobs wait on
-- ('waits_on', job_id = its waiting job) and the jobs of other chains that
-- wait on it ('waited_by', job_id = their waiting job), each with the other
-- chain's type and status, at most max_rows per direction; `total` is the
-- number of edges in that direction.
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_chain_links(
    chain_id uuid, max_rows integer DEFAULT 100
)
RETURNS TABLE (
    direction text,
    job_id uuid,
    job_chain_index integer,
    blocker_position integer,
    other_chain_id uuid,
    other_type_name text,
    other_status {{ schema }}.job_status,
    total bigint
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    (
        SELECT 'waits_on', b.job_id, j.chain_index, b.position, b.blocker_chain_id,
            c.type_name, c.status,
            (
                SELECT count(*)
                FROM {{ schema }}.chain_jobs(dashboard_chain_links.chain_id) AS x
                JOIN {{ schema }}.job_blocker AS y ON y.job_id = x.id
            )
        FROM {{ schema }}.chain_jobs(dashboard_chain_links.chain_id) AS j
        JOIN {{ schema }}.job_blocker AS b ON b.job_id = j.id
        JOIN {{ schema }}.chain AS c ON c.chain_id = b.blocker_chain_id
        ORDER BY j.chain_index, b.position
        LIMIT greatest(dashboard_chain_links.max_rows, 0)
    )
    UNION ALL
    (
        SELECT 'waited_by', b.job_id, j.chain_index, b.position, j.chain_id,
            c.type_name, c.status,
            (
                SELECT count(*) FROM {{ schema }}.job_blocker AS x
                WHERE x.blocker_chain_id = dashboard_chain_links.chain_id
            )
        FROM {{ schema }}.job_blocker AS b
        JOIN {{ schema }}.job AS j ON j.id = b.job_id
        JOIN {{ schema }}.chain AS c ON c.chain_id = j.chain_id
        WHERE b.blocker_chain_id = dashboard_chain_links.chain_id
        ORDER BY j.created_at, j.id
        LIMIT greatest(dashboard_chain_links.max_rows, 0)
    );
$$;

-- The chains outside a set that wait on it: why cancel_chains or
-- delete_chains refuse the set with QU005 (with cascade, the set first
-- takes in, transitively, the chains its jobs wait on, as they do).
CREATE OR REPLACE FUNCTION {{ schema }}.dashboard_dependents(
    chain_ids uuid [], cascade boolean DEFAULT FALSE, max_rows integer DEFAULT 100
)
RETURNS TABLE (
    chain_id uuid,
    type_name text,
    status {{ schema }}.job_status,
    job_id uuid,
    blocker_chain_id uuid
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
    WITH RECURSIVE closure (id) AS (
        SELECT r.id FROM {{ schema }}.job AS r
        WHERE r.id = ANY(dashboard_dependents.chain_ids) AND r.chain_index = 0
        UNION
        SELECT b.blocker_chain_id
        FROM closure AS c
        CROSS JOIN LATERAL {{ schema }}._chain_job_ids(c.id) AS j (id)
        JOIN {{ schema }}.job_blocker AS b ON b.job_id = j.id
        WHERE coalesce(dashboard_dependents.cascade, false)
    ),
    waiting AS (
        SELECT DISTINCT ON (j.chain_id) j.chain_id, b.job_id, b.blocker_chain_id
        FROM {{ schema }}.job_blocker AS b
        JOIN {{ schema }}.job AS j ON j.id = b.job_id
        WHERE b.blocker_chain_id IN (SELECT c.id FROM closure AS c)
            AND j.chain_id NOT IN (SELECT c.id FROM closure AS c)
        ORDER BY j.chain_id, b.job_id, b.blocker_chain_id
    )
    SELECT w.chain_id, c.type_name, c.status, w.job_id, w.blocker_chain_id
    FROM waiting AS w
    JOIN {{ schema }}.chain AS c ON c.chain_id = w.chain_id
    ORDER BY c.created_at DESC, w.chain_id DESC
    LIMIT greatest(dashboard_dependents.max_rows, 0);
$$;
