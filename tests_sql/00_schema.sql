-- The data model and the shape of the public SQL API, as DESIGN.md lists them.
BEGIN;
SELECT plan(107);

-- Output column names of a function: its OUT/TABLE arguments, else the
-- attributes of the composite type it returns.
CREATE FUNCTION pg_temp.result_cols(f regprocedure) RETURNS text []
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p.proargmodes IS NOT NULL AND 't' = ANY(p.proargmodes::text []) THEN ARRAY(
            SELECT a.n
            FROM unnest(p.proargnames, p.proargmodes::text []) WITH ORDINALITY AS a (n, m, o)
            WHERE a.m = 't'
            ORDER BY a.o
        )
        ELSE ARRAY(
            SELECT att.attname::text
            FROM pg_type AS t
            JOIN pg_attribute AS att ON att.attrelid = t.typrelid
            WHERE t.oid = p.prorettype AND att.attnum > 0 AND NOT att.attisdropped
            ORDER BY att.attnum
        )
    END
    FROM pg_proc AS p WHERE p.oid = f;
$$;

SELECT has_schema('queuert');
SELECT has_table('queuert', 'job', 'table queuert.job');
SELECT has_table('queuert', 'job_blocker', 'table queuert.job_blocker');
SELECT has_table('queuert', 'job_type', 'table queuert.job_type');

-- Every column DESIGN.md promises on queuert.job, by name and type.
SELECT col_type_is('queuert', 'job', 'id', 'uuid', 'job.id is uuid');
SELECT col_is_pk('queuert', 'job', 'id', 'job.id is the primary key');
SELECT col_type_is('queuert', 'job', 'type_name', 'text', 'job.type_name');
SELECT col_type_is('queuert', 'job', 'chain_id', 'uuid', 'job.chain_id');
SELECT col_type_is('queuert', 'job', 'chain_type_name', 'text', 'job.chain_type_name');
SELECT col_type_is('queuert', 'job', 'chain_index', 'integer', 'job.chain_index');
SELECT col_type_is('queuert', 'job', 'input', 'jsonb', 'job.input');
SELECT col_type_is('queuert', 'job', 'output', 'jsonb', 'job.output');
SELECT col_type_is('queuert', 'job', 'status', 'queuert', 'job_status', 'job.status');
SELECT col_type_is('queuert', 'job', 'priority', 'integer', 'job.priority');
SELECT col_type_is('queuert', 'job', 'attempt', 'integer', 'job.attempt');
SELECT col_type_is('queuert', 'job', 'scheduled_at', 'timestamp with time zone', 'job.scheduled_at');
SELECT col_type_is('queuert', 'job', 'created_at', 'timestamp with time zone', 'job.created_at');
SELECT col_type_is('queuert', 'job', 'completed_at', 'timestamp with time zone', 'job.completed_at');
SELECT col_type_is('queuert', 'job', 'completed_by', 'text', 'job.completed_by');
SELECT col_type_is('queuert', 'job', 'leased_by', 'text', 'job.leased_by');
SELECT col_type_is('queuert', 'job', 'leased_until', 'timestamp with time zone', 'job.leased_until');
SELECT col_type_is('queuert', 'job', 'last_attempt_at', 'timestamp with time zone', 'job.last_attempt_at');
SELECT col_type_is('queuert', 'job', 'last_attempt_error', 'text', 'job.last_attempt_error');
SELECT col_type_is('queuert', 'job', 'continued_to', 'uuid', 'job.continued_to');
SELECT col_type_is('queuert', 'job', 'dedup_key', 'text', 'job.dedup_key');
SELECT col_type_is('queuert', 'job', 'trace_context', 'text', 'job.trace_context');
SELECT col_type_is('queuert', 'job', 'seq', 'bigint', 'job.seq: the FIFO tiebreak');
SELECT col_not_null('queuert', 'job', 'status', 'job.status is NOT NULL');
SELECT col_not_null('queuert', 'job', 'scheduled_at', 'job.scheduled_at is NOT NULL');
SELECT col_default_is('queuert', 'job', 'attempt', '0', 'job.attempt defaults to 0');
SELECT col_default_is('queuert', 'job', 'priority', '0', 'job.priority defaults to 0');

SELECT enum_has_labels(
    'queuert', 'job_status',
    ARRAY['blocked', 'pending', 'running', 'completed', 'failed', 'cancelled'],
    'job_status has exactly the six statuses, in order'
);

