-- queuert for SQLite 0002: fan-in is resolved by the completing call's own
-- statements (sqlite/sql/050_complete.sql: complete_chain_roots,
-- resolve_dependents), once per batch, instead of by two triggers that ran
-- per completed row. A trigger made SQLite build the old and new row of
-- every completed job and run a sub-program per row, even for the chains
-- nothing waits on: about half of a batched acknowledgement's time.

DROP TRIGGER {{ schema }}_job_chain_completed;

DROP TRIGGER {{ schema }}_job_chain_end;
