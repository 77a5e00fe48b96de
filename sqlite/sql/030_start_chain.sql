-- start_chain: a chain's root job, created in the caller's transaction.

-- name: start_chain_plain
-- The common start (no id, schedule, blockers or dedup key; priority 0): a
-- pending root due now. Positional parameters: id, type_name, id again,
-- type_name again, input, now (due), now (created), trace_context.
INSERT INTO {{ schema }}_job (
    id, type_name, chain_id, chain_type_name, chain_index, input, status,
    scheduled_at, created_at, trace_context
)
VALUES (?, ?, ?, ?, 0, ?, 'pending', ?, ?, ?);

-- name: start_chain
-- The root job. Due at schedule_at (a past one clamped to now) or after
-- schedule_after from now, else now; blocked while a blocker chain is
-- incomplete. A given id that exists already inserts nothing (QU006).
INSERT INTO {{ schema }}_job (
    id, type_name, chain_id, chain_type_name, chain_index, input, status,
    priority, scheduled_at, created_at, dedup_key, trace_context, open_blockers, blocker_count
)
VALUES (
    :id, :type_name, :id, :type_name, 0, :input,
    CASE WHEN :open_blockers > 0 THEN 'blocked' ELSE 'pending' END,
    :priority,
    max(coalesce(:schedule_at, :now + :schedule_after, :now), :now),
    :now, :dedup_key, :trace_context, :open_blockers, :blocker_count
)
ON CONFLICT (id) DO NOTHING
RETURNING status, scheduled_at;

-- name: find_dedup_match
-- The chain a start with this dedup key resolves to, if any: the most
-- recently created root of that type and key within the window whose chain
-- matches the scope ('incomplete': not completed and not cancelled).
-- No guard is needed: SQLite's single write lock serialises starts.
SELECT r.id, r.type_name, c.status, r.scheduled_at, r.created_at
FROM {{ schema }}_job AS r
INNER JOIN {{ schema }}_chain AS c ON r.id = c.chain_id
WHERE
    r.chain_type_name = :type_name
    AND r.dedup_key = :dedup_key
    AND r.chain_index = 0
    AND (:dedup_window IS NULL OR r.created_at >= :now - :dedup_window)
    AND (:dedup_scope = 'any' OR c.status NOT IN ('completed', 'cancelled'))
ORDER BY r.created_at DESC, r.seq DESC
LIMIT 1;