SELECT has_column('queuert', 'job_blocker', 'job_id', 'job_blocker.job_id');
SELECT has_column('queuert', 'job_blocker', 'position', 'job_blocker.position');
SELECT has_column('queuert', 'job_blocker', 'blocker_chain_id', 'job_blocker.blocker_chain_id');
SELECT fk_ok(
    'queuert', 'job_blocker', 'job_id', 'queuert', 'job', 'id',
    'job_blocker.job_id references job'
);

SELECT col_is_pk('queuert', 'job_type', 'type_name', 'job_type keyed by type_name');
SELECT has_column('queuert', 'job_type', 'max_attempts', 'job_type.max_attempts');
SELECT col_type_is('queuert', 'job_type', 'backoff_initial', 'interval', 'job_type.backoff_initial');
SELECT col_type_is(
    'queuert', 'job_type', 'backoff_multiplier', 'double precision', 'job_type.backoff_multiplier'
);
SELECT col_type_is('queuert', 'job_type', 'backoff_max', 'interval', 'job_type.backoff_max');
SELECT col_type_is('queuert', 'job_type', 'lease', 'interval', 'job_type.lease');

-- Indexes: the idempotent chain position, and partial indexes over runnable rows.
SELECT index_is_unique(
    'queuert', 'job', 'job_chain_position_idx', 'unique index on (chain_id, chain_index)'
);
SELECT is(
    (SELECT array_agg(a.attname::text ORDER BY k.o)
     FROM pg_index AS i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, o)
     JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indexrelid = 'queuert.job_chain_position_idx'::regclass),
    ARRAY['chain_id', 'chain_index'],
    'job_chain_position_idx covers (chain_id, chain_index)'
);
SELECT is(
    pg_get_expr(i.indpred, i.indrelid),
    '(chain_index > 0)',
    'job_chain_position_idx holds later positions only (a root is unique by its id)'
)
FROM pg_index AS i WHERE i.indexrelid = 'queuert.job_chain_position_idx'::regclass;

-- New job ids are version 7 UUIDs: increasing, so new rows append to the
-- primary key instead of landing on random pages.
SELECT is(
    (SELECT array_agg(DISTINCT substr(c.id::text, 15, 1)) FROM queuert.start_chain('uuid-probe') AS c),
    ARRAY['7'],
    'start_chain ids are version 7 UUIDs'
);
SELECT ok(
    (SELECT bool_and(substr(c.id::text, 15, 1) = '7' AND substr(c.id::text, 20, 1) IN ('8', '9', 'a', 'b'))
     FROM queuert.start_chains(
         (SELECT jsonb_agg(jsonb_build_object('type_name', 'uuid-probe')) FROM generate_series(1, 50))
     ) AS c),
    'start_chains ids are version 7 UUIDs with the RFC 4122 variant'
);
DELETE FROM queuert.job WHERE type_name = 'uuid-probe';  -- out of the later claim probe's way
SELECT is(
    pg_get_indexdef('queuert.job_claim_idx'::regclass),
    'CREATE INDEX job_claim_idx ON queuert.job USING btree (priority DESC, scheduled_at, seq)'
    || ' WHERE (status = ''pending''::queuert.job_status)',
    'claim index: claim order over pending rows only'
);
SELECT is(
    (SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index AS i
     WHERE i.indexrelid = 'queuert.job_lease_idx'::regclass),
    '(status = ''running''::queuert.job_status)',
    'lease index is partial over running rows'
);
SELECT is(
    (SELECT count(*)::integer FROM pg_index AS i
     WHERE i.indrelid = 'queuert.job'::regclass
         AND pg_get_expr(i.indpred, i.indrelid) = '(status = ''pending''::queuert.job_status)'),
    1,
    'exactly one index over pending rows (the claim index)'
);
SELECT has_index('queuert', 'job_blocker', 'job_blocker_chain_idx', 'blocker edges indexed by chain');

-- Public functions with exact argument names and defaults.
SELECT is(pg_get_function_arguments('queuert.start_chain'::regproc),
    'type_name text, input jsonb DEFAULT NULL::jsonb, id uuid DEFAULT NULL::uuid, '
    || 'schedule_at timestamp with time zone DEFAULT NULL::timestamp with time zone, '
    || 'schedule_after interval DEFAULT NULL::interval, blockers uuid[] DEFAULT NULL::uuid[], '
    || 'dedup_key text DEFAULT NULL::text, dedup_scope text DEFAULT ''incomplete''::text, '
    || 'dedup_window interval DEFAULT NULL::interval, priority integer DEFAULT 0, '
    || 'trace_context text DEFAULT NULL::text',
    'start_chain arguments');
