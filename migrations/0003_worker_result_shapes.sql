-- queuert 0003: result shapes the worker reads.
--
-- claim gains a last column, seq, so a worker that claims on several
-- connections can start what it holds in claim order; complete_jobs reports
-- the job types its completions unblocked (fan-in), so a worker need not read
-- job_blocker again to announce them; fail_jobs (new, in sql/) is the batched
-- failure. PostgreSQL cannot change a function's result type in place: the
-- old functions are dropped here and sql/ creates the new ones in the same
-- transaction. IF EXISTS: on a first install sql/ has not run yet.

DROP FUNCTION IF EXISTS {{ schema }}.claim(text, text [], integer, interval);
DROP FUNCTION IF EXISTS {{ schema }}.complete_jobs(text, uuid [], jsonb [], integer []);
DROP FUNCTION IF EXISTS {{ schema }}._chains_completed(uuid [], uuid []);
DROP FUNCTION IF EXISTS {{ schema }}._resolve_dependents(uuid []);
