-- start_chains: batch creation in input order, defaults, in-batch blockers and dedup.
BEGIN;
SELECT plan(41);

CREATE FUNCTION pg_temp.u(i integer) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid $$;

-- Three plain items.
CREATE TEMP TABLE b1 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'a', 'id', pg_temp.u(1), 'input', jsonb_build_object('n', 1)),
    jsonb_build_object('type_name', 'b', 'id', pg_temp.u(2), 'priority', 5,
        'trace_context', 'tc-2', 'schedule_after_ms', 1500),
    jsonb_build_object('type_name', 'a', 'id', pg_temp.u(3), 'schedule_at', now() - interval '1 day')
));
SELECT results_eq(
    $$SELECT ord, id, chain_id, type_name, status::text, scheduled_at, created_at, deduplicated
      FROM b1$$,
    $$VALUES
        (1, pg_temp.u(1), pg_temp.u(1), 'a', 'pending', now(), now(), false),
        (2, pg_temp.u(2), pg_temp.u(2), 'b', 'pending', now() + interval '1.5 seconds', now(), false),
        (3, pg_temp.u(3), pg_temp.u(3), 'a', 'pending', now(), now(), false)$$,
    'one row per item in input order; schedule_after_ms added; past schedule_at clamped'
);
SELECT results_eq(
    $$SELECT id, type_name, chain_type_name, chain_index, input, priority, trace_context, attempt
      FROM queuert.job WHERE id IN (pg_temp.u(1), pg_temp.u(2), pg_temp.u(3)) ORDER BY seq$$,
    $$VALUES
        (pg_temp.u(1), 'a', 'a', 0, '{"n": 1}'::jsonb, 0, NULL, 0),
        (pg_temp.u(2), 'b', 'b', 0, NULL::jsonb, 5, 'tc-2', 0),
        (pg_temp.u(3), 'a', 'a', 0, NULL::jsonb, 0, NULL, 0)$$,
    'rows inserted in input order (seq) with the given fields'
);

-- JSON null takes the default, like an absent key.
CREATE TEMP TABLE b2 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(jsonb_build_object(
    'type_name', 'nulls', 'id', pg_temp.u(4), 'input', NULL, 'schedule_at', NULL,
    'schedule_after_ms', NULL, 'blockers', NULL, 'dedup_key', NULL, 'dedup_scope', NULL,
    'dedup_window_ms', NULL, 'priority', NULL, 'trace_context', NULL
)));
SELECT row_eq(
    $$SELECT status::text, scheduled_at, priority, dedup_key, input IS NULL, trace_context
      FROM queuert.job WHERE id = pg_temp.u(4)$$,
    ROW('pending'::text, now(), 0, NULL::text, true, NULL::text),
    'JSON nulls take the defaults'
);
SELECT ok(
    (SELECT id IS NOT NULL FROM queuert.start_chains('[{"type_name": "gen"}]')),
    'an item without id gets a generated one'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.start_chains('[]')), 0,
    'an empty array creates nothing and returns no rows'
);

-- Fan-out and fan-in in one call: blockers name earlier items by id.
CREATE TEMP TABLE b3 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'child', 'id', pg_temp.u(10)),
    jsonb_build_object('type_name', 'child', 'id', pg_temp.u(11)),
    jsonb_build_object('type_name', 'parent', 'id', pg_temp.u(12),
        'blockers', jsonb_build_array(pg_temp.u(11), pg_temp.u(10)))
));
SELECT results_eq(
    $$SELECT ord, status::text FROM b3$$,
    $$VALUES (1, 'pending'), (2, 'pending'), (3, 'blocked')$$,
    'the fan-in item is blocked on the two earlier items'
);
SELECT results_eq(
    $$SELECT position, blocker_chain_id FROM queuert.job_blocker
      WHERE job_id = pg_temp.u(12) ORDER BY position$$,
    $$VALUES (1, pg_temp.u(11)), (2, pg_temp.u(10))$$,
    'in-batch blocker edges in blocker order'
);
SELECT is((SELECT open_blockers FROM queuert.job WHERE id = pg_temp.u(12)), 2,
    'two open blockers');

-- Mixed: an external completed chain and an external incomplete chain.
UPDATE queuert.job SET status = 'completed', completed_at = now(), chain_completed_at = now()
WHERE id = pg_temp.u(1);
CREATE TEMP TABLE b4 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(13), 'blockers', jsonb_build_array(pg_temp.u(1))),
    jsonb_build_object('type_name', 'p', 'id', pg_temp.u(14),
        'blockers', jsonb_build_array(pg_temp.u(1), pg_temp.u(2)))
));
SELECT results_eq(
    $$SELECT b4.ord, b4.status::text, j.open_blockers FROM b4 JOIN queuert.job AS j ON j.id = b4.id
      ORDER BY b4.ord$$,
    $$VALUES (1, 'pending', 0), (2, 'blocked', 1)$$,
    'a complete external blocker does not block; an incomplete one does'
);

