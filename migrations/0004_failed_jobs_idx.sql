-- queuert 0004: failed jobs, most recent failure first.
--
-- Operators look for failed chains first (the dashboard's failed filter,
-- its "recent failures" and "retry all failed of a type"). Failed rows are
-- few among millions of completed ones, so without this index each of those
-- reads the whole table. It is partial: only a job that fails for good
-- enters it, so creating, claiming and completing jobs never touch it.

CREATE INDEX job_failed_idx
ON {{ schema }}.job (last_attempt_at DESC, id DESC)
WHERE status = 'failed';
