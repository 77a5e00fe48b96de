-- queuert 0005: internal functions that sql/ no longer defines.
--
-- sql/ re-creates every function it defines on each migrate but never
-- drops one it stopped defining. _notify and _announce were renamed
-- _notify_batch and _notify_inline (what each does, not two synonyms);
-- _chain_item_ok's rules now live only in _chain_item_problem. Nothing
-- depends on them by catalog reference (their callers are PL/pgSQL, which
-- sql/ replaces in the same transaction). IF EXISTS: on a first install
-- sql/ has not run yet.

DROP FUNCTION IF EXISTS {{ schema }}._notify(text, text []);
DROP FUNCTION IF EXISTS {{ schema }}._announce(text, text);
DROP FUNCTION IF EXISTS {{ schema }}._chain_item_ok(jsonb);