-- Naming the item itself or a later one is QU002; an unknown chain too.
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(20),
            'blockers', jsonb_build_array(pg_temp.u(20)))))$$,
    'QU002',
    'start_chains item 1 names blocker 00000000-0000-0000-0000-000000000020, which is that item itself or a later one',
    'a blocker naming the item itself is QU002'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(21),
            'blockers', jsonb_build_array(pg_temp.u(22))),
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(22))))$$,
    'QU002',
    'start_chains item 1 names blocker 00000000-0000-0000-0000-000000000022, which is that item itself or a later one',
    'a blocker naming a later item is QU002'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(23)),
        jsonb_build_object('type_name', 'x', 'blockers', jsonb_build_array(pg_temp.u(98)))))$$,
    'QU002', 'blocker chain 00000000-0000-0000-0000-000000000098 not found',
    'an unknown external blocker is QU002'
);
SELECT is(
    (SELECT count(*)::integer FROM queuert.job WHERE id IN (pg_temp.u(20), pg_temp.u(21),
        pg_temp.u(22), pg_temp.u(23))),
    0, 'nothing written by the refused batches'
);

-- Dedup inside the batch: later items with the same (type, key) resolve to the first.
CREATE TEMP TABLE b5 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'd', 'id', pg_temp.u(30), 'dedup_key', 'k1'),
    jsonb_build_object('type_name', 'd', 'id', pg_temp.u(31), 'dedup_key', 'k1'),
    jsonb_build_object('type_name', 'e', 'id', pg_temp.u(32), 'dedup_key', 'k1'),
    jsonb_build_object('type_name', 'd', 'id', pg_temp.u(33), 'dedup_key', 'k2')
));
SELECT results_eq(
    $$SELECT ord, id, status::text, deduplicated FROM b5$$,
    $$VALUES (1, pg_temp.u(30), 'pending', false), (2, pg_temp.u(30), 'pending', true),
        (3, pg_temp.u(32), 'pending', false), (4, pg_temp.u(33), 'pending', false)$$,
    'a repeated (type, key) in the batch resolves to the first item'
);
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id = pg_temp.u(31)), 0,
    'the deduplicated item wrote no job');

-- An earlier item that deduplicated to an existing chain: a blocker naming it
-- means the chain it resolved to.
SELECT count(*) AS n FROM queuert.start_chain('ext', id => pg_temp.u(40), dedup_key => 'e1') \gset
CREATE TEMP TABLE b6 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'ext', 'id', pg_temp.u(41), 'dedup_key', 'e1'),
    jsonb_build_object('type_name', 'fanin', 'id', pg_temp.u(42),
        'blockers', jsonb_build_array(pg_temp.u(41)))
));
SELECT results_eq(
    $$SELECT ord, id, status::text, deduplicated, created_at FROM b6$$,
    $$VALUES (1, pg_temp.u(40), 'pending', true, now()), (2, pg_temp.u(42), 'blocked', false, now())$$,
    'item 1 resolves to the existing chain; item 2 is blocked on it'
);
SELECT results_eq(
    $$SELECT blocker_chain_id FROM queuert.job_blocker WHERE job_id = pg_temp.u(42)$$,
    $$VALUES (pg_temp.u(40))$$,
    'the edge points at the chain the earlier item resolved to'
);
SELECT is((SELECT count(*)::integer FROM queuert.job WHERE id = pg_temp.u(41)), 0,
    'the deduplicated item id was never created');

-- A blocker naming an item that deduplicated to an earlier item of the same batch.
CREATE TEMP TABLE b6b AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'g', 'id', pg_temp.u(45), 'dedup_key', 'g1'),
    jsonb_build_object('type_name', 'g', 'id', pg_temp.u(46), 'dedup_key', 'g1'),
    jsonb_build_object('type_name', 'h', 'id', pg_temp.u(47), 'blockers', jsonb_build_array(pg_temp.u(46)))
));
SELECT results_eq(
    $$SELECT ord, id, status::text, deduplicated FROM b6b$$,
    $$VALUES (1, pg_temp.u(45), 'pending', false), (2, pg_temp.u(45), 'pending', true),
        (3, pg_temp.u(47), 'blocked', false)$$,
    'the blocker follows item 2 to the chain it resolved to (item 1)'
);
SELECT results_eq(
    $$SELECT position, blocker_chain_id FROM queuert.job_blocker WHERE job_id = pg_temp.u(47)$$,
    $$VALUES (1, pg_temp.u(45))$$, 'one edge, to item 1''s chain'
);

