-- queuert 0008: trace context per blocker edge (OpenTelemetry, issue 12).
--
-- A fan-in's wait and its resolution are seen from both sides, possibly in
-- different processes. job_blocker.trace_context is the traceparent of the
-- span that added the edge (the dependent job's creation span: start_chain,
-- start_chains and continue_with keep the trace_context they were given on
-- each edge they insert). resolved_trace_context is the traceparent of the
-- span that completed the blocker chain (the worker's attempt, or the
-- settle span of complete_chain): complete and complete_jobs take it
-- (trace_context / trace_contexts) and write it on every edge their
-- completion resolves, and return, per completed job, the edges it resolved
-- (dependents: the waiting job, its type, the edge's trace_context), so the
-- completing process can emit a span linked to the waiting chain's trace.
-- claim hands resolved_trace_context out per blocker: the dependent's
-- attempt links to each blocker chain's completion. Both stay NULL when no
-- trace context is given (no telemetry): nothing else changes.
--
-- start_chains returns trace_context too: an item's own, or for a
-- deduplicated item the trace_context of the chain it resolved to (as
-- start_chain does since 0007), so the caller's span can link to it.
--
-- complete, complete_jobs, start_chains and two internal functions gain a
-- parameter or a result column, so they are dropped here and recreated by
-- sql/.

ALTER TABLE {{ schema }}.job_blocker
ADD COLUMN trace_context text,
ADD COLUMN resolved_trace_context text;

DROP FUNCTION IF EXISTS {{ schema }}.complete(uuid, text, jsonb, integer);
DROP FUNCTION IF EXISTS {{ schema }}.complete_jobs(text, uuid [], jsonb [], integer []);
DROP FUNCTION IF EXISTS {{ schema }}._chains_completed(uuid [], uuid []);
DROP FUNCTION IF EXISTS {{ schema }}._resolve_dependents(uuid []);
DROP FUNCTION IF EXISTS {{ schema }}.start_chains(jsonb);
