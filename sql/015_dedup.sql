-- Deduplication of chain starts: a start with a dedup key resolves to the
-- most recent matching chain instead of creating one. Concurrent starts with
-- one (type, key) are serialised by an upsert into dedup_guard (65,536 hash
-- buckets), taken before the match is looked for in a later statement.

CREATE OR REPLACE FUNCTION {{ schema }}._check_dedup_args(
    dedup_scope text, dedup_window interval
)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF dedup_scope NOT IN ('incomplete', 'any') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format(
                'unknown dedup scope %L (use ''incomplete'' or ''any'')', dedup_scope
            );
    END IF;
    IF dedup_window < interval '0' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('dedup_window must not be negative, got %s', dedup_window);
    END IF;
END;
$$;

-- Takes the dedup guard of each (type, key), bucket order, so concurrent
-- starts with one key are serialised.
CREATE OR REPLACE FUNCTION {{ schema }}._guard_dedup_keys(
    type_names text [], dedup_keys text []
)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    INSERT INTO {{ schema }}.dedup_guard AS g (bucket, touched_at)
    SELECT DISTINCT
        (hashtextextended(k.t || chr(1) || k.k, 0) & 65535)::integer AS bucket,
        now()
    FROM unnest(type_names, dedup_keys) AS k (t, k)
    WHERE k.k IS NOT NULL
    ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET touched_at = excluded.touched_at;
END;
$$;

-- The chain a new start with this dedup key resolves to, if any: the most
-- recently created root of that type and key within the window whose chain
-- matches the scope ('incomplete': not completed and not cancelled).
CREATE OR REPLACE FUNCTION {{ schema }}._find_dedup_match(
    type_name text, dedup_key text, dedup_scope text, dedup_window interval
)
RETURNS SETOF {{ schema }}.start_chain_result
LANGUAGE sql STABLE
AS $$
    SELECT r.id, r.id, r.type_name, t.status, r.scheduled_at, r.created_at, true, r.trace_context
    FROM {{ schema }}.job AS r
    CROSS JOIN LATERAL {{ schema }}._chain_tail(r.id) AS t
    WHERE r.chain_type_name = _find_dedup_match.type_name
        AND r.dedup_key = _find_dedup_match.dedup_key
        AND r.chain_index = 0
        AND (_find_dedup_match.dedup_window IS NULL
            OR r.created_at >= now() - least(_find_dedup_match.dedup_window, interval '1000 years'))
        AND (_find_dedup_match.dedup_scope = 'any'
            OR t.status NOT IN ('completed', 'cancelled'))
    ORDER BY r.created_at DESC, r.seq DESC
    LIMIT 1;
$$;
