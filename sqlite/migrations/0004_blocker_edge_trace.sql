-- queuert for SQLite 0004: trace context per blocker edge (OpenTelemetry,
-- issue 12; PostgreSQL's 0008). trace_context is the traceparent of the
-- call that added the edge (the waiting job's creation: start_chain,
-- start_chains, continue_with keep the trace_context they were given);
-- resolved_trace_context is the traceparent of the span that completed the
-- blocker chain, written by complete / complete_jobs when they are given
-- one, and handed out by claim per blocker. Both stay NULL without
-- telemetry.

ALTER TABLE {{ schema }}_job_blocker ADD COLUMN trace_context TEXT;

ALTER TABLE {{ schema }}_job_blocker ADD COLUMN resolved_trace_context TEXT;
