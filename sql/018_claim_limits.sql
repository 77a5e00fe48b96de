-- Per-type limits inside claim (set_job_type's max_running, rate_limit and
-- rate_interval; tables in migrations/0006). claim calls _claim_limited
-- only when a type it may take has a limit, so unlimited queues keep
-- claim's plain candidate scan.

-- Takes up to cardinality(job_ids) tokens of type_name for these
-- candidates (locked by the caller, in claim order) and returns how many
-- it got: the first that many candidates may run. Tokens are locked with
-- SKIP LOCKED, so a claimer never waits for another.
CREATE OR REPLACE FUNCTION {{ schema }}._take_limit_tokens(
    type_name text, job_ids uuid [], attempts integer [], at timestamptz
)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_policy record;
    v_granted integer := cardinality(job_ids);
    v_slots integer [];
    v_rate integer [];
BEGIN
    SELECT t.max_running, t.rate_limit, t.rate_interval INTO v_policy
    FROM {{ schema }}.job_type AS t
    WHERE t.type_name = _take_limit_tokens.type_name;

    IF v_policy.max_running IS NOT NULL THEN
        -- A slot is free when its job no longer runs at the attempt that
        -- took it: completions, failures, reaps, cancels and deletes free
        -- slots without writing here.
        v_slots := ARRAY(
            SELECT s.slot FROM {{ schema }}.job_running_slot AS s
            WHERE s.type_name = _take_limit_tokens.type_name
                AND NOT EXISTS (
                    SELECT 1 FROM {{ schema }}.job AS j
                    WHERE j.id = s.job_id AND j.status = 'running' AND j.attempt = s.attempt
                )
            LIMIT v_granted
            FOR UPDATE OF s SKIP LOCKED
        );
        -- Again under our locks, with this statement's newer snapshot: a
        -- slot locked after another claimer committed was re-checked above
        -- against that claimer's slot row but an older view of its job.
        v_slots := ARRAY(
            SELECT s.slot FROM {{ schema }}.job_running_slot AS s
            WHERE s.type_name = _take_limit_tokens.type_name AND s.slot = ANY(v_slots)
                AND NOT EXISTS (
                    SELECT 1 FROM {{ schema }}.job AS j
                    WHERE j.id = s.job_id AND j.status = 'running' AND j.attempt = s.attempt
                )
        );
        v_granted := least(v_granted, cardinality(v_slots));
    END IF;

    IF v_policy.rate_limit IS NOT NULL AND v_granted > 0 THEN
        -- A sliding window: each token is the time of a start and comes
        -- back rate_interval after it.
        v_rate := ARRAY(
            SELECT r.slot FROM {{ schema }}.job_rate_slot AS r
            WHERE r.type_name = _take_limit_tokens.type_name
                AND r.used_at <= _take_limit_tokens.at - v_policy.rate_interval
            LIMIT v_granted
            FOR UPDATE OF r SKIP LOCKED
        );
        v_granted := cardinality(v_rate);
        UPDATE {{ schema }}.job_rate_slot AS r
        SET used_at = _take_limit_tokens.at
        WHERE r.type_name = _take_limit_tokens.type_name AND r.slot = ANY(v_rate);
    END IF;

    IF v_policy.max_running IS NOT NULL AND v_granted > 0 THEN
        UPDATE {{ schema }}.job_running_slot AS s
        SET job_id = x.job_id, attempt = x.attempt + 1  -- the attempt claim gives it
        FROM unnest(
            v_slots[1:v_granted], job_ids[1:v_granted], attempts[1:v_granted]
        ) AS x (slot, job_id, attempt)
        WHERE s.type_name = _take_limit_tokens.type_name AND s.slot = x.slot;
    END IF;
    RETURN v_granted;
END;
$$;

-- claim's candidates when some of the types it may take are limited: the
-- same walk of job_claim_idx in claim order, then tokens for the limited
-- types among the candidates. A type that runs out of tokens is left out
-- and the walk repeats for the places still free, so a limited type never
-- keeps a worker from other types' jobs. At most one walk per limited type
-- plus one. Candidates of a type beyond its tokens stay locked (not
-- claimed) until the caller's transaction ends.
CREATE OR REPLACE FUNCTION {{ schema }}._claim_limited(
    type_names text [], max_jobs integer, limited text []
)
RETURNS uuid []
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_sort = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
    v_ids uuid [] := '{}';
    v_out text [] := '{}';
    v_cand_ids uuid [];
    v_cand_types text [];
    v_cand_attempts integer [];
    v_keep boolean [];
    v_type text;
    v_pos integer [];
    v_granted integer;
    v_ran_out boolean;
    r record;
BEGIN
    WHILE cardinality(v_ids) < max_jobs LOOP
        v_cand_ids := '{}';
        v_cand_types := '{}';
        v_cand_attempts := '{}';
        FOR r IN
            SELECT j.id, j.type_name, j.attempt
            FROM {{ schema }}.job AS j
            WHERE j.status = 'pending' AND j.scheduled_at <= now()
                AND (_claim_limited.type_names IS NULL OR j.type_name = ANY(_claim_limited.type_names))
                AND NOT (j.type_name = ANY(v_out))
                AND NOT (j.id = ANY(v_ids))
            ORDER BY j.priority DESC, j.scheduled_at, j.seq
            LIMIT max_jobs - cardinality(v_ids)
            FOR NO KEY UPDATE OF j SKIP LOCKED
        LOOP
            v_cand_ids := v_cand_ids || r.id;
            v_cand_types := v_cand_types || r.type_name;
            v_cand_attempts := v_cand_attempts || r.attempt;
        END LOOP;
        EXIT WHEN cardinality(v_cand_ids) = 0;

        v_keep := array_fill(true, ARRAY[cardinality(v_cand_ids)]);
        v_ran_out := false;
        FOR v_type IN
            SELECT DISTINCT t.type_name FROM unnest(v_cand_types) AS t (type_name)
            WHERE t.type_name = ANY(limited)
        LOOP
            v_pos := ARRAY(
                SELECT p.n::integer FROM unnest(v_cand_types) WITH ORDINALITY AS p (type_name, n)
                WHERE p.type_name = v_type ORDER BY p.n
            );
            v_granted := {{ schema }}._take_limit_tokens(
                v_type,
                ARRAY(SELECT v_cand_ids[n] FROM unnest(v_pos) WITH ORDINALITY AS o (n, k) ORDER BY o.k),
                ARRAY(SELECT v_cand_attempts[n] FROM unnest(v_pos) WITH ORDINALITY AS o (n, k) ORDER BY o.k),
                v_at
            );
            IF v_granted < cardinality(v_pos) THEN
                v_out := v_out || v_type;
                v_ran_out := true;
                FOR i IN v_granted + 1..cardinality(v_pos) LOOP
                    v_keep[v_pos[i]] := false;
                END LOOP;
            END IF;
        END LOOP;
        FOR i IN 1..cardinality(v_cand_ids) LOOP
            IF v_keep[i] THEN
                v_ids := v_ids || v_cand_ids[i];
            END IF;
        END LOOP;
        EXIT WHEN NOT v_ran_out;
    END LOOP;
    RETURN v_ids;
END;
$$;
