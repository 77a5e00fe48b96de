-- cancel_chains and delete_chains: whole chains, optionally with the chains
-- they wait on (cascade), refused while anyone outside depends on them.
-- Writers hold SQLite's single write lock, so there is no lock order to
-- keep and no deadlock to retry, unlike PostgreSQL.

-- name: chain_set
-- The chains among :chain_ids (roots; unknown, non-root and NULL ids are
-- skipped).
SELECT r.id
FROM {{ schema }}_job AS r
WHERE r.id IN (SELECT c.value FROM json_each(:chain_ids) AS c) AND r.chain_index = 0;

-- name: chain_set_cascade
-- The same, plus, transitively, every chain a job of the set waits on (the
-- children a parent fanned out to).
WITH RECURSIVE closure (id) AS (
    SELECT r.id
    FROM {{ schema }}_job AS r
    WHERE r.id IN (SELECT c.value FROM json_each(:chain_ids) AS c) AND r.chain_index = 0
    UNION
    SELECT b.blocker_chain_id
    FROM closure AS c
    INNER JOIN {{ schema }}_job_blocker AS b ON c.id = b.job_id
    UNION
    SELECT b.blocker_chain_id
    FROM closure AS c
    INNER JOIN {{ schema }}_job AS l ON c.id = l.chain_id AND l.chain_index > 0
    INNER JOIN {{ schema }}_job_blocker AS b ON l.id = b.job_id
)

SELECT closure.id FROM closure;

-- name: chain_set_dependent
-- A job outside the set, whatever its status, that has a chain of the set
-- as a blocker (QU005).
SELECT b.blocker_chain_id, b.job_id
FROM {{ schema }}_job_blocker AS b
INNER JOIN {{ schema }}_job AS j ON b.job_id = j.id
WHERE
    b.blocker_chain_id IN (SELECT s.value FROM json_each(:chain_set) AS s)
    AND j.chain_id NOT IN (SELECT s.value FROM json_each(:chain_set) AS s)
ORDER BY b.blocker_chain_id, b.job_id
LIMIT 1;

-- name: chain_set_running
-- The running jobs of the set's chains (their workers lose them).
SELECT j.id
FROM {{ schema }}_job AS j
WHERE
    j.status = 'running'
    AND (
        j.id IN (SELECT s.value FROM json_each(:chain_set) AS s)
        OR (j.chain_id IN (SELECT s.value FROM json_each(:chain_set) AS s) AND j.chain_index > 0)
    );

-- name: cancel_chains
-- Every job of the set's chains that is not completed or cancelled.
UPDATE {{ schema }}_job
SET status = 'cancelled', leased_by = NULL, leased_until = NULL
WHERE
    status NOT IN ('completed', 'cancelled')
    AND (
        id IN (SELECT s.value FROM json_each(:chain_set) AS s)
        OR (chain_id IN (SELECT s.value FROM json_each(:chain_set) AS s) AND chain_index > 0)
    )
RETURNING chain_id;

-- name: delete_chain_edges
-- Edges first: the set may wait on itself, and an enforced foreign key on
-- blocker_chain_id must never see a dangling edge.
DELETE FROM {{ schema }}_job_blocker
WHERE job_id IN (
    SELECT j.id FROM {{ schema }}_job AS j
    WHERE
        j.id IN (SELECT s.value FROM json_each(:chain_set) AS s)
        OR (j.chain_id IN (SELECT s.value FROM json_each(:chain_set) AS s) AND j.chain_index > 0)
);

-- name: delete_chains
DELETE FROM {{ schema }}_job
WHERE
    id IN (SELECT s.value FROM json_each(:chain_set) AS s)
    OR (chain_id IN (SELECT s.value FROM json_each(:chain_set) AS s) AND chain_index > 0);