SELECT is(pg_get_function_arguments('queuert.start_chains'::regproc),
    'items jsonb', 'start_chains arguments');
SELECT is(pg_get_function_arguments('queuert.claim'::regproc),
    'worker_id text, type_names text[] DEFAULT NULL::text[], max_jobs integer DEFAULT 1, '
    || 'lease interval DEFAULT NULL::interval',
    'claim arguments');
SELECT is(pg_get_function_arguments('queuert.complete'::regproc),
    'job_id uuid, worker_id text, output jsonb DEFAULT NULL::jsonb, '
    || 'attempt integer DEFAULT NULL::integer, trace_context text DEFAULT NULL::text',
    'complete arguments (trace_context since migration 0008)');
SELECT is(pg_get_function_arguments('queuert.continue_with'::regproc),
    'job_id uuid, worker_id text, type_name text, input jsonb DEFAULT NULL::jsonb, '
    || 'id uuid DEFAULT NULL::uuid, '
    || 'schedule_at timestamp with time zone DEFAULT NULL::timestamp with time zone, '
    || 'schedule_after interval DEFAULT NULL::interval, blockers uuid[] DEFAULT NULL::uuid[], '
    || 'priority integer DEFAULT NULL::integer, trace_context text DEFAULT NULL::text, '
    || 'attempt integer DEFAULT NULL::integer',
    'continue_with arguments');
SELECT is(pg_get_function_arguments('queuert.fail'::regproc),
    'job_id uuid, worker_id text, error text, '
    || 'retry_at timestamp with time zone DEFAULT NULL::timestamp with time zone, '
    || 'attempt integer DEFAULT NULL::integer',
    'fail arguments');
SELECT is(pg_get_function_arguments('queuert.renew_leases'::regproc),
    'worker_id text, job_ids uuid[], lease interval DEFAULT NULL::interval',
    'renew_leases arguments');
SELECT is(pg_get_function_arguments('queuert.reap'::regproc),
    'max_jobs integer DEFAULT 100', 'reap arguments');
SELECT is(pg_get_function_arguments('queuert.reap_jobs'::regproc),
    'max_jobs integer DEFAULT 100', 'reap_jobs arguments');
SELECT is(pg_get_function_arguments('queuert.next_due_at'::regproc),
    'type_names text[] DEFAULT NULL::text[]', 'next_due_at arguments');
SELECT is(pg_get_function_arguments('queuert.trigger_jobs'::regproc),
    'job_ids uuid[]', 'trigger_jobs arguments');
SELECT is(pg_get_function_arguments('queuert.cancel_chains'::regproc),
    'chain_ids uuid[], cascade boolean DEFAULT false', 'cancel_chains arguments');
SELECT is(pg_get_function_arguments('queuert.delete_chains'::regproc),
    'chain_ids uuid[], cascade boolean DEFAULT false', 'delete_chains arguments');
SELECT is(pg_get_function_arguments('queuert.retry_jobs'::regproc),
    'job_ids uuid[]', 'retry_jobs arguments');
SELECT is(pg_get_function_arguments('queuert.set_job_type'::regproc),
    'type_name text, max_attempts integer DEFAULT NULL::integer, '
    || 'backoff_initial interval DEFAULT ''00:00:10''::interval, '
    || 'backoff_multiplier double precision DEFAULT 2, '
    || 'backoff_max interval DEFAULT ''00:05:00''::interval, '
    || 'lease interval DEFAULT ''00:01:00''::interval, '
    || 'max_running integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, '
    || 'rate_interval interval DEFAULT NULL::interval',
    'set_job_type arguments (limits since migration 0006)');
SELECT is(pg_get_function_arguments('queuert.chain_jobs'::regproc),
    'chain_id uuid', 'chain_jobs arguments');
SELECT is(pg_get_function_arguments('queuert.complete_jobs'::regproc),
    'worker_id text, job_ids uuid[], outputs jsonb[] DEFAULT NULL::jsonb[], '
    || 'attempts integer[] DEFAULT NULL::integer[], trace_contexts text[] DEFAULT NULL::text[]',
    'complete_jobs arguments (trace_contexts since migration 0008)');
SELECT is(pg_get_function_arguments('queuert.fail_jobs'::regproc),
    'worker_id text, job_ids uuid[], errors text[], '
    || 'retry_ats timestamp with time zone[] DEFAULT NULL::timestamp with time zone[], '
    || 'attempts integer[] DEFAULT NULL::integer[]',
    'fail_jobs arguments');
