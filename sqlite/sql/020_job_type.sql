-- Retry and lease policy per job type.

-- name: set_job_type
-- The whole policy of a type (arguments already checked and defaulted).
INSERT INTO {{ schema }}_job_type (
    type_name, max_attempts, backoff_initial, backoff_multiplier,
    backoff_max, lease, updated_at
)
VALUES (
    :type_name, :max_attempts, :backoff_initial, :backoff_multiplier,
    :backoff_max, :lease, :now
)
ON CONFLICT (type_name) DO UPDATE SET
    max_attempts = excluded.max_attempts,
    backoff_initial = excluded.backoff_initial,
    backoff_multiplier = excluded.backoff_multiplier,
    backoff_max = excluded.backoff_max,
    lease = excluded.lease,
    updated_at = excluded.updated_at
RETURNING
    type_name, max_attempts, backoff_initial, backoff_multiplier,
    backoff_max, lease, updated_at;
