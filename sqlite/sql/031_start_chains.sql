-- start_chains: many chains from one call, in a fixed number of set-based
-- statements (never one statement per item).
--
-- Items with a type and an input (maybe a priority or trace context) are
-- inserted by a prepared multi-row INSERT; plain items that also carry
-- a schedule by one statement from a JSON array. Items with ids, blockers
-- or dedup keys go through working tables in the connection's temp schema
-- (the PostgreSQL engine's chain_item array): loaded once, resolved by a few
-- statements, inserted, cleared. Unqualified names find temp tables first.

-- name: start_chains_fast
-- The bulk of real batches: items with a type, an input, maybe a priority
-- or trace context, due now. Numbered parameters, each bound once (a root
-- is its own chain, of its own type, due when created): ?1 id, ?2
-- type_name, ?3 input, ?4 priority, ?5 now, ?6 trace_context. start_batch.py
-- runs it with its VALUES row repeated for 100 or 10 items at a time (row k
-- renumbered ?6k+1 .. ?6k+6; Python's executemany costs a reset and a step
-- per row) and once per item for the last few. Rows go in input order.
INSERT INTO {{ schema }}_job (
    id, type_name, chain_id, chain_type_name, chain_index, input, status,
    priority, scheduled_at, created_at, trace_context
)
VALUES (?1, ?2, ?1, ?2, 0, ?3, 'pending', ?4, ?5, ?5, ?6);

-- name: start_chains_plain
-- :items is a JSON array of [id, type_name, input JSON text, priority,
-- schedule_at, schedule_after, trace_context]; rows go in input order, so
-- seq keeps FIFO.
INSERT INTO {{ schema }}_job (
    id, type_name, chain_id, chain_type_name, chain_index, input, status,
    priority, scheduled_at, created_at, trace_context
)
SELECT
    json_extract(i.value, '$[0]') AS id,
    json_extract(i.value, '$[1]') AS type_name,
    json_extract(i.value, '$[0]') AS chain_id,
    json_extract(i.value, '$[1]') AS chain_type_name,
    0 AS chain_index,
    json_extract(i.value, '$[2]') AS input,
    'pending' AS status,
    json_extract(i.value, '$[3]') AS priority,
    max(coalesce(
        json_extract(i.value, '$[4]'),
        :now + json_extract(i.value, '$[5]'),
        :now
    ), :now) AS scheduled_at,
    :now AS created_at,
    json_extract(i.value, '$[6]') AS trace_context
FROM json_each(:items) AS i
ORDER BY i.key
RETURNING id, scheduled_at;

-- name: batch_item_table
CREATE TEMP TABLE IF NOT EXISTS {{ schema }}_batch_item (
    ord INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    id_given INTEGER NOT NULL,
    type_name TEXT NOT NULL,
    input TEXT,
    scheduled_at INTEGER NOT NULL,
    dedup_key TEXT,
    dedup_scope TEXT NOT NULL,
    dedup_window INTEGER,
    priority INTEGER NOT NULL,
    trace_context TEXT,
    resolved_id TEXT NOT NULL,
    deduplicated INTEGER NOT NULL DEFAULT 0,
    existing_status TEXT,
    existing_scheduled_at INTEGER,
    existing_created_at INTEGER,
    open_blockers INTEGER NOT NULL DEFAULT 0,
    blocker_count INTEGER NOT NULL DEFAULT 0
);

-- name: batch_item_id_index
-- (an index on a temp table is created in the temp schema)
CREATE INDEX IF NOT EXISTS {{ schema }}_batch_item_id
ON {{ schema }}_batch_item (id);

-- name: batch_item_resolved_index
CREATE INDEX IF NOT EXISTS {{ schema }}_batch_item_resolved
ON {{ schema }}_batch_item (resolved_id);

-- name: batch_edge_table
CREATE TEMP TABLE IF NOT EXISTS {{ schema }}_batch_edge (
    ord INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    ref TEXT NOT NULL,
    chain_id TEXT,
    internal INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ord, pos)
) WITHOUT ROWID;

-- name: batch_clear_items
DELETE FROM {{ schema }}_batch_item;

-- name: batch_clear_edges
DELETE FROM {{ schema }}_batch_edge;

