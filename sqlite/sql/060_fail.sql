-- fail and fail_jobs: record failed attempts; retry with backoff or give up.

-- name: fail_jobs
-- :requests is a JSON array of [job_id, error, retry_at, attempt]. Each job
-- goes where its type's policy sends it: 'failed' once max_attempts is
-- reached (scheduled_at kept), else 'pending' at retry_at (clamped to now)
-- or at now + backoff, where backoff = least(backoff_initial *
-- backoff_multiplier ^ greatest(attempt - 1, 0), backoff_max), computed in
-- log space so that a huge attempt count saturates instead of overflowing.
-- With a :worker_id only jobs running under it at the given attempt change
-- (the worker's batched failure); without one it is the outside failure of
-- fail(), whose job the caller has checked.
UPDATE {{ schema }}_job AS x
SET
    status = CASE WHEN p.exhausted THEN 'failed' ELSE 'pending' END,
    scheduled_at = CASE
        WHEN p.exhausted THEN x.scheduled_at
        ELSE max(coalesce(p.retry_at, :now + CASE
            WHEN p.backoff_initial <= 0 THEN 0
            WHEN
                max(p.attempt - 1, 0) * ln(p.backoff_multiplier) + ln(p.backoff_initial)
                >= ln(max(p.backoff_max, 1))
                THEN p.backoff_max
            ELSE min(
                cast(round(
                    p.backoff_initial * power(p.backoff_multiplier, max(p.attempt - 1, 0))
                ) AS INTEGER),
                p.backoff_max
            )
        END), :now)
    END,
    last_attempt_error = p.error,
    last_attempt_at = :now,
    leased_by = NULL,
    leased_until = NULL
FROM (
    SELECT
        j.id,
        json_extract(q.value, '$[1]') AS error,
        json_extract(q.value, '$[2]') AS retry_at,
        j.attempt,
        t.max_attempts IS NOT NULL AND j.attempt >= t.max_attempts AS exhausted,
        coalesce(t.backoff_initial, 10000000) AS backoff_initial,
        coalesce(t.backoff_multiplier, 2) AS backoff_multiplier,
        coalesce(t.backoff_max, 300000000) AS backoff_max
    FROM json_each(:requests) AS q
    INNER JOIN {{ schema }}_job AS j ON json_extract(q.value, '$[0]') = j.id
    LEFT JOIN {{ schema }}_job_type AS t ON j.type_name = t.type_name
    WHERE
        :worker_id IS NULL
        OR (
            j.status = 'running'
            AND j.leased_by = :worker_id
            AND (json_extract(q.value, '$[3]') IS NULL OR j.attempt = json_extract(q.value, '$[3]'))
        )
) AS p
WHERE x.id = p.id
RETURNING id, status, scheduled_at, attempt, type_name;
