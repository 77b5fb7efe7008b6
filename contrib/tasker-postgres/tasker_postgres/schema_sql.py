"""The DDL of each schema version, as frozen text (a later change is a new version, never an edit).

Version 1 holds the tables, the indexes that make readiness, claims, retries and lease expiry
index scans, and the server-side functions that settle outcomes, claim work and finalize tasks in
one round trip each. All state machine knowledge in the functions is restricted to the moves the
distributed worker makes; a test holds their event names to spec/states.toml.
"""

from __future__ import annotations

TABLES = r"""
CREATE TABLE tasker_tasks (
    id text PRIMARY KEY,
    namespace text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    state text NOT NULL,
    context jsonb NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    idempotency_key text UNIQUE,
    started_at double precision,
    completed_at double precision,
    wake_at double precision,
    last_transition_id bigint,
    graph_loaded boolean NOT NULL DEFAULT false,
    dirty boolean NOT NULL DEFAULT false,
    total integer NOT NULL DEFAULT 0,
    satisfied integer NOT NULL DEFAULT 0,
    in_flight integer NOT NULL DEFAULT 0,
    retrying integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX tasker_tasks_created ON tasker_tasks (created_at DESC, id DESC);
CREATE INDEX tasker_tasks_state_created ON tasker_tasks (state, created_at DESC, id DESC);
CREATE INDEX tasker_tasks_due ON tasker_tasks ((coalesce(wake_at, 0))) WHERE state = 'pending';
CREATE INDEX tasker_tasks_dirty ON tasker_tasks (id) WHERE dirty;

CREATE TABLE tasker_steps (
    task_id text NOT NULL REFERENCES tasker_tasks (id) ON DELETE CASCADE,
    idx integer NOT NULL,
    name text NOT NULL,
    handler text NOT NULL,
    state text NOT NULL,
    max_attempts integer NOT NULL,
    retryable boolean NOT NULL,
    attempts integer NOT NULL,
    next_retry_at double precision,
    lease_owner text,
    lease_expires_at double precision,
    results jsonb,
    error jsonb,
    updated_at double precision NOT NULL,
    last_transition_id bigint,
    parents integer[],
    children integer[],
    remaining_parents integer,
    visible_at double precision,
    PRIMARY KEY (task_id, idx),
    -- (name, task_id), not (task_id, name): then the primary key is the only index that serves
    -- "task_id = ..." lookups, and a plan cached while the table was small cannot pick this
    -- one with a filter on idx (which turns a one-row lookup into a scan of the whole task).
    UNIQUE (name, task_id)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX tasker_steps_claim ON tasker_steps (visible_at) WHERE state = 'enqueued';
CREATE INDEX tasker_steps_ready ON tasker_steps (task_id)
    WHERE state = 'pending' AND remaining_parents = 0;
CREATE INDEX tasker_steps_retry_due ON tasker_steps (next_retry_at)
    WHERE state = 'error' AND next_retry_at IS NOT NULL;
CREATE INDEX tasker_steps_retry_task ON tasker_steps (task_id, next_retry_at)
    WHERE state = 'error' AND next_retry_at IS NOT NULL;
CREATE INDEX tasker_steps_leases ON tasker_steps (lease_expires_at) WHERE state = 'in_progress';

CREATE TABLE tasker_transitions (
    id bigserial PRIMARY KEY,
    task_id text NOT NULL,
    step text,
    from_state text NOT NULL,
    to_state text NOT NULL,
    event text NOT NULL,
    reason text NOT NULL,
    metadata jsonb NOT NULL,
    created_at double precision NOT NULL,
    most_recent boolean NOT NULL
) WITH (autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX tasker_transitions_task ON tasker_transitions (task_id, id);

CREATE SEQUENCE tasker_queue_token_seq;
CREATE TABLE tasker_queue (
    task_id text NOT NULL,
    step text NOT NULL,
    available_at double precision NOT NULL,
    visible_at double precision NOT NULL,
    seq bigserial NOT NULL,
    owner text,
    token bigint,
    expires_at double precision,
    PRIMARY KEY (task_id, step)
);
CREATE INDEX tasker_queue_visible ON tasker_queue (visible_at, seq);
"""