-- name: batch_add_item
INSERT INTO {{ schema }}_batch_item (
    ord, id, id_given, type_name, input, scheduled_at, dedup_key, dedup_scope,
    dedup_window, priority, trace_context, resolved_id
)
VALUES (
    :ord, :id, :id_given, :type_name, :input,
    max(coalesce(:schedule_at, :now + :schedule_after, :now), :now),
    :dedup_key, :dedup_scope, :dedup_window, :priority, :trace_context, :id
);

-- name: batch_add_edge
INSERT INTO {{ schema }}_batch_edge (ord, pos, ref) VALUES (:ord, :pos, :ref);

-- name: batch_repeated_id
-- One id given to two items.
SELECT i.id
FROM {{ schema }}_batch_item AS i
WHERE i.id_given
GROUP BY i.id
HAVING count(*) > 1
ORDER BY min(i.ord)
LIMIT 1;

-- name: batch_dedup
-- The first item of each (type, dedup key) looks for an existing chain (as
-- find_dedup_match); later items with that key resolve to whatever the
-- first did.
WITH firsts AS (
    SELECT i.type_name, i.dedup_key, min(i.ord) AS ord
    FROM {{ schema }}_batch_item AS i
    WHERE i.dedup_key IS NOT NULL
    GROUP BY i.type_name, i.dedup_key
),

resolved AS (
    SELECT
        f.type_name,
        f.dedup_key,
        f.ord AS first_ord,
        fi.id AS first_id,
        (
            SELECT r.id
            FROM {{ schema }}_job AS r
            INNER JOIN {{ schema }}_chain AS c ON r.id = c.chain_id
            WHERE
                r.chain_type_name = fi.type_name
                AND r.dedup_key = fi.dedup_key
                AND r.chain_index = 0
                AND (fi.dedup_window IS NULL OR r.created_at >= :now - fi.dedup_window)
                AND (fi.dedup_scope = 'any' OR c.status NOT IN ('completed', 'cancelled'))
            ORDER BY r.created_at DESC, r.seq DESC
            LIMIT 1
        ) AS match_id
    FROM firsts AS f
    INNER JOIN {{ schema }}_batch_item AS fi ON f.ord = fi.ord
)

UPDATE {{ schema }}_batch_item AS i
SET
    resolved_id = coalesce(r.match_id, r.first_id),
    deduplicated = (r.match_id IS NOT NULL OR i.ord > r.first_ord)
FROM resolved AS r
WHERE i.type_name = r.type_name AND i.dedup_key = r.dedup_key;

-- name: batch_existing
-- What an item that resolved to an existing chain returns: that chain's
-- current status, its root's scheduled_at and created_at.
UPDATE {{ schema }}_batch_item AS i
SET
    existing_status = c.status,
    existing_scheduled_at = r.scheduled_at,
    existing_created_at = r.created_at
FROM {{ schema }}_job AS r
INNER JOIN {{ schema }}_chain AS c ON r.id = c.chain_id
WHERE i.deduplicated AND i.resolved_id = r.id;

-- name: batch_resolve_edges
-- A blocker naming an item of the batch by its given id means the chain
-- that item resolved to.
UPDATE {{ schema }}_batch_edge AS e
SET chain_id = coalesce((
    SELECT s.resolved_id FROM {{ schema }}_batch_item AS s
    WHERE s.id_given AND s.id = e.ref
), e.ref);

-- name: batch_bad_edge
-- A blocker naming the item itself or a later one (QU002).
SELECT e.ord, e.ref
FROM {{ schema }}_batch_edge AS e
INNER JOIN {{ schema }}_batch_item AS i ON e.ord = i.ord
INNER JOIN {{ schema }}_batch_item AS s ON s.id_given AND e.ref = s.id
WHERE NOT i.deduplicated AND s.ord >= e.ord
ORDER BY e.ord, e.pos
LIMIT 1;

-- name: batch_drop_edges
-- Edges of items that deduplicated (they insert nothing), and repeats of a
-- chain in one item's blockers (its first position stays).
DELETE FROM {{ schema }}_batch_edge
WHERE
    ord IN (
        SELECT i.ord FROM {{ schema }}_batch_item AS i
        WHERE i.deduplicated
    )
    OR EXISTS (
        SELECT 1 FROM {{ schema }}_batch_edge AS e2
        WHERE
            e2.ord = {{ schema }}_batch_edge.ord
            AND e2.chain_id = {{ schema }}_batch_edge.chain_id
            AND e2.pos < {{ schema }}_batch_edge.pos
    );