-- Dedup scope and window inside items.
UPDATE queuert.job SET status = 'completed', completed_at = now(), chain_completed_at = now()
WHERE id = pg_temp.u(40);
CREATE TEMP TABLE b7 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'ext', 'dedup_key', 'e1', 'dedup_scope', 'any'),
    jsonb_build_object('type_name', 'ext', 'dedup_key', 'e1', 'dedup_scope', 'incomplete',
        'id', pg_temp.u(43))
));
SELECT results_eq(
    $$SELECT ord, id, status::text, deduplicated FROM b7$$,
    $$VALUES (1, pg_temp.u(40), 'completed', true), (2, pg_temp.u(40), 'completed', true)$$,
    'scope any matches a completed chain; a later same-key item follows the first'
);
UPDATE queuert.job SET created_at = now() - interval '10 minutes' WHERE id = pg_temp.u(40);
CREATE TEMP TABLE b8 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'ext', 'dedup_key', 'e1', 'dedup_scope', 'any',
        'dedup_window_ms', 60000, 'id', pg_temp.u(44))
));
SELECT results_eq(
    $$SELECT id, deduplicated FROM b8$$, $$VALUES (pg_temp.u(44), false)$$,
    'a chain older than dedup_window_ms does not match'
);

-- FIFO follows input order.
CREATE TEMP TABLE b9 AS
SELECT * FROM queuert.start_chains(jsonb_build_array(
    jsonb_build_object('type_name', 'fifo', 'id', pg_temp.u(53)),
    jsonb_build_object('type_name', 'fifo', 'id', pg_temp.u(51)),
    jsonb_build_object('type_name', 'fifo', 'id', pg_temp.u(52))
));
SELECT results_eq(
    $$SELECT id FROM queuert.claim('w', ARRAY['fifo'], 10)$$,
    $$VALUES (pg_temp.u(53)), (pg_temp.u(51)), (pg_temp.u(52))$$,
    'claim follows the batch input order'
);

-- Malformed input: QU006, nothing written.
SELECT throws_ok($$SELECT * FROM queuert.start_chains('{"type_name": "x"}')$$, 'QU006',
    NULL, 'a non-array is QU006');
SELECT throws_ok($$SELECT * FROM queuert.start_chains(NULL)$$, 'QU006',
    NULL, 'NULL items is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'ok', 'id', pg_temp.u(60)),
        jsonb_build_object('type_name', 'ok', 'colour', 'red')))$$,
    'QU006', NULL, 'an unknown key is QU006'
);
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'ok', 'id', pg_temp.u(61)),
        jsonb_build_object('input', 1)))$$,
    'QU006', NULL, 'a missing type_name is QU006'
);
SELECT throws_ok($$SELECT * FROM queuert.start_chains('[1]')$$, 'QU006',
    NULL, 'a non-object item is QU006');
SELECT throws_ok($$SELECT * FROM queuert.start_chains('[{"type_name": ""}]')$$, 'QU006',
    NULL, 'an empty type_name is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains('[{"type_name": "x", "schedule_after_ms": -1}]')$$,
    'QU006', NULL,
    'a negative delay is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(
        '[{"type_name": "x", "schedule_after_ms": 5, "schedule_at": "2030-01-01T00:00:00Z"}]')$$,
    'QU006', NULL,
    'both schedule forms is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains('[{"type_name": "x", "dedup_key": "k", "dedup_scope": "all"}]')$$,
    'QU006', NULL,
    'an unknown dedup scope is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains('[{"type_name": "x", "schedule_at": "not a time"}]')$$,
    'QU006', NULL, 'an unparsable schedule_at is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains('[{"type_name": "x", "id": "nope"}]')$$,
    'QU006', NULL, 'a malformed id is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains('[{"type_name": "x", "priority": 1.5}]')$$,
    'QU006', NULL, 'a fractional priority is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(62)),
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(62))))$$,
    'QU006', 'start_chains gives id 00000000-0000-0000-0000-000000000062 to more than one item',
    'one id given to two items is QU006');
SELECT throws_ok(
    $$SELECT * FROM queuert.start_chains(jsonb_build_array(
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(63)),
        jsonb_build_object('type_name', 'x', 'id', pg_temp.u(2))))$$,
    'QU006', 'a job with id 00000000-0000-0000-0000-000000000002 already exists',
    'an existing id is QU006');
SELECT is(
    (SELECT count(*)::integer FROM queuert.job WHERE id IN (pg_temp.u(60), pg_temp.u(61),
        pg_temp.u(62), pg_temp.u(63))),
    0, 'nothing written by any refused batch'
);

-- Built for bulk: 1000 items in one call.
CREATE TEMP TABLE b10 AS
SELECT * FROM queuert.start_chains(
    (SELECT jsonb_agg(jsonb_build_object('type_name', 'bulk', 'input', g) ORDER BY g)
     FROM generate_series(1, 1000) AS g)
);
SELECT is((SELECT count(*)::integer FROM b10), 1000, '1000 rows returned');
SELECT ok(
    (SELECT bool_and(b10.ord = (j.input)::integer) FROM b10 JOIN queuert.job AS j ON j.id = b10.id),
    'each ord matches its item'
);
SELECT is(
    (SELECT array_agg((input)::integer ORDER BY seq) FROM queuert.job WHERE type_name = 'bulk'),
    (SELECT array_agg(g) FROM generate_series(1, 1000) AS g),
    'inserted in input order'
);

SELECT * FROM finish();
ROLLBACK;
