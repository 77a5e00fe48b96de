-- Shared internals of the engine. Names starting with an underscore are not
-- part of the public API.
--
-- Locking protocol (see docs/engine.md): whoever completes a chain holds its
-- root row FOR UPDATE; whoever adds an edge to a blocker chain holds that
-- chain's root FOR KEY SHARE (roots in id order) and reads "is it complete"
-- in a later statement. Claim and reap use FOR NO KEY UPDATE SKIP LOCKED,
-- which does not conflict with KEY SHARE.

-- Every notification goes through here. The setting queuert.notify (per
-- session, role or database; unset means 'all') selects the channels: 'all',
-- 'none' (poll-only mode), or a comma list of job_ready, chain_completed,
-- job_lost. A NOTIFY serialises commits (PostgreSQL holds a database-wide
-- lock from pre-commit to the end of the commit), so a worker that publishes
-- after commit in batches can turn the per-job ones off.
--
-- kind 'job_ready_unblocked' is job_ready for jobs that a completion
-- unblocked (fan-in): sent on the job_ready channel, selected by either
-- name. Such commits are rare, so a batching worker leaves them to the engine
-- ('job_lost,job_ready_unblocked') instead of looking the dependents up again.
-- The one place that reads queuert.notify: whether it selects this kind
-- (job_ready_unblocked also through job_ready). Inlined where it is used.
CREATE OR REPLACE FUNCTION {{ schema }}._notify_enabled(kind text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(nullif(current_setting('queuert.notify', true), ''), 'all') = 'all'
        OR kind = ANY(string_to_array(replace(current_setting('queuert.notify', true), ' ', ''), ','))
        OR (kind = 'job_ready_unblocked'
            AND 'job_ready' = ANY(string_to_array(replace(current_setting('queuert.notify', true), ' ', ''), ',')))
$$;

CREATE OR REPLACE FUNCTION {{ schema }}._notify(kind text, payloads text [])
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_sent integer;
BEGIN
    -- One call per statement with all its payloads: the setting is read
    -- once, not once per completed chain of a batch. PL/pgSQL, not SQL: a
    -- SQL function called from a statement is planned again on every call.
    IF cardinality(payloads) > 0 AND {{ schema }}._notify_enabled(kind) THEN
        SELECT count(pg_notify(
            '{{ schema }}_' || CASE kind WHEN 'job_ready_unblocked' THEN 'job_ready' ELSE kind END, p
        )) INTO v_sent
        FROM unnest(payloads) AS p;
        RETURN v_sent;
    END IF;
    RETURN 0;
END;
$$;

-- A new job id: a version 7 UUID (48-bit Unix milliseconds, then random
-- bits), so ids of new jobs are increasing and their primary-key (and
-- chain-position) entries land at the right edge of the B-tree instead of on
-- a random page: fewer pages dirtied and written in full after a checkpoint.
-- An inlinable SQL expression (no function call per row).
CREATE OR REPLACE FUNCTION {{ schema }}._new_job_id()
RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(
                uuid_send(gen_random_uuid())
                PLACING substring(
                    int8send((date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3
                )
                FROM 1 FOR 6
            ),
            52, 1), 53, 1),  -- version nibble 0100 (4) -> 0111 (7)
        'hex'
    )::uuid
$$;

-- A chain's last (current) job. Roots are not in job_chain_position_idx
-- (migration 0002): the root is read by its id, later jobs through that
-- index, and the higher position wins. Inlined into the caller's query.
CREATE OR REPLACE FUNCTION {{ schema }}._chain_tail(chain_id uuid)
RETURNS SETOF {{ schema }}.job
LANGUAGE sql STABLE
AS $$
    (
        SELECT l.*
        FROM {{ schema }}.job AS l
        WHERE l.chain_id = _chain_tail.chain_id AND l.chain_index > 0
        ORDER BY l.chain_index DESC
        LIMIT 1
    )
    UNION ALL
    SELECT r.*
    FROM {{ schema }}.job AS r
    WHERE r.id = _chain_tail.chain_id AND r.chain_index = 0
    ORDER BY chain_index DESC
    LIMIT 1
