-- queuert 0009: complete and fire_schedules say what they made ready.
--
-- A notifier outside the database (Redis, NATS, in-process) hears of new
-- pending jobs only from whoever made them pending, after the commit. Two
-- calls made jobs pending without saying of which type: a workerless
-- complete that unblocks dependents (a fan-in's last blocker), and
-- fire_schedules, which starts a chain per due tick. complete gains
-- unblocked_types (as complete_jobs has since 0003) and fire_schedules
-- gains type_name. CREATE OR REPLACE cannot change a function's result
-- columns, so the old ones are dropped here and sql/ creates the new ones
-- in the same transaction. Nothing depends on them by catalog reference
-- (their callers are PL/pgSQL or client statements). IF EXISTS: on a first
-- install sql/ has not run yet. Both signatures: 0008 gave complete its
-- trace_context argument and dependents column, this its unblocked_types.

DROP FUNCTION IF EXISTS {{ schema }}.complete(uuid, text, jsonb, integer);
DROP FUNCTION IF EXISTS {{ schema }}.complete(uuid, text, jsonb, integer, text);
DROP FUNCTION IF EXISTS {{ schema }}.fire_schedules(text []);