-- name: batch_mark_internal
-- Edges to chains this batch creates.
UPDATE {{ schema }}_batch_edge
SET internal = chain_id IN (
    SELECT i.resolved_id FROM {{ schema }}_batch_item AS i
    WHERE NOT i.deduplicated
);

-- name: batch_missing_blocker
-- A blocker outside the batch that is not a chain (QU002).
SELECT e.chain_id
FROM {{ schema }}_batch_edge AS e
WHERE
    NOT e.internal
    AND NOT EXISTS (
        SELECT 1 FROM {{ schema }}_job AS r
        WHERE r.id = e.chain_id AND r.chain_index = 0
    )
ORDER BY e.ord, e.pos
LIMIT 1;

-- name: batch_existing_id
-- A given id that a job already has (QU006).
SELECT i.resolved_id
FROM {{ schema }}_batch_item AS i
INNER JOIN {{ schema }}_job AS j ON i.resolved_id = j.id
WHERE i.id_given AND NOT i.deduplicated
ORDER BY i.ord
LIMIT 1;

-- name: batch_count_open
-- Open blockers of each new item: chains of the batch, and chains outside
-- it that are not complete; and all its blockers.
UPDATE {{ schema }}_batch_item AS i
SET blocker_count = (
    SELECT count(*) FROM {{ schema }}_batch_edge AS e
    WHERE e.ord = i.ord
),
open_blockers = (
    SELECT count(*) FROM {{ schema }}_batch_edge AS e
    WHERE
        e.ord = i.ord
        AND (
            e.internal
            OR EXISTS (
                SELECT 1 FROM {{ schema }}_job AS r
                WHERE r.id = e.chain_id AND r.chain_completed_at IS NULL
            )
        )
)
WHERE NOT i.deduplicated;

-- name: batch_insert_jobs
INSERT INTO {{ schema }}_job (
    id, type_name, chain_id, chain_type_name, chain_index, input, status,
    priority, scheduled_at, created_at, dedup_key, trace_context, open_blockers,
    blocker_count
)
SELECT
    i.resolved_id AS id,
    i.type_name,
    i.resolved_id AS chain_id,
    i.type_name AS chain_type_name,
    0 AS chain_index,
    i.input,
    CASE WHEN i.open_blockers > 0 THEN 'blocked' ELSE 'pending' END AS status,
    i.priority,
    i.scheduled_at,
    :now AS created_at,
    i.dedup_key,
    i.trace_context,
    i.open_blockers,
    i.blocker_count
FROM {{ schema }}_batch_item AS i
WHERE NOT i.deduplicated
ORDER BY i.ord;

-- name: batch_insert_edges
INSERT INTO {{ schema }}_job_blocker (job_id, position, blocker_chain_id, trace_context)
SELECT i.resolved_id, e.pos, e.chain_id, i.trace_context
FROM {{ schema }}_batch_edge AS e
INNER JOIN {{ schema }}_batch_item AS i ON e.ord = i.ord
ORDER BY e.ord, e.pos;

-- name: batch_result
-- One row per item, in input order: the chain it created or resolved to.
WITH fresh AS (
    SELECT
        n.resolved_id,
        n.scheduled_at,
        CASE WHEN n.open_blockers > 0 THEN 'blocked' ELSE 'pending' END AS status
    FROM {{ schema }}_batch_item AS n
    WHERE NOT n.deduplicated
)

SELECT
    i.ord,
    i.resolved_id,
    i.type_name,
    coalesce(f.status, i.existing_status) AS status,
    coalesce(f.scheduled_at, i.existing_scheduled_at) AS scheduled_at,
    CASE WHEN f.resolved_id IS NOT NULL THEN :now ELSE i.existing_created_at END AS created_at,
    i.deduplicated
FROM {{ schema }}_batch_item AS i
LEFT JOIN fresh AS f ON i.resolved_id = f.resolved_id
ORDER BY i.ord;