SELECT is(pg_get_function_arguments('queuert.release_jobs'::regproc),
    'worker_id text, job_ids uuid[], attempts integer[] DEFAULT NULL::integer[]',
    'release_jobs arguments');
SELECT is(pg_get_function_arguments('queuert.release_unknown_jobs'::regproc),
    'worker_id text, known_ids uuid[] DEFAULT ''{}''::uuid[]',
    'release_unknown_jobs arguments');

-- Each public name is one function (no overloads to trip named calls).
SELECT is(
    (SELECT count(*)::integer FROM pg_proc AS p
     JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname = 'queuert' AND p.proname = ANY(ARRAY[
         'start_chain', 'start_chains', 'claim', 'complete', 'complete_jobs',
         'continue_with', 'fail', 'renew_leases', 'reap', 'next_due_at',
         'trigger_jobs', 'cancel_chains', 'delete_chains', 'retry_jobs',
         'set_job_type', 'chain_jobs', 'release_jobs', 'fail_jobs', 'release_unknown_jobs',
         'reap_jobs'])),
    20,
    'twenty public functions, one each'
);

-- Returned columns.
SELECT is(pg_temp.result_cols('queuert.start_chain'::regproc),
    ARRAY['id', 'chain_id', 'type_name', 'status', 'scheduled_at', 'created_at', 'deduplicated',
        'trace_context'],
    'start_chain returns id, chain_id, type_name, status, scheduled_at, created_at, deduplicated, trace_context');
SELECT is(pg_temp.result_cols('queuert.start_chains'::regproc),
    ARRAY['ord', 'id', 'chain_id', 'type_name', 'status', 'scheduled_at', 'created_at',
        'deduplicated', 'trace_context'],
    'start_chains returns ord first, then the start_chain columns (trace_context since migration 0008)');
SELECT is(pg_temp.result_cols('queuert.complete'::regproc),
    ARRAY['id', 'chain_id', 'status', 'chain_completed', 'dependents', 'unblocked_types'],
    'complete returns its columns (dependents since migration 0008, unblocked_types since 0009)');
SELECT is(pg_temp.result_cols('queuert.continue_with'::regproc),
    ARRAY['id', 'chain_id', 'chain_index', 'type_name', 'status', 'scheduled_at', 'deduplicated'],
    'continue_with returns the new job');
SELECT is(pg_temp.result_cols('queuert.fail'::regproc),
    ARRAY['id', 'status', 'scheduled_at', 'attempt'], 'fail returns its columns');
SELECT is(pg_temp.result_cols('queuert.renew_leases'::regproc),
    ARRAY['job_id', 'outcome'], 'renew_leases returns job_id, outcome');
SELECT is(pg_temp.result_cols('queuert.complete_jobs'::regproc),
    ARRAY['job_id', 'outcome', 'unblocked_types', 'dependents'],
    'complete_jobs returns job_id, outcome, unblocked_types, dependents (since migration 0008)');
SELECT is(pg_temp.result_cols('queuert.fail_jobs'::regproc),
    ARRAY['job_id', 'outcome', 'status', 'scheduled_at'], 'fail_jobs returns job_id, outcome, status, scheduled_at');
SELECT is(pg_temp.result_cols('queuert.release_jobs'::regproc),
    ARRAY['job_id', 'outcome'], 'release_jobs returns job_id, outcome');
SELECT is(pg_temp.result_cols('queuert.release_unknown_jobs'::regproc),
    ARRAY['job_id', 'type_name'], 'release_unknown_jobs returns job_id, type_name');
SELECT is(pg_temp.result_cols('queuert.reap'::regproc),
    ARRAY['job_id', 'previous_worker', 'status'], 'reap returns job_id, previous_worker, status');
SELECT is(pg_temp.result_cols('queuert.reap_jobs'::regproc),
    ARRAY['job_id', 'previous_worker', 'status', 'type_name'], 'reap_jobs returns reap''s columns and type_name');
SELECT is(pg_temp.result_cols('queuert.trigger_jobs'::regproc),
    ARRAY['job_id'], 'trigger_jobs returns job_id');
SELECT is(pg_temp.result_cols('queuert.retry_jobs'::regproc),
    ARRAY['job_id'], 'retry_jobs returns job_id');
