"""Schema version 6: a settle that claims the children it makes ready without queueing them.

With ``tasker_settle_v4`` a chain step writes its child twice in one transaction: the
combined statement moves it ``pending -> enqueued`` (into the claim index), and the inlined
claim finds it there and moves it ``enqueued -> in_progress``. A step's ``state`` is in
partial-index predicates, so each of those updates is a new row version inserted into every
index, plus a transition whose predecessor's ``most_recent`` flag is cleared, plus the claim
statement's own start-up. ``tasker_settle_v6`` moves up to ``p_claim`` of the children that
become ready straight to ``in_progress`` for the settling worker, in the combined statement:
one row update per child, both transitions recorded (``enqueue`` then ``start``, so a step's
audit trail is the same legal path as before), and the claim rows built from the completed
parents' new results. The queue is claimed only for the slots left and only when an enqueued
step is visible at all (an ``EXISTS`` probe costs far less than starting the claim's UPDATE).
Decisions and claims reported are version 4's (``tests/test_schema_v6.py`` compares them).

Only adds a function: workers of version 5 keep running on a version-6 database. Frozen text,
like every applied migration.
"""

from __future__ import annotations

__all__ = ["DIRECT_CLAIM"]

DIRECT_CLAIM = r"""
-- Settle finished attempts, as tasker_settle_v4 does and with the same rows; children that
-- become ready are claimed for p_owner directly (up to p_claim), the queue for what is left.
CREATE FUNCTION tasker_settle_v6(
    p_tasks text[], p_steps text[], p_attempts integer[], p_ok boolean[], p_results jsonb[],
    p_errors jsonb[], p_retry_at double precision[], p_meta jsonb[], p_reasons text[],
    p_bump integer[], p_expired_before double precision, p_now double precision,
    p_stop boolean, p_owner text, p_claim integer, p_until double precision
) RETURNS TABLE (
    kind text, task_id text, name text, detail text, idx integer, handler text,
    attempts integer, max_attempts integer, retryable boolean, dependencies jsonb,
    at double precision, steps text[]
) LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
DECLARE
    blocked text[];
    c_tid tid[];
    c_ord bigint[];
    c_prev bigint[];
    n integer := 0;
    direct integer := 0;
    claimed integer;
    r record;
BEGIN
    IF p_expired_before IS NOT NULL OR (true = ALL (p_ok)) IS NOT TRUE THEN
        RETURN QUERY SELECT * FROM tasker_settle_v3(p_tasks, p_steps, p_attempts, p_ok,
            p_results, p_errors, p_retry_at, p_meta, p_reasons, p_bump, p_expired_before, p_now,
            p_stop, p_owner, p_claim, p_until);
        RETURN;
    END IF;
    -- Tasks in id order first, then the outcomes' steps (version 4's lock order).
    SELECT array_agg(l.id) FILTER (WHERE p_stop AND l.failed > 0) INTO blocked
    FROM (SELECT tk.id, tk.failed FROM tasker_tasks tk WHERE tk.id = ANY (p_tasks)
          ORDER BY tk.id FOR NO KEY UPDATE) l;
    SELECT array_agg(s.ctid), array_agg(o.ord), array_agg(s.last_transition_id)
    INTO c_tid, c_ord, c_prev
    FROM unnest(p_tasks, p_steps, p_attempts) WITH ORDINALITY AS o(t, n, a, ord)
    CROSS JOIN LATERAL (
        SELECT st.ctid, st.last_transition_id, st.state, st.attempts FROM tasker_steps st
        WHERE st.name = o.n AND st.task_id = o.t OFFSET 0 FOR UPDATE
    ) s
    WHERE s.state = 'in_progress' AND s.attempts = o.a;
    FOR r IN
        WITH o AS (
            SELECT * FROM unnest(p_tasks, p_steps) WITH ORDINALITY AS o(t, n, ord)
        ), v AS (
            SELECT * FROM unnest(c_tid, c_ord, c_prev) AS v(tid, ord, prev)
        ), u AS (
            UPDATE tasker_steps st SET
                state = 'complete', results = p_results[v.ord], error = NULL,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = p_now,
                last_transition_id = nextval('tasker_transitions_id_seq')
            FROM v WHERE st.ctid = ANY (c_tid) AND st.ctid = v.tid
            RETURNING st.task_id, st.name, st.idx, st.results, st.children,
                st.last_transition_id AS tid, v.ord, v.prev
        ), k AS (
            SELECT u.task_id AS t, x.i, count(*)::integer AS n
            FROM u CROSS JOIN LATERAL unnest(u.children) AS x(i)
            GROUP BY u.task_id, x.i
        ), h AS (
            -- Each child with what the statement's snapshot says of it (pending steps of a
            -- locked task change only under its lock) and whether it becomes ready.
            SELECT k.t, k.i, k.n, ch.prev, ch.attempts,
                ch.state = 'pending' AND ch.remaining_parents = k.n
                    AND NOT (k.t = ANY (coalesce(blocked, '{}'))) AS go
            FROM k CROSS JOIN LATERAL (
                SELECT st.state, st.remaining_parents, st.last_transition_id AS prev,
                    st.attempts
                FROM tasker_steps st WHERE st.task_id = k.t AND st.idx = k.i OFFSET 0) ch
        ), g AS (
            -- The first p_claim ready children (by task, index) are this worker's; each
            -- ready one gets its enqueue transition's id here, before its start's below.
            SELECT h.*, h.go AND row_number() OVER (PARTITION BY h.go ORDER BY h.t, h.i)
                    <= p_claim AS mine,
                CASE WHEN h.go THEN nextval('tasker_transitions_id_seq') END AS enq
            FROM h
        ), e AS (
            UPDATE tasker_steps st SET
                remaining_parents = st.remaining_parents - g.n,
                state = CASE WHEN g.mine THEN 'in_progress' WHEN g.go THEN 'enqueued'
                             ELSE st.state END,
                attempts = CASE WHEN g.mine THEN st.attempts + 1 ELSE st.attempts END,
                lease_owner = CASE WHEN g.mine THEN p_owner ELSE st.lease_owner END,
                lease_expires_at = CASE WHEN g.mine THEN p_until ELSE st.lease_expires_at END,
                next_retry_at = CASE WHEN g.mine THEN NULL ELSE st.next_retry_at END,
                visible_at = CASE WHEN g.mine THEN NULL WHEN g.go THEN p_now
                                  ELSE st.visible_at END,
                updated_at = CASE WHEN g.go THEN p_now ELSE st.updated_at END,
                last_transition_id = CASE WHEN g.mine THEN nextval('tasker_transitions_id_seq')
                                          WHEN g.go THEN g.enq
                                          ELSE st.last_transition_id END
            FROM g WHERE st.task_id = g.t AND st.idx = g.i
            RETURNING st.task_id, st.name, st.idx, st.handler, st.max_attempts, st.retryable,
                st.parents, g.attempts + 1 AS attempt, st.last_transition_id AS tid, g.go,
                g.mine, g.enq, g.prev
        ), f AS (
            UPDATE tasker_transitions tr SET most_recent = false
            WHERE tr.id = ANY (ARRAY(SELECT u.prev FROM u UNION ALL
                                     SELECT e.prev FROM e WHERE e.go))
        ), ins AS (
            INSERT INTO tasker_transitions
                (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
                 most_recent)
            SELECT u.tid, u.task_id, u.name, 'in_progress', 'complete', 'complete',
                p_reasons[u.ord], p_meta[u.ord], p_now, true
            FROM u
            UNION ALL
            SELECT e.enq, e.task_id, e.name, 'pending', 'enqueued', 'enqueue',
                'dependencies satisfied', jsonb_build_object('attempt', e.attempt), p_now,
                NOT e.mine
            FROM e WHERE e.go
            UNION ALL
            SELECT e.tid, e.task_id, e.name, 'enqueued', 'in_progress', 'start',
                'claimed by ' || p_owner,
                jsonb_build_object('attempt', e.attempt, 'owner', p_owner), p_now, true
            FROM e WHERE e.mine
        ), cnt AS (
            UPDATE tasker_tasks tk SET
                satisfied = tk.satisfied + d.n,
                in_flight = tk.in_flight - d.n + coalesce(q.n, 0)
            FROM (SELECT u.task_id, count(*)::integer AS n FROM u GROUP BY u.task_id) d
            LEFT JOIN (SELECT e.task_id, count(*)::integer AS n FROM e WHERE e.go
                       GROUP BY e.task_id) q ON q.task_id = d.task_id
            WHERE tk.id = ANY (p_tasks) AND tk.id = d.task_id
            RETURNING tk.id, tk.state = 'in_progress' AND tk.in_flight > 0
                AND tk.retrying = 0 AND NOT tk.dirty AND tk.satisfied < tk.total AS keep
        )
        SELECT 1 AS grp, o.ord AS ord, 'lost'::text AS kind, o.t AS task_id, o.n AS name,
            NULL::integer AS attempts, true AS keep, false AS mine, NULL::integer AS idx,
            NULL::text AS handler, NULL::integer AS max_attempts, NULL::boolean AS retryable,
            NULL::jsonb AS dependencies
        FROM o WHERE NOT (o.ord = ANY (ARRAY(SELECT u.ord FROM u)))
        UNION ALL
        SELECT 2, e.enq, 'enqueued', e.task_id, e.name, e.attempt, true, e.mine, NULL, NULL,
            NULL, NULL, NULL
        FROM e WHERE e.go
        UNION ALL
        SELECT 3, 0, 'task', cnt.id, NULL, NULL, cnt.keep, false, NULL, NULL, NULL, NULL, NULL
        FROM cnt
        UNION ALL
        -- The dependencies of a claimed child: a parent completed by this statement has its
        -- new results in u (the statement's snapshot still holds the old row).
        SELECT 4, e.tid, 'claim', e.task_id, e.name, e.attempt, true, true, e.idx, e.handler,
            e.max_attempts, e.retryable,
            CASE WHEN coalesce(cardinality(e.parents), 0) = 0 THEN '{}'::jsonb
                 ELSE (SELECT jsonb_object_agg(p.name, coalesce(pu.results, p.results))
                       FROM unnest(e.parents) AS k(i) CROSS JOIN LATERAL (
                           SELECT p.name, p.results FROM tasker_steps p
                           WHERE p.task_id = e.task_id AND p.idx = k.i OFFSET 0) p
                       LEFT JOIN u pu ON pu.task_id = e.task_id AND pu.idx = k.i) END
        FROM e WHERE e.mine
        ORDER BY 1, 2, 4
    LOOP
        IF r.kind = 'task' AND NOT r.keep THEN
            RETURN QUERY SELECT f.kind, r.task_id, f.name, f.detail, NULL::integer,
                NULL::text, f.attempt, NULL::integer, NULL::boolean, NULL::jsonb, f.at, f.steps
            FROM tasker_finalize_v3(r.task_id, p_now, p_stop, false) f;
            CONTINUE;
        END IF;
        kind := r.kind; task_id := r.task_id; name := r.name; idx := r.idx;
        handler := r.handler; attempts := r.attempts; max_attempts := r.max_attempts;
        retryable := r.retryable; dependencies := r.dependencies; at := NULL; steps := NULL;
        detail := CASE r.kind WHEN 'enqueued' THEN 'ready' WHEN 'task' THEN 'in_progress' END;
        IF r.kind = 'enqueued' AND NOT r.mine THEN
            n := n + 1;
        ELSIF r.kind = 'claim' THEN
            direct := direct + 1;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF p_claim > direct AND EXISTS (
        SELECT 1 FROM tasker_steps s WHERE s.state = 'enqueued' AND s.visible_at <= p_now
    ) THEN
        -- tasker_claim's statement, inlined, for the slots left.
        RETURN QUERY
        WITH c AS (
            SELECT s.task_id, s.idx, s.last_transition_id AS prev FROM tasker_steps s
            WHERE s.state = 'enqueued' AND s.visible_at <= p_now
            ORDER BY s.visible_at
            LIMIT p_claim - direct
            FOR UPDATE SKIP LOCKED
        ), u AS (
            UPDATE tasker_steps s
            SET state = 'in_progress', attempts = s.attempts + 1, lease_owner = p_owner,
                lease_expires_at = p_until, next_retry_at = NULL, visible_at = NULL,
                updated_at = p_now, last_transition_id = nextval('tasker_transitions_id_seq')
            FROM c WHERE s.task_id = c.task_id AND s.idx = c.idx
            RETURNING s.task_id, s.name, s.idx, s.handler, s.attempts, s.max_attempts,
                s.retryable, s.parents, s.last_transition_id
        ), f AS (
            UPDATE tasker_transitions tr SET most_recent = false
            WHERE tr.id = ANY (ARRAY(SELECT c.prev FROM c))
        ), ins AS (
            INSERT INTO tasker_transitions
                (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
                 most_recent)
            SELECT u.last_transition_id, u.task_id, u.name, 'enqueued', 'in_progress', 'start',
                'claimed by ' || p_owner,
                jsonb_build_object('attempt', u.attempts, 'owner', p_owner), p_now, true
            FROM u ORDER BY u.last_transition_id
        )
        SELECT 'claim'::text, u.task_id, u.name, NULL::text, u.idx, u.handler, u.attempts,
            u.max_attempts, u.retryable,
            CASE WHEN coalesce(cardinality(u.parents), 0) = 0 THEN '{}'::jsonb
                 ELSE (SELECT jsonb_object_agg(p.name, p.results)
                       FROM unnest(u.parents) AS k(i) CROSS JOIN LATERAL (
                           SELECT p.name, p.results FROM tasker_steps p
                           WHERE p.task_id = u.task_id AND p.idx = k.i OFFSET 0) p) END,
            NULL::double precision, NULL::text[]
        FROM u;
        GET DIAGNOSTICS claimed = ROW_COUNT;
    END IF;
    -- Wake other workers only if this one may have left work behind (as version 4 does).
    IF n > 0 AND coalesce(claimed, 0) >= p_claim - direct THEN
        PERFORM pg_notify('tasker_work', 'w');
    END IF;
END $$;
"""
