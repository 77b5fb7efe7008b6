"""Schema version 3: the functions report what they decided, so workers can publish events.

Version 2's functions return counts and final states; a worker could not tell which steps a
settle enqueued, whether a failure was scheduled for a retry, or whether a task started,
completed, failed or went to wait — so it published only a few lifecycle events. Version 3 adds
functions (``_v3``) that make the same changes and return one row per decision, in the same
round trip. It only adds: no table changes and no version-2 function is altered, so workers of
version 2 keep running on a version-3 database during a rolling upgrade (the version-2
functions stay as they are). Frozen text, like every applied migration.
"""

from __future__ import annotations

__all__ = ["REPORTING"]

_SETTINGS = """
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off"""

REPORTING = (
    r"""
-- Enqueue the given pending, ready steps of a (locked) task; one row per step enqueued, with
-- the attempt it will run as.
CREATE FUNCTION tasker_enqueue_ready_v3(p_task text, p_idx integer[], p_now double precision)
RETURNS TABLE (name text, attempt integer) LANGUAGE plpgsql"""
    + _SETTINGS
    + r""" AS $$
#variable_conflict use_column
DECLARE
    n integer;
    got integer[];
    prev bigint[];
BEGIN
    SELECT array_agg(r.idx), array_agg(r.last_transition_id) INTO got, prev
    FROM (SELECT s.idx, s.last_transition_id FROM tasker_steps s
          WHERE s.task_id = p_task AND s.idx = ANY (p_idx) AND s.state = 'pending'
              AND s.remaining_parents = 0
          FOR UPDATE) r;
    IF got IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH u AS (
        UPDATE tasker_steps s
        SET state = 'enqueued', visible_at = p_now, updated_at = p_now,
            last_transition_id = nextval('tasker_transitions_id_seq')
        WHERE s.task_id = p_task AND s.idx = ANY (got)
        RETURNING s.name, s.idx, s.attempts, s.last_transition_id
    ), f AS (
        UPDATE tasker_transitions tr SET most_recent = false WHERE tr.id = ANY (prev)
    ), ins AS (
        INSERT INTO tasker_transitions
            (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
             most_recent)
        SELECT u.last_transition_id, p_task, u.name, 'pending', 'enqueued', 'enqueue',
            'dependencies satisfied', jsonb_build_object('attempt', u.attempts + 1), p_now, true
        FROM u ORDER BY u.idx
    )
    SELECT u.name, u.attempts + 1 FROM u ORDER BY u.idx;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE tasker_tasks SET in_flight = in_flight + n WHERE id = p_task;
    PERFORM pg_notify('tasker_work', 'w');
END $$;

-- Enqueue the due retries of a (locked) task (error -> enqueued); one row per step enqueued.
CREATE FUNCTION tasker_enqueue_retries_v3(p_task text, p_now double precision)
RETURNS TABLE (name text, attempt integer) LANGUAGE plpgsql"""
    + _SETTINGS
    + r""" AS $$
#variable_conflict use_column
DECLARE
    n integer;
    got integer[];
    prev bigint[];
BEGIN
    SELECT array_agg(r.idx), array_agg(r.last_transition_id) INTO got, prev
    FROM (SELECT s.idx, s.last_transition_id FROM tasker_steps s
          WHERE s.task_id = p_task AND s.state = 'error' AND s.next_retry_at IS NOT NULL
              AND s.next_retry_at <= p_now AND tasker_can_retry(s)
          FOR UPDATE) r;
    IF got IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH u AS (
        UPDATE tasker_steps s
        SET state = 'enqueued', visible_at = p_now, updated_at = p_now,
            last_transition_id = nextval('tasker_transitions_id_seq')
        WHERE s.task_id = p_task AND s.idx = ANY (got)
        RETURNING s.name, s.idx, s.attempts, s.last_transition_id
    ), f AS (
        UPDATE tasker_transitions tr SET most_recent = false WHERE tr.id = ANY (prev)
    ), ins AS (
        INSERT INTO tasker_transitions
            (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
             most_recent)
        SELECT u.last_transition_id, p_task, u.name, 'error', 'enqueued', 'retry',
            'retry: backoff elapsed', jsonb_build_object('attempt', u.attempts + 1), p_now, true
        FROM u ORDER BY u.idx
    )
    SELECT u.name, u.attempts + 1 FROM u ORDER BY u.idx;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE tasker_tasks SET in_flight = in_flight + n, retrying = retrying - n WHERE id = p_task;
    PERFORM pg_notify('tasker_work', 'w');
END $$;

-- Finalize a (locked) task from its counters, as tasker_finalize does, reporting each decision:
-- ('enqueued', step, 'ready' | 'retry', attempt) per step dispatched; ('move', NULL, 'started')
-- for the task's first start; ('move', NULL, 'completed', at = started_at);
-- ('move', NULL, 'failed', steps = the steps failed for good); ('move', NULL, 'waiting',
-- at = the earliest retry); and last ('task', NULL, state afterwards).
CREATE FUNCTION tasker_finalize_v3(
    p_task text, p_now double precision, p_stop boolean, p_scan boolean
) RETURNS TABLE (
    kind text, name text, detail text, attempt integer, at double precision, steps text[]
) LANGUAGE plpgsql"""
    + _SETTINGS
    + r""" AS $$
#variable_conflict use_column
DECLARE
    t record;
    blocked boolean;
    nxt double precision;
    target text;
    ready integer[];
    first_start boolean;
BEGIN
    SELECT tk.state, tk.failed, tk.retrying, tk.started_at INTO t
    FROM tasker_tasks tk WHERE tk.id = p_task;
    IF t.state NOT IN ('pending', 'in_progress') THEN
        RETURN QUERY SELECT 'task'::text, NULL::text, t.state, NULL::integer,
            NULL::double precision, NULL::text[];
        RETURN;
    END IF;
    first_start := t.started_at IS NULL;
    blocked := p_stop AND t.failed > 0;
    IF NOT blocked THEN
        IF p_scan THEN
            SELECT array_agg(s.idx) INTO ready FROM tasker_steps s
            WHERE s.task_id = p_task AND s.state = 'pending' AND s.remaining_parents = 0;
        END IF;
        IF ready IS NOT NULL THEN
            RETURN QUERY SELECT 'enqueued'::text, e.name, 'ready'::text, e.attempt,
                NULL::double precision, NULL::text[]
            FROM tasker_enqueue_ready_v3(p_task, ready, p_now) e;
        END IF;
        IF t.retrying > 0 THEN
            RETURN QUERY SELECT 'enqueued'::text, e.name, 'retry'::text, e.attempt,
                NULL::double precision, NULL::text[]
            FROM tasker_enqueue_retries_v3(p_task, p_now) e;
        END IF;
    END IF;
    SELECT tk.state, tk.total, tk.satisfied, tk.in_flight, tk.retrying, tk.failed,
        tk.started_at INTO t
    FROM tasker_tasks tk WHERE tk.id = p_task;
    IF t.retrying > 0 AND NOT blocked THEN
        SELECT min(s.next_retry_at) INTO nxt FROM tasker_steps s
        WHERE s.task_id = p_task AND s.state = 'error' AND s.next_retry_at IS NOT NULL
            AND tasker_can_retry(s);
    END IF;
    IF t.satisfied = t.total THEN
        target := 'complete';
    ELSIF t.in_flight > 0 THEN
        target := 'in_progress';
    ELSIF t.retrying > 0 AND NOT blocked AND nxt IS NOT NULL THEN
        target := 'pending';
    ELSE
        target := 'error';
    END IF;
    IF t.state = 'pending' AND target <> 'pending' THEN
        PERFORM tasker_task_move(p_task, 'pending', 'in_progress', 'start',
            'dispatching ready steps', p_now, NULL);
        IF first_start THEN
            RETURN QUERY SELECT 'move'::text, NULL::text, 'started'::text, NULL::integer,
                p_now, NULL::text[];
        END IF;
    END IF;
    IF target = 'complete' THEN
        PERFORM tasker_task_move(p_task, 'in_progress', 'complete', 'complete',
            'all steps complete', p_now, NULL);
        RETURN QUERY SELECT 'move'::text, NULL::text, 'completed'::text, NULL::integer,
            coalesce(t.started_at, p_now), NULL::text[];
    ELSIF target = 'error' THEN
        PERFORM tasker_task_move(p_task, 'in_progress', 'error', 'fail',
            'steps failed permanently', p_now, NULL);
        RETURN QUERY SELECT 'move'::text, NULL::text, 'failed'::text, NULL::integer,
            NULL::double precision,
            coalesce((SELECT array_agg(s.name ORDER BY s.idx) FROM tasker_steps s
                      WHERE s.task_id = p_task AND s.state = 'error'
                          AND NOT tasker_can_retry(s)), '{}'::text[]);
    ELSIF target = 'pending' THEN
        IF t.state = 'in_progress' THEN
            PERFORM tasker_task_move(p_task, 'in_progress', 'pending', 'wait',
                'waiting for backoff', p_now, nxt);
            RETURN QUERY SELECT 'move'::text, NULL::text, 'waiting'::text, NULL::integer,
                nxt, NULL::text[];
        ELSE
            UPDATE tasker_tasks SET wake_at = nxt WHERE id = p_task;
        END IF;
        PERFORM pg_notify('tasker_work', 't');
    END IF;
    UPDATE tasker_tasks SET dirty = false WHERE id = p_task AND dirty;
    RETURN QUERY SELECT 'task'::text, NULL::text, target, NULL::integer,
        NULL::double precision, NULL::text[];
END $$;

-- Settle finished attempts, as tasker_settle (version 2) does, reporting each decision. Rows:
-- ('lost', task, step) for an outcome whose compare-and-set failed; ('retry' | 'permanent',
-- task, step, at = next retry) for each failure recorded; ('enqueued', task, step, 'ready' |
-- 'retry', attempts = the attempt it will run as) for each step dispatched; ('move', task, NULL,
-- 'started' | 'completed' | 'failed' | 'waiting', at, steps) as tasker_finalize_v3 reports;
-- ('task', task, NULL, state) for each task settled; then the claims ('claim', ...).
CREATE FUNCTION tasker_settle_v3(
    p_tasks text[], p_steps text[], p_attempts integer[], p_ok boolean[], p_results jsonb[],
    p_errors jsonb[], p_retry_at double precision[], p_meta jsonb[], p_reasons text[],
    p_bump integer[], p_expired_before double precision, p_now double precision,
    p_stop boolean, p_owner text, p_claim integer, p_until double precision
) RETURNS TABLE (
    kind text, task_id text, name text, detail text, idx integer, handler text,
    attempts integer, max_attempts integer, retryable boolean, dependencies jsonb,
    at double precision, steps text[]
) LANGUAGE plpgsql"""
    + _SETTINGS
    + r""" AS $$
#variable_conflict use_column
DECLARE
    c_tid tid[];
    c_ord bigint[];
    c_prev bigint[];
    done bigint[];
    settled text[];
    blocked text[];
    k_task text[];
    k_idx integer[];
    k_n integer[];
    k_go boolean[];
    f_ord bigint[];
    f_retry boolean[];
    f_at double precision[];
    n integer := 0;
    claimed integer;
    t record;
BEGIN
    PERFORM 1 FROM tasker_tasks tk WHERE tk.id = ANY (p_tasks) ORDER BY tk.id FOR NO KEY UPDATE;
    SELECT array_agg(s.ctid), array_agg(o.ord), array_agg(s.last_transition_id)
    INTO c_tid, c_ord, c_prev
    FROM unnest(p_tasks, p_steps, p_attempts) WITH ORDINALITY AS o(t, n, a, ord)
    CROSS JOIN LATERAL (
        SELECT st.ctid, st.last_transition_id FROM tasker_steps st
        WHERE st.name = o.n AND st.task_id = o.t AND st.state = 'in_progress'
            AND st.attempts = o.a
            AND (p_expired_before IS NULL OR st.lease_expires_at < p_expired_before)
        FOR UPDATE
    ) s;
    WITH v AS (
        SELECT * FROM unnest(c_tid, c_ord) AS v(tid, ord)
    ), u AS (
        UPDATE tasker_steps st SET
            state = CASE WHEN p_ok[v.ord] THEN 'complete' ELSE 'error' END,
            results = CASE WHEN p_ok[v.ord] THEN p_results[v.ord] ELSE st.results END,
            error = CASE WHEN p_ok[v.ord] THEN NULL ELSE p_errors[v.ord] END,
            next_retry_at = CASE WHEN p_ok[v.ord] THEN st.next_retry_at
                                 ELSE p_retry_at[v.ord] END,
            max_attempts = st.max_attempts + CASE WHEN p_ok[v.ord] THEN 0
                                                  ELSE p_bump[v.ord] END,
            lease_owner = NULL, lease_expires_at = NULL, updated_at = p_now,
            last_transition_id = nextval('tasker_transitions_id_seq')
        FROM v WHERE st.ctid = ANY (c_tid) AND st.ctid = v.tid
        RETURNING st.task_id, st.name, st.children, st.last_transition_id AS tid, v.ord,
            p_ok[v.ord] AS ok, tasker_can_retry(st) AS retry_ok, st.next_retry_at AS retry_at
    ), f AS (
        UPDATE tasker_transitions tr SET most_recent = false WHERE tr.id = ANY (c_prev)
    ), ins AS (
        INSERT INTO tasker_transitions
            (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
             most_recent)
        SELECT u.tid, u.task_id, u.name, 'in_progress', 'complete', 'complete',
            p_reasons[u.ord], p_meta[u.ord], p_now, true
        FROM u WHERE u.ok
        UNION ALL
        SELECT u.tid, u.task_id, u.name, 'in_progress', 'error', 'fail',
            p_reasons[u.ord], p_meta[u.ord], p_now, true
        FROM u WHERE NOT u.ok
    ), cnt AS (
        UPDATE tasker_tasks tk SET
            satisfied = tk.satisfied + g.nok,
            in_flight = tk.in_flight - g.n,
            retrying = tk.retrying + g.nretry,
            failed = tk.failed + g.nfail
        FROM (SELECT u.task_id, count(*)::integer AS n,
                     count(*) FILTER (WHERE u.ok)::integer AS nok,
                     count(*) FILTER (WHERE NOT u.ok AND u.retry_ok)::integer AS nretry,
                     count(*) FILTER (WHERE NOT u.ok AND NOT u.retry_ok)::integer AS nfail
              FROM u GROUP BY u.task_id) g
        WHERE tk.id = ANY (p_tasks) AND tk.id = g.task_id
        RETURNING tk.id, tk.failed
    )
    SELECT d.ords, d.tasks, d.f_ords, d.f_retry, d.f_at, b.ids, k.ts, k.cs
    INTO done, settled, f_ord, f_retry, f_at, blocked, k_task, k_idx
    FROM (SELECT array_agg(u.ord) AS ords, array_agg(DISTINCT u.task_id) AS tasks,
                 array_agg(u.ord ORDER BY u.ord) FILTER (WHERE NOT u.ok) AS f_ords,
                 array_agg(u.retry_ok ORDER BY u.ord) FILTER (WHERE NOT u.ok) AS f_retry,
                 array_agg(u.retry_at ORDER BY u.ord) FILTER (WHERE NOT u.ok) AS f_at
          FROM u) d,
         (SELECT array_agg(cnt.id) AS ids FROM cnt WHERE p_stop AND cnt.failed > 0) b,
         (SELECT array_agg(u.task_id) AS ts, array_agg(c.i) AS cs
          FROM u CROSS JOIN LATERAL unnest(u.children) AS c(i) WHERE u.ok) k;
    RETURN QUERY SELECT 'lost'::text, o.t, o.n, NULL::text, NULL::integer, NULL::text,
        NULL::integer, NULL::integer, NULL::boolean, NULL::jsonb, NULL::double precision,
        NULL::text[]
    FROM unnest(p_tasks, p_steps) WITH ORDINALITY AS o(t, n, ord)
    WHERE NOT (o.ord = ANY (coalesce(done, '{}')));
    IF f_ord IS NOT NULL THEN
        RETURN QUERY SELECT CASE WHEN x.r THEN 'retry' ELSE 'permanent' END, p_tasks[x.ord],
            p_steps[x.ord], NULL::text, NULL::integer, NULL::text, p_attempts[x.ord],
            NULL::integer, NULL::boolean, NULL::jsonb, x.at, NULL::text[]
        FROM unnest(f_ord, f_retry, f_at) AS x(ord, r, at);
    END IF;
    IF k_task IS NOT NULL THEN
        SELECT array_agg(s.ctid), array_agg(k.n), array_agg(s.go),
            array_agg(s.last_transition_id) FILTER (WHERE s.go)
        INTO c_tid, k_n, k_go, c_prev
        FROM (SELECT x.kt, x.ki, count(*)::integer AS n
              FROM unnest(k_task, k_idx) AS x(kt, ki) GROUP BY x.kt, x.ki) k
        CROSS JOIN LATERAL (
            SELECT st.ctid, st.last_transition_id,
                st.state = 'pending' AND st.remaining_parents = k.n
                    AND NOT (k.kt = ANY (coalesce(blocked, '{}'))) AS go
            FROM tasker_steps st WHERE st.task_id = k.kt AND st.idx = k.ki
            FOR UPDATE
        ) s;
        RETURN QUERY
        WITH v AS (
            SELECT * FROM unnest(c_tid, k_n, k_go) AS v(tid, n, go)
        ), u AS (
            UPDATE tasker_steps st SET
                remaining_parents = st.remaining_parents - v.n,
                state = CASE WHEN v.go THEN 'enqueued' ELSE st.state END,
                visible_at = CASE WHEN v.go THEN p_now ELSE st.visible_at END,
                updated_at = CASE WHEN v.go THEN p_now ELSE st.updated_at END,
                last_transition_id = CASE WHEN v.go THEN nextval('tasker_transitions_id_seq')
                                          ELSE st.last_transition_id END
            FROM v WHERE st.ctid = ANY (c_tid) AND st.ctid = v.tid
            RETURNING st.task_id, st.name, st.idx, st.attempts, st.last_transition_id AS tid, v.go
        ), f AS (
            UPDATE tasker_transitions tr SET most_recent = false WHERE tr.id = ANY (c_prev)
        ), ins AS (
            INSERT INTO tasker_transitions
                (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
                 most_recent)
            SELECT u.tid, u.task_id, u.name, 'pending', 'enqueued', 'enqueue',
                'dependencies satisfied', jsonb_build_object('attempt', u.attempts + 1), p_now,
                true
            FROM u WHERE u.go ORDER BY u.tid
        ), e AS (
            UPDATE tasker_tasks tk SET in_flight = tk.in_flight + g.n
            FROM (SELECT u.task_id, count(*)::integer AS n FROM u WHERE u.go
                  GROUP BY u.task_id) g
            WHERE tk.id = ANY (p_tasks) AND tk.id = g.task_id
        )
        SELECT 'enqueued'::text, u.task_id, u.name, 'ready'::text, NULL::integer, NULL::text,
            u.attempts + 1, NULL::integer, NULL::boolean, NULL::jsonb, NULL::double precision,
            NULL::text[]
        FROM u WHERE u.go ORDER BY u.tid;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    FOR t IN SELECT tk.id, tk.state, tk.total, tk.satisfied, tk.in_flight, tk.retrying, tk.dirty
             FROM tasker_tasks tk WHERE tk.id = ANY (coalesce(settled, '{}')) ORDER BY tk.id
    LOOP
        IF t.state = 'in_progress' AND t.in_flight > 0 AND t.retrying = 0 AND NOT t.dirty
                AND t.satisfied < t.total THEN
            kind := 'task'; task_id := t.id; name := NULL; detail := 'in_progress';
            attempts := NULL; at := NULL; steps := NULL;
            RETURN NEXT;
        ELSE
            RETURN QUERY SELECT f.kind, t.id, f.name, f.detail, NULL::integer, NULL::text,
                f.attempt, NULL::integer, NULL::boolean, NULL::jsonb, f.at, f.steps
            FROM tasker_finalize_v3(t.id, p_now, p_stop, false) f;
        END IF;
    END LOOP;
    RETURN QUERY SELECT 'claim'::text, c.task_id, c.name, NULL::text, c.idx, c.handler,
        c.attempts, c.max_attempts, c.retryable, c.dependencies, NULL::double precision,
        NULL::text[]
    FROM tasker_claim(p_owner, p_claim, p_until, p_now) c;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF n > 0 AND claimed >= p_claim THEN
        PERFORM pg_notify('tasker_work', 'w');
    END IF;
END $$;
"""
)
