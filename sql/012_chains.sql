-- Job ids and chains: how a new job is named, and how a chain's jobs are
-- found. A chain is its root job (chain_id = id, chain_index = 0); since
-- migration 0002 job_chain_position_idx holds the later positions only, so
-- every "jobs of a chain" lookup reads the root by its id and the later
-- jobs through that index.

-- A new job id: a version 7 UUID (48-bit Unix milliseconds, then random
-- bits), so ids of new jobs are increasing and their primary-key (and
-- chain-position) entries land at the right edge of the B-tree instead of on
-- a random page: fewer pages dirtied and written in full after a checkpoint.
-- An inlinable SQL expression (no function call per row). Every name is
-- qualified, as everything start_chain's common path runs (overlay and
-- substring are grammar, always pg_catalog's).
CREATE OR REPLACE FUNCTION {{ schema }}._new_job_id()
RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT pg_catalog.encode(
        pg_catalog.set_bit(pg_catalog.set_bit(
            overlay(
                pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                PLACING substring(
                    pg_catalog.int8send((
                        pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())
                        OPERATOR(pg_catalog.*) 1000
                    )::bigint) FROM 3
                )
                FROM 1 FOR 6
            ),
            52, 1), 53, 1),  -- version nibble 0100 (4) -> 0111 (7)
        'hex'
    )::pg_catalog.uuid
$$;

-- A chain's last (current) job. Roots are not in job_chain_position_idx
-- (migration 0002): the root is read by its id, later jobs through that
-- index, and the higher position wins. Inlined into the caller's query.
CREATE OR REPLACE FUNCTION {{ schema }}._chain_tail(chain_id uuid)
RETURNS SETOF {{ schema }}.job
LANGUAGE sql STABLE
AS $$
    (
        SELECT l.*
        FROM {{ schema }}.job AS l
        WHERE l.chain_id = _chain_tail.chain_id AND l.chain_index > 0
        ORDER BY l.chain_index DESC
        LIMIT 1
    )
    UNION ALL
    SELECT r.*
    FROM {{ schema }}.job AS r
    WHERE r.id = _chain_tail.chain_id AND r.chain_index = 0
    ORDER BY chain_index DESC
    LIMIT 1
$$;

-- Ids of a chain's jobs: the root (its id is the chain id) and the later
-- jobs, found through job_chain_position_idx (positions > 0 only).
CREATE OR REPLACE FUNCTION {{ schema }}._chain_job_ids(chain_id uuid)
RETURNS SETOF uuid
LANGUAGE sql STABLE
AS $$
    SELECT _chain_job_ids.chain_id
    UNION ALL
    SELECT l.id
    FROM {{ schema }}.job AS l
    WHERE l.chain_id = _chain_job_ids.chain_id AND l.chain_index > 0
$$;