# A step "can retry" exactly as tasker_core.orchestration.finalizer.can_retry says.
FUNCTIONS = r"""
CREATE FUNCTION tasker_can_retry(s tasker_steps) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT s.state = 'error' AND s.retryable AND s.next_retry_at IS NOT NULL
        AND (s.error IS NULL OR coalesce((s.error->>'retryable')::boolean,
            ((s.error->>'$tasker_json')::jsonb->>'retryable')::boolean, true))
        AND s.attempts < s.max_attempts
$$;

CREATE FUNCTION tasker_record(
    p_task text, p_step text, p_from text, p_to text, p_event text, p_reason text,
    p_meta jsonb, p_now double precision, p_prev bigint
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF p_prev IS NOT NULL THEN
        UPDATE tasker_transitions SET most_recent = false WHERE id = p_prev;
    END IF;
    INSERT INTO tasker_transitions
        (task_id, step, from_state, to_state, event, reason, metadata, created_at, most_recent)
    VALUES (p_task, p_step, p_from, p_to, p_event, p_reason, p_meta, p_now, true)
    RETURNING id INTO new_id;
    RETURN new_id;
END $$;

-- Enqueue the given pending steps of a (locked) task whose parents are all satisfied.
CREATE FUNCTION tasker_enqueue_ready(p_task text, p_idx integer[], p_now double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH r AS (
        SELECT s.idx, s.last_transition_id AS prev
        FROM unnest(p_idx) AS k(i) JOIN tasker_steps s ON s.task_id = p_task AND s.idx = k.i
        WHERE s.state = 'pending' AND s.remaining_parents = 0
        FOR UPDATE OF s
    ), u AS (
        UPDATE tasker_steps s
        SET state = 'enqueued', visible_at = p_now, updated_at = p_now,
            last_transition_id = nextval('tasker_transitions_id_seq')
        FROM r WHERE s.task_id = p_task AND s.idx = r.idx
        RETURNING s.name, s.idx, s.attempts, s.last_transition_id
    ), f AS (
        UPDATE tasker_transitions SET most_recent = false
        WHERE id IN (SELECT prev FROM r WHERE prev IS NOT NULL)
    ), ins AS (
        INSERT INTO tasker_transitions
            (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
             most_recent)
        SELECT u.last_transition_id, p_task, u.name, 'pending', 'enqueued', 'enqueue',
            'dependencies satisfied', jsonb_build_object('attempt', u.attempts + 1), p_now, true
        FROM u ORDER BY u.idx
    )
    SELECT count(*) INTO n FROM u;
    IF n > 0 THEN
        UPDATE tasker_tasks SET in_flight = in_flight + n WHERE id = p_task;
        PERFORM pg_notify('tasker_work', 'w');
    END IF;
    RETURN n;
END $$;

-- Enqueue the due retries of a (locked) task: error -> enqueued.
CREATE FUNCTION tasker_enqueue_retries(p_task text, p_now double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH r AS (
        SELECT s.idx, s.last_transition_id AS prev FROM tasker_steps s
        WHERE s.task_id = p_task AND s.state = 'error' AND s.next_retry_at IS NOT NULL
            AND s.next_retry_at <= p_now AND tasker_can_retry(s)
        FOR UPDATE
    ), u AS (
        UPDATE tasker_steps s
        SET state = 'enqueued', visible_at = p_now, updated_at = p_now,
            last_transition_id = nextval('tasker_transitions_id_seq')
        FROM r WHERE s.task_id = p_task AND s.idx = r.idx
        RETURNING s.name, s.idx, s.attempts, s.last_transition_id
    ), f AS (
        UPDATE tasker_transitions SET most_recent = false
        WHERE id IN (SELECT prev FROM r WHERE prev IS NOT NULL)
    ), ins AS (
        INSERT INTO tasker_transitions
            (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
             most_recent)
        SELECT u.last_transition_id, p_task, u.name, 'error', 'enqueued', 'retry',
            'retry: backoff elapsed', jsonb_build_object('attempt', u.attempts + 1), p_now, true
        FROM u ORDER BY u.idx
    )
    SELECT count(*) INTO n FROM u;
    IF n > 0 THEN
        UPDATE tasker_tasks SET in_flight = in_flight + n, retrying = retrying - n
        WHERE id = p_task;
        PERFORM pg_notify('tasker_work', 'w');
    END IF;
    RETURN n;
END $$;

-- Move a (locked) task's own state one legal transition, keeping its timestamps.
CREATE FUNCTION tasker_task_move(
    p_task text, p_from text, p_to text, p_event text, p_reason text, p_now double precision,
    p_wake double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    prev bigint;
    tid bigint;
BEGIN
    SELECT last_transition_id INTO prev FROM tasker_tasks WHERE id = p_task;
    tid := tasker_record(p_task, NULL, p_from, p_to, p_event, p_reason, '{}'::jsonb, p_now, prev);
    UPDATE tasker_tasks SET
        state = p_to,
        updated_at = p_now,
        last_transition_id = tid,
        started_at = CASE WHEN p_to = 'in_progress' THEN coalesce(started_at, p_now)
                          ELSE started_at END,
        wake_at = CASE WHEN p_to = 'pending' THEN p_wake
                       WHEN p_to = 'in_progress' THEN NULL ELSE wake_at END,
        completed_at = CASE WHEN p_to IN ('complete', 'error') THEN p_now
                            WHEN p_to = 'pending' THEN NULL ELSE completed_at END
    WHERE id = p_task;
END $$;

-- Finalize a (locked) task from its counters: dispatch what is ready, then complete, fail, wait
-- or keep running. Mirrors tasker_core.orchestration.finalizer.evaluate. Returns the task's
-- state afterwards.
CREATE FUNCTION tasker_finalize(
    p_task text, p_now double precision, p_stop boolean, p_scan boolean DEFAULT true
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t record;
    blocked boolean;
    nxt double precision;
    target text;
    ready integer[];
BEGIN
    SELECT state, failed, retrying INTO t FROM tasker_tasks WHERE id = p_task;
    IF t.state NOT IN ('pending', 'in_progress') THEN
        RETURN t.state;
    END IF;
    blocked := p_stop AND t.failed > 0;
    IF NOT blocked THEN
        -- A settle enqueues the children it unblocked itself (p_scan false); activation looks
        -- for every ready step (after an operator's change, say).
        IF p_scan THEN
            SELECT array_agg(idx) INTO ready FROM tasker_steps
            WHERE task_id = p_task AND state = 'pending' AND remaining_parents = 0;
        END IF;
        IF ready IS NOT NULL THEN
            PERFORM tasker_enqueue_ready(p_task, ready, p_now);
        END IF;
        IF t.retrying > 0 THEN
            PERFORM tasker_enqueue_retries(p_task, p_now);
        END IF;
    END IF;
    SELECT state, total, satisfied, in_flight, retrying, failed INTO t
    FROM tasker_tasks WHERE id = p_task;
    IF t.retrying > 0 AND NOT blocked THEN
        SELECT min(next_retry_at) INTO nxt FROM tasker_steps s
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
    END IF;
    IF target = 'complete' THEN
        PERFORM tasker_task_move(p_task, 'in_progress', 'complete', 'complete',
            'all steps complete', p_now, NULL);
    ELSIF target = 'error' THEN
        PERFORM tasker_task_move(p_task, 'in_progress', 'error', 'fail',
            'steps failed permanently', p_now, NULL);
    ELSIF target = 'pending' THEN
        IF t.state = 'in_progress' THEN
            PERFORM tasker_task_move(p_task, 'in_progress', 'pending', 'wait',
                'waiting for backoff', p_now, nxt);
        ELSE
            UPDATE tasker_tasks SET wake_at = nxt WHERE id = p_task;
        END IF;
        PERFORM pg_notify('tasker_work', 't');
    END IF;
    UPDATE tasker_tasks SET dirty = false WHERE id = p_task AND dirty;
    RETURN target;
END $$;

-- Claim up to p_limit enqueued steps for p_owner: enqueued -> in_progress, one attempt counted,
-- leased until p_until. Never waits for a lock (SKIP LOCKED) and takes no task lock.
CREATE FUNCTION tasker_claim(
    p_owner text, p_limit integer, p_until double precision, p_now double precision
) RETURNS TABLE (
    task_id text, name text, idx integer, handler text, attempts integer,
    max_attempts integer, retryable boolean, dependencies jsonb
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT s.task_id, s.idx, s.last_transition_id AS prev FROM tasker_steps s
        WHERE s.state = 'enqueued' AND s.visible_at <= p_now
        ORDER BY s.visible_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE tasker_steps s
        SET state = 'in_progress', attempts = s.attempts + 1, lease_owner = p_owner,
            lease_expires_at = p_until, next_retry_at = NULL, visible_at = NULL,
            updated_at = p_now, last_transition_id = nextval('tasker_transitions_id_seq')
        FROM c WHERE s.task_id = c.task_id AND s.idx = c.idx
        RETURNING s.task_id, s.name, s.idx, s.handler, s.attempts, s.max_attempts, s.retryable,
            s.parents, s.last_transition_id
    ), f AS (
        UPDATE tasker_transitions SET most_recent = false
        WHERE id IN (SELECT prev FROM c WHERE prev IS NOT NULL)
    ), ins AS (
        INSERT INTO tasker_transitions
            (id, task_id, step, from_state, to_state, event, reason, metadata, created_at,
             most_recent)
        SELECT u.last_transition_id, u.task_id, u.name, 'enqueued', 'in_progress', 'start',
            'claimed by ' || p_owner,
            jsonb_build_object('attempt', u.attempts, 'owner', p_owner), p_now, true
        FROM u ORDER BY u.last_transition_id
    )
    SELECT u.task_id, u.name, u.idx, u.handler, u.attempts, u.max_attempts, u.retryable,
        CASE WHEN coalesce(cardinality(u.parents), 0) = 0 THEN '{}'::jsonb
             ELSE (SELECT jsonb_object_agg(p.name, p.results)
                   FROM unnest(u.parents) AS k(i)
                   JOIN tasker_steps p ON p.task_id = u.task_id AND p.idx = k.i) END
    FROM u;
END $$;

-- Settle finished attempts: per outcome, compare-and-set in_progress -> complete | error
-- (fenced by attempt, and by lease expiry when p_expired_before is given: the reaper), record
-- the transition, decrement the children's remaining-parent counts and enqueue those now ready,
-- keep the task's counters, finalize each task. Tasks are locked in id order first, so settles
-- and manual changes of one task are serialized and cannot deadlock. Then claim up to p_claim
-- steps for p_owner in the same transaction (a chain's next step starts without another commit).
-- Rows: ('lost', task, step, NULL) for an outcome whose compare-and-set failed;
-- ('task', task, NULL, state) for each task settled; then the claims ('claim', ...).
CREATE FUNCTION tasker_settle(
    p_tasks text[], p_steps text[], p_attempts integer[], p_ok boolean[], p_results jsonb[],
    p_errors jsonb[], p_retry_at double precision[], p_meta jsonb[], p_reasons text[],
    p_bump integer[], p_expired_before double precision, p_now double precision,
    p_stop boolean, p_owner text, p_claim integer, p_until double precision
) RETURNS TABLE (
    kind text, task_id text, name text, detail text, idx integer, handler text,
    attempts integer, max_attempts integer, retryable boolean, dependencies jsonb
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i integer;
    s tasker_steps;
    tid bigint;
    settled text[] := '{}';
    ready integer[];
    tk text;
    retry_ok boolean;
BEGIN
    PERFORM 1 FROM tasker_tasks t WHERE t.id = ANY (p_tasks) ORDER BY t.id FOR NO KEY UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_tasks, 1), 0) LOOP
        SELECT * INTO s FROM tasker_steps st
        WHERE st.task_id = p_tasks[i] AND st.name = p_steps[i] FOR UPDATE;
        IF NOT FOUND OR s.state <> 'in_progress' OR s.attempts <> p_attempts[i]
            OR (p_expired_before IS NOT NULL
                AND (s.lease_expires_at IS NULL OR s.lease_expires_at >= p_expired_before)) THEN
            kind := 'lost'; task_id := p_tasks[i]; name := p_steps[i]; detail := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF NOT (p_tasks[i] = ANY (settled)) THEN
            settled := settled || p_tasks[i];
        END IF;
        IF p_ok[i] THEN
            tid := tasker_record(s.task_id, s.name, 'in_progress', 'complete', 'complete',
                p_reasons[i], p_meta[i], p_now, s.last_transition_id);
            UPDATE tasker_steps st SET state = 'complete', results = p_results[i], error = NULL,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = p_now,
                last_transition_id = tid
            WHERE st.task_id = s.task_id AND st.idx = s.idx;
            UPDATE tasker_tasks t SET satisfied = t.satisfied + 1, in_flight = t.in_flight - 1
            WHERE t.id = s.task_id;
            IF s.children IS NOT NULL AND cardinality(s.children) > 0 THEN
                WITH d AS (
                    UPDATE tasker_steps st SET remaining_parents = st.remaining_parents - 1
                    FROM unnest(s.children) AS k(i)
                    WHERE st.task_id = s.task_id AND st.idx = k.i
                    RETURNING st.idx, st.state, st.remaining_parents
                )
                SELECT array_agg(d.idx) INTO ready FROM d
                WHERE d.remaining_parents = 0 AND d.state = 'pending';
                IF ready IS NOT NULL AND NOT (p_stop AND
                        (SELECT t.failed FROM tasker_tasks t WHERE t.id = s.task_id) > 0) THEN
                    PERFORM tasker_enqueue_ready(s.task_id, ready, p_now);
                END IF;
            END IF;
        ELSE
            tid := tasker_record(s.task_id, s.name, 'in_progress', 'error', 'fail',
                p_reasons[i], p_meta[i], p_now, s.last_transition_id);
            UPDATE tasker_steps st SET state = 'error', error = p_errors[i],
                next_retry_at = p_retry_at[i], lease_owner = NULL, lease_expires_at = NULL,
                max_attempts = st.max_attempts + p_bump[i], updated_at = p_now,
                last_transition_id = tid
            WHERE st.task_id = s.task_id AND st.idx = s.idx
            RETURNING tasker_can_retry(st) INTO retry_ok;
            UPDATE tasker_tasks t SET in_flight = t.in_flight - 1,
                retrying = t.retrying + (CASE WHEN retry_ok THEN 1 ELSE 0 END),
                failed = t.failed + (CASE WHEN retry_ok THEN 0 ELSE 1 END)
            WHERE t.id = s.task_id;
        END IF;
    END LOOP;
    FOREACH tk IN ARRAY settled LOOP
        kind := 'task'; task_id := tk; name := NULL;
        detail := tasker_finalize(tk, p_now, p_stop, false);
        RETURN NEXT;
    END LOOP;
    kind := 'claim'; detail := NULL;
    RETURN QUERY SELECT 'claim'::text, c.task_id, c.name, NULL::text, c.idx, c.handler,
        c.attempts, c.max_attempts, c.retryable, c.dependencies
    FROM tasker_claim(p_owner, p_claim, p_until, p_now) c;
END $$;

-- Load a task's step graph (once): p_graph[i] = [[parents of step i], [children of step i]].
CREATE FUNCTION tasker_load_graph(p_task text, p_graph jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_steps s SET
        parents = ARRAY(SELECT jsonb_array_elements_text(p_graph -> s.idx -> 0)::integer),
        children = ARRAY(SELECT jsonb_array_elements_text(p_graph -> s.idx -> 1)::integer)
    WHERE s.task_id = p_task;
    UPDATE tasker_steps s SET remaining_parents = (
        SELECT count(*) FROM unnest(s.parents) AS k(i)
        JOIN tasker_steps p ON p.task_id = p_task AND p.idx = k.i
        WHERE p.state NOT IN ('complete', 'resolved_manually'))
    WHERE s.task_id = p_task;
    UPDATE tasker_tasks SET graph_loaded = true WHERE id = p_task;
END $$;
"""

