-- queuert 0007: trace context that follows a chain (OpenTelemetry, issue 12).
--
-- job.trace_context already holds the W3C traceparent of the span that
-- created the job. chain_trace_context is the traceparent of the span that
-- created the chain's root: start_chain(s) set it to the root's own
-- trace_context, continue_with copies it from the job it continues, so
-- every job of a chain names the trace the chain started in, whatever
-- process created it. claim hands it out for each blocker chain (a worker
-- links the attempt of a fan-in job to the chains it waited on), and
-- start_chain_result gains the root's trace_context, so a deduplicated start
-- can link to the chain it resolved to. Rows created before this migration
-- keep NULL (no trace was recorded for them).

ALTER TABLE {{ schema }}.job ADD COLUMN chain_trace_context text;

ALTER TYPE {{ schema }}.start_chain_result ADD ATTRIBUTE trace_context text;