SELECT is(pg_temp.result_cols('queuert.cancel_chains'::regproc),
    ARRAY['chain_id'], 'cancel_chains returns chain_id');
SELECT is(pg_temp.result_cols('queuert.delete_chains'::regproc),
    ARRAY['chain_id'], 'delete_chains returns chain_id');
SELECT function_returns('queuert', 'next_due_at', ARRAY['text[]'], 'timestamp with time zone',
    'next_due_at returns timestamptz');
SELECT function_returns('queuert', 'chain_jobs', ARRAY['uuid'], 'setof queuert.job',
    'chain_jobs returns the rows of queuert.job');
SELECT ok(
    ARRAY['id', 'type_name', 'chain_id', 'chain_type_name', 'chain_index', 'input', 'output',
        'status', 'priority', 'attempt', 'scheduled_at', 'created_at', 'completed_at',
        'completed_by', 'leased_by', 'leased_until', 'last_attempt_at', 'last_attempt_error',
        'continued_to', 'dedup_key', 'trace_context', 'blockers', 'seq']
    <@ pg_temp.result_cols('queuert.claim'::regproc),
    'claim returns every listed job column plus blockers and seq'
);
SELECT is(
    (SELECT t.typname::text FROM pg_proc AS p
     JOIN pg_type AS t ON t.oid = p.proargtypes[0]
     WHERE p.oid = 'queuert.claim'::regproc),
    'text', 'claim worker_id is text'
);

-- Limits, schedules, retention (migration 0006).
SELECT has_table('queuert', 'schedule', 'table queuert.schedule');
SELECT has_table('queuert', 'job_running_slot', 'table queuert.job_running_slot');
SELECT has_table('queuert', 'job_rate_slot', 'table queuert.job_rate_slot');
SELECT columns_are('queuert', 'schedule', ARRAY[
    'name', 'cron', 'timezone', 'type_name', 'input', 'priority', 'next_tick_at',
    'last_tick_at', 'last_chain_id', 'created_at', 'updated_at'], 'queuert.schedule columns');
SELECT is(pg_temp.result_cols('queuert.fire_schedules'::regproc),
    ARRAY['schedule_name', 'tick_at', 'chain_id', 'deduplicated', 'next_tick_at', 'type_name'],
    'fire_schedules returns schedule_name, tick_at, chain_id, deduplicated, next_tick_at, type_name');
SELECT is(pg_temp.result_cols('queuert.prune'::regproc), ARRAY['chains', 'jobs'], 'prune returns chains, jobs');
SELECT is(pg_get_function_arguments('queuert.set_schedule'::regproc),
    'name text, cron text, type_name text, input jsonb DEFAULT NULL::jsonb, '
    || 'timezone text DEFAULT ''UTC''::text, priority integer DEFAULT 0',
    'set_schedule arguments');
SELECT is(pg_get_function_arguments('queuert.prune'::regproc),
    'older_than interval, batch_size integer DEFAULT 1000, failed_older_than interval DEFAULT NULL::interval',
    'prune arguments');

-- Inspection views.
SELECT has_view('queuert', 'chain', 'view queuert.chain');
SELECT has_view('queuert', 'stats', 'view queuert.stats');
SELECT columns_are('queuert', 'chain', ARRAY[
    'chain_id', 'type_name', 'status', 'current_job_id', 'current_type_name', 'job_count',
    'created_at', 'completed_at', 'output'], 'queuert.chain columns');
SELECT columns_are('queuert', 'stats', ARRAY['type_name', 'status', 'count', 'oldest_due_age'],
    'queuert.stats columns');

-- Engine functions are schema-qualified and do not depend on the caller's path.
SELECT is(
    (SELECT count(*)::integer FROM pg_proc AS p
     JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname = 'queuert' AND p.prosrc LIKE '%{{%'),
    0,
    'no unreplaced {{ schema }} placeholder in any function'
);

-- The functions work with an empty search_path (fully schema-qualified).
SET LOCAL search_path = '';
CREATE TEMP TABLE probe_start AS
SELECT s.status::text AS status FROM queuert.start_chain(type_name => 'schema-probe') AS s;
CREATE TEMP TABLE probe_claim AS
SELECT c.type_name FROM queuert.claim(worker_id => 'w') AS c;
RESET search_path;
SELECT is((SELECT status FROM probe_start), 'pending',
    'start_chain works with an empty search_path');
SELECT is((SELECT type_name FROM probe_claim), 'schema-probe',
    'claim works with an empty search_path');

SELECT * FROM finish();
ROLLBACK;