# Version 2. Version 1's statements found steps by joining on (task_id, idx); plans cached while
# a task was small then read the whole task through the primary key's task_id prefix and
# filtered on idx, so one settle cost O(steps in the task) and a chain O(N^2). Every lookup
# here is an exact key (a LATERAL probe of a unique key, fenced with OFFSET 0 so that the
# planner cannot turn it back into a join, "idx = ANY (array)" under the task, or
# the ctid of a row this transaction has locked); the functions run with generic plans (planned
# once per connection instead of on every call) and with sequential scans, hash and merge joins
# disabled, so that no plan made while a table was small or empty can scan instead of probing.
# Settle is set-based: a fixed number of statements per batch, not per outcome.
SET_BASED = r"""
-- Enqueue the given pending steps of a (locked) task whose parents are all satisfied.
CREATE OR REPLACE FUNCTION tasker_enqueue_ready(
    p_task text, p_idx integer[], p_now double precision
) RETURNS integer LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
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
        RETURN 0;
    END IF;
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
    SELECT count(*) INTO n FROM u;
    UPDATE tasker_tasks SET in_flight = in_flight + n WHERE id = p_task;
    PERFORM pg_notify('tasker_work', 'w');
    RETURN n;
END $$;

-- Enqueue the due retries of a (locked) task: error -> enqueued.
CREATE OR REPLACE FUNCTION tasker_enqueue_retries(p_task text, p_now double precision)
RETURNS integer LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
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
        RETURN 0;
    END IF;
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
    SELECT count(*) INTO n FROM u;
    UPDATE tasker_tasks SET in_flight = in_flight + n, retrying = retrying - n WHERE id = p_task;
    PERFORM pg_notify('tasker_work', 'w');
    RETURN n;
END $$;

ALTER FUNCTION tasker_finalize(text, double precision, boolean, boolean)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION tasker_task_move(text, text, text, text, text, double precision, double precision)
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off;

-- Claim up to p_limit enqueued steps for p_owner: enqueued -> in_progress, one attempt counted,
-- leased until p_until. Never waits for a lock (SKIP LOCKED) and takes no task lock.
CREATE OR REPLACE FUNCTION tasker_claim(
    p_owner text, p_limit integer, p_until double precision, p_now double precision
) RETURNS TABLE (
    task_id text, name text, idx integer, handler text, attempts integer,
    max_attempts integer, retryable boolean, dependencies jsonb
) LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
BEGIN
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT s.task_id, s.idx, s.last_transition_id AS prev FROM tasker_steps s
        WHERE s.state = 'enqueued' AND s.visible_at <= p_now
        ORDER BY s.visible_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE tasker_steps s
        SET state = 'in_progress', attempts = s.attempts + 1, lease_owner = p_owner,
            lease_expires_at = p_until, next_retry_at = NULL, visible_at = NULL,
            updated_at = p_now, last_transition_id = nextval('tasker_transitions_id_seq')
        FROM c WHERE s.task_id = c.task_id AND s.idx = c.idx
        RETURNING s.task_id, s.name, s.idx, s.handler, s.attempts, s.max_attempts, s.retryable,
            s.parents, s.last_transition_id
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
    SELECT u.task_id, u.name, u.idx, u.handler, u.attempts, u.max_attempts, u.retryable,
        CASE WHEN coalesce(cardinality(u.parents), 0) = 0 THEN '{}'::jsonb
             ELSE (SELECT jsonb_object_agg(p.name, p.results)
                   FROM unnest(u.parents) AS k(i) CROSS JOIN LATERAL (
                       SELECT p.name, p.results FROM tasker_steps p
                       WHERE p.task_id = u.task_id AND p.idx = k.i OFFSET 0) p) END
    FROM u;
END $$;

-- Settle finished attempts, set-based. Tasks are locked in id order first (settles and manual
-- changes of one task are serialized and cannot deadlock). Then, for the whole batch:
-- compare (lock the steps still in the outcome's attempt; for the reaper, with an expired
-- lease), set in_progress -> complete | error and record the transitions, update each task's
-- counters once, decrement the children's remaining-parent counts and enqueue those now ready
-- (unless the task stops on failure and has one), finalize the tasks whose counters call for
-- it, and claim up to p_claim steps for p_owner in the same transaction.
-- Rows: ('lost', task, step, NULL) for an outcome whose compare-and-set failed;
-- ('task', task, NULL, state) for each task settled; then the claims ('claim', ...).
CREATE OR REPLACE FUNCTION tasker_settle(
    p_tasks text[], p_steps text[], p_attempts integer[], p_ok boolean[], p_results jsonb[],
    p_errors jsonb[], p_retry_at double precision[], p_meta jsonb[], p_reasons text[],
    p_bump integer[], p_expired_before double precision, p_now double precision,
    p_stop boolean, p_owner text, p_claim integer, p_until double precision
) RETURNS TABLE (
    kind text, task_id text, name text, detail text, idx integer, handler text,
    attempts integer, max_attempts integer, retryable boolean, dependencies jsonb
) LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
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
    n integer := 0;
    claimed integer;
    t record;
BEGIN
    PERFORM 1 FROM tasker_tasks tk WHERE tk.id = ANY (p_tasks) ORDER BY tk.id FOR NO KEY UPDATE;
    -- Compare: lock each step still in the outcome's attempt (one exact-key probe each).
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
    -- Set: the locked rows (by ctid: they cannot move while locked), their transitions, and
    -- the counters of their tasks.
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
            p_ok[v.ord] AS ok, tasker_can_retry(st) AS retry_ok
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
    SELECT d.ords, d.tasks, b.ids, k.ts, k.cs
    INTO done, settled, blocked, k_task, k_idx
    FROM (SELECT array_agg(u.ord) AS ords, array_agg(DISTINCT u.task_id) AS tasks FROM u) d,
         (SELECT array_agg(cnt.id) AS ids FROM cnt WHERE p_stop AND cnt.failed > 0) b,
         (SELECT array_agg(u.task_id) AS ts, array_agg(c.i) AS cs
          FROM u CROSS JOIN LATERAL unnest(u.children) AS c(i) WHERE u.ok) k;
    RETURN QUERY SELECT 'lost'::text, o.t, o.n, NULL::text, NULL::integer, NULL::text,
        NULL::integer, NULL::integer, NULL::boolean, NULL::jsonb
    FROM unnest(p_tasks, p_steps) WITH ORDINALITY AS o(t, n, ord)
    WHERE NOT (o.ord = ANY (coalesce(done, '{}')));
    -- Children of completed steps: one decrement each (by the number of its parents that
    -- completed in this batch); those that reach zero while pending are enqueued.
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
        SELECT count(*) INTO n FROM u WHERE u.go;
    END IF;
    -- Finalize: only a task whose counters may call for a move (a running task with work in
    -- flight, no retries pending and no operator change simply keeps running).
    FOR t IN SELECT tk.id, tk.state, tk.total, tk.satisfied, tk.in_flight, tk.retrying, tk.dirty
             FROM tasker_tasks tk WHERE tk.id = ANY (coalesce(settled, '{}')) ORDER BY tk.id
    LOOP
        kind := 'task'; task_id := t.id; name := NULL;
        IF t.state = 'in_progress' AND t.in_flight > 0 AND t.retrying = 0 AND NOT t.dirty
                AND t.satisfied < t.total THEN
            detail := 'in_progress';
        ELSE
            detail := tasker_finalize(t.id, p_now, p_stop, false);
        END IF;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT 'claim'::text, c.task_id, c.name, NULL::text, c.idx, c.handler,
        c.attempts, c.max_attempts, c.retryable, c.dependencies
    FROM tasker_claim(p_owner, p_claim, p_until, p_now) c;
    -- Wake other workers only if this one may have left work behind: a claim that got fewer
    -- steps than it asked for took every visible step nobody else is claiming (a chain's next
    -- step, claimed here, wakes nobody).
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF n > 0 AND claimed >= p_claim THEN
        PERFORM pg_notify('tasker_work', 'w');
    END IF;
END $$;

-- Load a task's step graph (once): p_graph[i] = [[parents of step i], [children of step i]].
CREATE OR REPLACE FUNCTION tasker_load_graph(p_task text, p_graph jsonb) RETURNS void
LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    UPDATE tasker_steps s SET
        parents = ARRAY(SELECT jsonb_array_elements_text(p_graph -> s.idx -> 0)::integer),
        children = ARRAY(SELECT jsonb_array_elements_text(p_graph -> s.idx -> 1)::integer)
    WHERE s.task_id = p_task;
    UPDATE tasker_steps s SET remaining_parents = (
        SELECT count(*) FROM unnest(s.parents) AS k(i) CROSS JOIN LATERAL (
            SELECT p.state FROM tasker_steps p WHERE p.task_id = p_task AND p.idx = k.i
            OFFSET 0) p
        WHERE p.state NOT IN ('complete', 'resolved_manually'))
    WHERE s.task_id = p_task;
    UPDATE tasker_tasks SET graph_loaded = true WHERE id = p_task;
END $$;
"""