$$;

-- One notification if queuert.notify selects its kind, as an SQL expression
-- that inlines into the caller's statement: no PL/pgSQL call, whose
-- expressions would be set up again in every transaction of an autocommit
-- caller (start_chain's common path).
CREATE OR REPLACE FUNCTION {{ schema }}._announce(kind text, payload text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    SELECT CASE
        WHEN {{ schema }}._notify_enabled(kind)
            THEN pg_notify('{{ schema }}_' || kind, payload) IS NOT NULL
        ELSE false
    END
$$;

-- The per-job answer of a fenced batch call (complete_jobs, release_jobs),
-- in input order: done_outcome for the jobs it changed, else why not:
-- 'not_found', 'taken' (running under another worker or attempt) or
-- 'finished' (no longer running). Inlined into the caller's statement.
CREATE OR REPLACE FUNCTION {{ schema }}._batch_outcomes(
    job_ids uuid [], done uuid [], done_outcome text
)
RETURNS TABLE (job_id uuid, outcome text)
LANGUAGE sql STABLE
AS $$
    SELECT
        u.id,
        CASE
            WHEN u.id = ANY(_batch_outcomes.done) THEN _batch_outcomes.done_outcome
            WHEN x.id IS NULL THEN 'not_found'
            WHEN x.status = 'running' THEN 'taken'
            ELSE 'finished'
        END
    FROM unnest(_batch_outcomes.job_ids) WITH ORDINALITY AS u (id, o)
    LEFT JOIN {{ schema }}.job AS x ON x.id = u.id
    ORDER BY u.o
$$;

CREATE OR REPLACE FUNCTION {{ schema }}._check_type_name(type_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF type_name IS NULL OR length(type_name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format(
                'type name must be 1 to 255 characters, got %s',
                coalesce(length(type_name)::text || ' characters', 'NULL')
            );
    END IF;
END;
$$;

-- When a job should run: an explicit time (a past one is clamped to now) or
-- a delay from now; never both, never a negative delay.
CREATE OR REPLACE FUNCTION {{ schema }}._schedule(
    schedule_at timestamptz, schedule_after interval
)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF schedule_at IS NOT NULL AND schedule_after IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = 'give schedule_at or schedule_after, not both';
    END IF;
    IF schedule_after < interval '0' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('schedule_after must not be negative, got %s', schedule_after);
    END IF;
    IF schedule_after > interval '1000 years' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('schedule_after must be at most 1000 years, got %s', schedule_after);
    END IF;
    -- Year 10000 and later (and infinity) cannot be read back by common
    -- drivers (Python's datetime stops at 9999): refused, never stored.
    IF schedule_at >= timestamptz '10000-01-01 00:00:00+00' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006',
            MESSAGE = format('schedule_at must be before the year 10000, got %s', schedule_at);
    END IF;
    RETURN greatest(coalesce(schedule_at, now() + schedule_after, now()), now());
END;
$$;

-- Distinct blocker chain ids in first-seen order; NULL elements are QU006.
CREATE OR REPLACE FUNCTION {{ schema }}._distinct_blockers(blockers uuid [])
RETURNS uuid []
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF blockers IS NULL OR cardinality(blockers) = 0 THEN
        RETURN '{}';
    END IF;
    IF array_ndims(blockers) > 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006', MESSAGE = 'blockers must be a one-dimensional array';
    END IF;
    IF array_position(blockers, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU006', MESSAGE = 'blockers must not contain NULL';
    END IF;
    RETURN ARRAY(
        SELECT u.b
        FROM unnest(blockers) WITH ORDINALITY AS u (b, o)
        GROUP BY u.b
        ORDER BY min(u.o)
    );
END;
$$;

-- Locks existing blocker chains' roots FOR KEY SHARE (in id order) and
-- returns those that are not complete. A missing chain is QU002.
CREATE OR REPLACE FUNCTION {{ schema }}._lock_blocker_chains(chain_ids uuid [])
RETURNS uuid []
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_locked integer;
    v_missing uuid;
    v_open uuid[];
BEGIN
    IF cardinality(chain_ids) = 0 THEN
        RETURN '{}';
    END IF;
    -- "A root" spelled chain_id = id (job_root_is_chain makes it the same as
    -- chain_index = 0): chain_index = 0 let the planner answer the id lookup
    -- from job_chain_root_created_idx, every root, when it had no statistics.
    PERFORM 1
    FROM {{ schema }}.job AS r
    WHERE r.id = ANY(chain_ids) AND r.chain_id = r.id
    ORDER BY r.id
    FOR KEY SHARE;
    GET DIAGNOSTICS v_locked = ROW_COUNT;
    IF v_locked < cardinality(chain_ids) THEN
        SELECT u.b INTO v_missing
        FROM unnest(chain_ids) WITH ORDINALITY AS u (b, o)
        WHERE NOT EXISTS (
            SELECT 1 FROM {{ schema }}.job AS r
            WHERE r.id = u.b AND r.chain_id = r.id
        )
        ORDER BY u.o
        LIMIT 1;
        RAISE EXCEPTION USING
            ERRCODE = 'QU002',
            MESSAGE = format('blocker chain %s not found', v_missing),
            DETAIL = format('chain_id=%s', v_missing);
    END IF;
    -- A later statement: its fresh snapshot sees a completion that committed
    -- while we waited for the lock.
    SELECT coalesce(array_agg(r.id), '{}') INTO v_open
    FROM {{ schema }}.job AS r
    WHERE r.id = ANY(chain_ids) AND r.chain_completed_at IS NULL;
    RETURN v_open;
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
    SELECT r.id, r.id, r.type_name, t.status, r.scheduled_at, r.created_at, true
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

-- Chains that just completed: every job waiting on them loses one open
-- blocker per completed chain; a blocked job with none left becomes pending.
-- Returns the jobs it made pending (one of their completed blocker chains
-- each, and their type), so a batching worker can announce them itself.
--
-- The edges are read first, in a statement of their own (one probe of
-- job_blocker_chain_idx; most completed chains have no dependents and end
-- here), and the dependents are then updated by id. One statement joining
-- job_blocker to job let the planner choose a hash join over the whole job
-- table, or a full scan of another job_blocker index, whenever it believed
-- a table tiny or had no statistics (docs/engine.md, "Plans"). No
-- index-only scans: a full one of the unique (job_id, blocker_chain_id)
-- index, every edge, is what such a planner chose for the edge lookup.
CREATE OR REPLACE FUNCTION {{ schema }}._resolve_dependents(chain_ids uuid [])
RETURNS TABLE (chain_id uuid, type_name text)
LANGUAGE plpgsql VOLATILE
SET enable_indexonlyscan = off
AS $$
#variable_conflict use_column
DECLARE
    v_dependents uuid[];
    v_by_chains uuid[];
    v_chains uuid[];
    v_types text[];
    v_notified integer;
BEGIN
    SELECT coalesce(array_agg(b.job_id), '{}'), coalesce(array_agg(b.blocker_chain_id), '{}')
    INTO v_dependents, v_by_chains
    FROM {{ schema }}.job_blocker AS b
    WHERE b.blocker_chain_id = ANY(_resolve_dependents.chain_ids);
    IF cardinality(v_dependents) = 0 THEN
        RETURN;
    END IF;

    WITH dec AS (
        SELECT e.job_id, count(*)::integer AS n, min(e.by_chain::text)::uuid AS by_chain
        FROM unnest(v_dependents, v_by_chains) AS e (job_id, by_chain)
        GROUP BY e.job_id
    ),
    unblocked AS (
        UPDATE {{ schema }}.job AS j
        SET
            open_blockers = j.open_blockers - dec.n,
            status = CASE
                WHEN j.status = 'blocked' AND j.open_blockers = dec.n
                    THEN 'pending'::{{ schema }}.job_status
                ELSE j.status
            END,
            scheduled_at = CASE
                WHEN j.status = 'blocked' AND j.open_blockers = dec.n
                    THEN greatest(j.scheduled_at, now())
                ELSE j.scheduled_at
            END
        FROM dec
        WHERE j.id = ANY(v_dependents) AND j.id = dec.job_id
        RETURNING dec.by_chain, j.type_name, j.status, j.open_blockers
    )
    SELECT coalesce(array_agg(u.by_chain), '{}'), coalesce(array_agg(u.type_name), '{}')
    INTO v_chains, v_types
    FROM unblocked AS u
    WHERE u.status = 'pending' AND u.open_blockers = 0;

    IF cardinality(v_types) > 0 THEN
        SELECT {{ schema }}._notify('job_ready_unblocked', array_agg(DISTINCT t)) INTO v_notified
        FROM unnest(v_types) AS t;
        RETURN QUERY SELECT DISTINCT u.c, u.t FROM unnest(v_chains, v_types) AS u (c, t);
    END IF;
END;
$$;

-- Backoff before the next attempt, computed in log space so that a large
-- attempt count saturates at backoff_max instead of overflowing.
CREATE OR REPLACE FUNCTION {{ schema }}._backoff(
    attempt integer,
    backoff_initial interval,
    backoff_multiplier float8,
    backoff_max interval
)
RETURNS interval
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN extract(epoch FROM backoff_initial) <= 0 THEN interval '0'
        WHEN greatest(attempt - 1, 0) * ln(backoff_multiplier)
            + ln(extract(epoch FROM backoff_initial)::float8)
            >= ln(greatest(extract(epoch FROM backoff_max)::float8, 1e-6))
            THEN backoff_max
        ELSE least(
            backoff_initial * power(backoff_multiplier, greatest(attempt - 1, 0)),
            backoff_max
        )
    END;
$$;

-- Ownership and fencing shared by complete, continue_with and fail. With a
-- worker the job must be running under it (an expired lease that nobody
-- reclaimed still counts); without one (a call from outside) the job must be
-- in one of outside_statuses. A given attempt must be the current one.
CREATE OR REPLACE FUNCTION {{ schema }}._check_owner(
    j {{ schema }}.job,
    worker_id text,
    attempt integer,
    outside_statuses {{ schema }}.job_status [],
    action text
)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF worker_id IS NOT NULL THEN
        IF j.status <> 'running' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'QU003',
                MESSAGE = format('cannot %s job %s: it is %s, not running', action, j.id, j.status),
                DETAIL = format('job_id=%s, status=%s', j.id, j.status);
        END IF;
        IF j.leased_by IS DISTINCT FROM worker_id THEN
            RAISE EXCEPTION USING
                ERRCODE = 'QU004',
                MESSAGE = format(
                    'cannot %s job %s: it is held by worker %s, not %s',
                    action, j.id, j.leased_by, worker_id
                ),
                DETAIL = format('job_id=%s, worker_id=%s', j.id, j.leased_by);
        END IF;
    ELSIF NOT (j.status = ANY(outside_statuses)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU003',
            MESSAGE = format('cannot %s job %s from outside: it is %s', action, j.id, j.status),
            DETAIL = format('job_id=%s, status=%s', j.id, j.status);
    END IF;
    IF attempt IS NOT NULL AND attempt <> j.attempt THEN
        RAISE EXCEPTION USING
            ERRCODE = 'QU004',
            MESSAGE = format(
                'cannot %s job %s: attempt %s is stale, the job is at attempt %s',
                action, j.id, attempt, j.attempt
            ),
            DETAIL = format('job_id=%s, attempt=%s', j.id, j.attempt);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION {{ schema }}._job_not_found(job_id uuid)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'QU001',
        MESSAGE = format('job %s not found', job_id),
        DETAIL = format('job_id=%s', job_id);
END;
$$;
