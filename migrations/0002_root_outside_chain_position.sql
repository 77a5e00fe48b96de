-- queuert 0002: chain roots leave the chain-position index.
--
-- A root's position is already unique through the primary key (a root is
-- the job whose id is its chain_id, see job_root_is_chain), so indexing it
-- again in (chain_id, chain_index) only made every start_chain maintain one
-- more B-tree. Lookups of a chain's jobs read the root by id and the later
-- jobs through this index (sql/ does both).

DROP INDEX {{ schema }}.job_chain_position_idx;

-- One job per later chain position: makes a racing continuation idempotent.
CREATE UNIQUE INDEX job_chain_position_idx
ON {{ schema }}.job (chain_id, chain_index)
WHERE chain_index > 0;
