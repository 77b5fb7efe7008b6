"""Schema version 5: a task's step graph loaded with one write per step instead of two.

``tasker_load_graph`` (versions 1 and 2) sets every step's ``parents`` and ``children`` in one
UPDATE and then counts its unfinished parents in a second: two new versions of each row (a
step's ``remaining_parents`` is in a partial index's predicate, so neither update is HOT and
each inserts into every index). For a task of 1,000 steps that was ~40 ms of the ~100 ms an
activation took. ``tasker_load_graph_v5`` writes all three columns in one UPDATE: the count reads
the parents' ``state``, which the statement does not change, so its snapshot gives the same
answer the second UPDATE did (``tests/test_schema_v5.py`` compares the rows).

Only adds a function: workers of version 4 keep running on a version-5 database. Frozen text,
like every applied migration.
"""

from __future__ import annotations

__all__ = ["ONE_PASS_GRAPH"]

ONE_PASS_GRAPH = r"""
-- Load a task's step graph (p_graph: [[parents, children], ...] by step index) as
-- tasker_load_graph does, writing each step once.
CREATE FUNCTION tasker_load_graph_v5(p_task text, p_graph jsonb) RETURNS void
LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    UPDATE tasker_steps s SET
        parents = ARRAY(SELECT jsonb_array_elements_text(p_graph -> s.idx -> 0)::integer),
        children = ARRAY(SELECT jsonb_array_elements_text(p_graph -> s.idx -> 1)::integer),
        remaining_parents = (
            SELECT count(*)
            FROM jsonb_array_elements_text(p_graph -> s.idx -> 0) AS k(i)
            CROSS JOIN LATERAL (
                SELECT p.state FROM tasker_steps p
                WHERE p.task_id = p_task AND p.idx = k.i::integer OFFSET 0) p
            WHERE p.state NOT IN ('complete', 'resolved_manually'))
    WHERE s.task_id = p_task;
    UPDATE tasker_tasks SET graph_loaded = true WHERE id = p_task;
END $$;
"""
