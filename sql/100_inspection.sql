-- Read-only views and functions for psql users, the CLI and the dashboard.

-- One row per chain; its status is the status of its last job.
CREATE OR REPLACE VIEW {{ schema }}.chain AS
SELECT
    r.id AS chain_id,
    r.type_name,
    t.status,
    t.id AS current_job_id,
    t.type_name AS current_type_name,
    t.chain_index + 1 AS job_count,
    r.created_at,
    r.chain_completed_at AS completed_at,
    CASE WHEN r.chain_completed_at IS NOT NULL THEN t.output END AS output
FROM {{ schema }}.job AS r
-- The last job: a later one (job_chain_position_idx holds positions > 0
-- only) or else the root itself. Spelled out rather than _chain_tail: the
-- view's readers need no EXECUTE on private functions.
CROSS JOIN LATERAL (
    (
        SELECT l.id, l.type_name, l.status, l.chain_index, l.output
        FROM {{ schema }}.job AS l
        WHERE l.chain_id = r.id AND l.chain_index > 0
        ORDER BY l.chain_index DESC
        LIMIT 1
    )
    UNION ALL
    SELECT r.id, r.type_name, r.status, r.chain_index, r.output
    ORDER BY chain_index DESC  -- noqa: RF02
    LIMIT 1
) AS t
WHERE r.chain_index = 0;

-- One row per type and status; oldest_due_age is how long the oldest due
-- pending job has waited.
CREATE OR REPLACE VIEW {{ schema }}.stats AS
SELECT
    j.type_name,
    j.status,
    count(*) AS count,
    now() - min(j.scheduled_at) FILTER (
        WHERE j.status = 'pending' AND j.scheduled_at <= now()
    ) AS oldest_due_age
FROM {{ schema }}.job AS j
GROUP BY j.type_name, j.status;

CREATE OR REPLACE FUNCTION {{ schema }}.chain_jobs(chain_id uuid)
RETURNS SETOF {{ schema }}.job
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- The root by id, later jobs through job_chain_position_idx.
    SELECT j.*
    FROM {{ schema }}.job AS j
    WHERE (j.chain_index > 0 AND j.chain_id = chain_jobs.chain_id)
        OR (j.chain_index = 0 AND j.id = chain_jobs.chain_id)
    ORDER BY j.chain_index;
$$;
