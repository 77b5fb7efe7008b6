"""Type stub of the Rust extension ``tasker_core._native`` (tasker_native/crates/tasker-py).

Hand-written and checked against the built module by
``python -m mypy.stubtest tasker_core._native``. Only ``tasker_core.fsm``, ``tasker_core.solver``,
``tasker_core.serialization`` and ``tasker_core.orchestration.backoff`` import it.

Conventions: states and events cross the boundary as small integer codes (their position in the
``states``/``events`` lists of spec/states.toml); steps are indices into the graph's ``names``.
Errors are the exception classes of ``tasker_core.errors``.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, final

SPEC_DIGEST: str
"""SHA-256 (hex) of the spec/states.toml the module was built from (tests use it to name drift)."""
SPEC_STATES_TOML: str
"""The text of spec/states.toml the module was built from (embedded, so installs need no files)."""
SPEC_EVENTS_TOML: str
"""The text of spec/events.toml the module was built from: the event catalogue."""

@final
class StateMachine:
    """One entity's transition table (``kind`` is "task" or "step"), generated from the spec."""

    @property
    def kind(self) -> str: ...
    @property
    def states(self) -> list[str]: ...
    @property
    def events(self) -> list[str]: ...
    @property
    def initial(self) -> int: ...
    def state_code(self, name: str) -> int:
        """Code of a state name; UnknownStateError if there is none."""
    def event_code(self, name: str) -> int:
        """Code of an event name; UnknownStateError if there is none."""
    def check(self, from_state: int, to_state: int) -> int:
        """The event code that moves ``from_state`` to ``to_state``.

        InvalidTransitionError(kind, from name, to name) when the table has no such transition;
        UnknownStateError for a code outside ``states``.
        """
    def can(self, from_state: int, to_state: int) -> bool:
        """Whether the transition is legal (never raises for in-range codes)."""
    def apply(self, from_state: int, event: int) -> int:
        """The state ``event`` leads to from ``from_state``.

        InvalidTransitionError(kind, from name, event=event name) when the event does not apply.
        """
    def targets(self, from_state: int) -> list[int]:
        """Every state reachable from ``from_state`` in one transition, ascending."""
    def transitions(self) -> list[tuple[int, int, int]]:
        """Every (event, from, to) triple of the table, sorted."""
    def is_terminal(self, state: int) -> bool: ...
    def satisfies_dependency(self, state: int) -> bool:
        """True for the states that satisfy a dependency (step: complete, resolved_manually)."""

TASK_MACHINE: StateMachine
STEP_MACHINE: StateMachine

@final
class WorkflowGraph:
    """A validated DAG of steps, built once per task and queried by index.

    ``names[i]`` is step i; ``dependencies[i]`` lists the names step i depends on (its parents).
    A name repeated within one step's dependencies counts once. Validation, in this order, raises:
    DuplicateStepError (the first name seen twice, by position), UnknownDependencyError (first step
    by position, first unknown name in its list), SelfDependencyError (first step by position that
    lists itself), CycleError. The cycle reported is the one found by a depth-first search that
    starts at each step in position order and follows each step's dependencies in listed order,
    skipping steps already finished; the first edge back into the current search path closes the
    cycle, and ``path`` runs from that re-entered step along dependency edges back to it
    (``["a", "b", "a"]`` means a depends on b and b depends on a).

    Both arguments are lists, tuples or other sequences, never a bare str; every name must be a
    str (TypeError) that encodes as UTF-8 (UnicodeEncodeError for a lone surrogate). These
    conversion errors come before the validation above. Names are matched by text; ``names``
    keeps the objects given.
    """

    def __new__(
        cls, names: Sequence[str], dependencies: Sequence[Sequence[str]]
    ) -> WorkflowGraph: ...
    def __len__(self) -> int: ...
    @property
    def names(self) -> list[str]: ...
    @property
    def edge_count(self) -> int: ...
    def index(self, name: str) -> int:
        """Index of a step name; KeyError if absent."""
    def parents(self, step: int) -> list[int]:
        """Indices step depends on, ascending. IndexError for an index out of range."""
    def children(self, step: int) -> list[int]:
        """Indices that depend on step, ascending."""
    def topological_order(self) -> list[int]:
        """Kahn's order, always taking the smallest ready index first (so it is deterministic)."""
    def levels(self) -> list[int]:
        """Per step: 0 for a root, else 1 + the largest level among its parents."""
    def roots(self) -> list[int]:
        """Steps without parents, ascending."""
    def leaves(self) -> list[int]:
        """Steps without children, ascending."""
    def ready(
        self,
        states: Sequence[int],
        attempts: Sequence[int],
        max_attempts: Sequence[int],
        retryable: Sequence[bool],
        next_retry_at: Sequence[float],
        leased: Sequence[bool],
        now: float,
    ) -> list[int]:
        """Full readiness solve: the ready steps, ascending.

        Step i (states are STEP_MACHINE codes) is ready when it is not leased; and it is
        ``pending``, or it is ``error`` with ``retryable[i]``, ``attempts[i] < max_attempts[i]`` and
        ``now >= next_retry_at[i]`` (pass 0.0 when there is no retry time); and every parent's
        state satisfies a dependency. Every sequence must have one entry per step, else ValueError.

        ``states`` is read whole (UnknownStateError for a code outside STEP_MACHINE.states); the
        other columns are read only where the rule needs an entry, in the order above: the four
        retry columns only for a step in ``error``, ``leased`` only for a runnable step whose
        parents are all satisfied. An entry the rule never reaches is not converted, so a
        malformed one there raises nothing (as in the reference model).
        """
    def tracker(self, satisfied: Sequence[int] = ()) -> DependencyTracker:
        """Remaining-parent counters for incremental readiness, starting from ``satisfied``."""

@final
class DependencyTracker:
    """Counts each step's unsatisfied parents so that completing a step costs O(out-degree)."""

    def mark_satisfied(self, step: int) -> list[int]:
        """Record that ``step`` is satisfied; return those of its children that are not
        themselves satisfied and whose last unsatisfied parent ``step`` was, ascending. Marking a
        satisfied step again returns [] and changes nothing."""
    def mark_satisfied_many(self, steps: Sequence[int]) -> list[int]:
        """``mark_satisfied`` of each of ``steps`` in order, in one call: the concatenation of
        what those calls would return (each call's part ascending, parts in call order).

        Repeats and already-satisfied steps add nothing, as single calls would. Every index is
        checked before any step is marked: IndexError for the first bad one by position, and
        the tracker is then unchanged (unlike a loop of single calls, which stops part-way).
        """
    def is_satisfied(self, step: int) -> bool: ...
    def remaining_parents(self, step: int) -> int: ...
    def unblocked(self) -> list[int]:
        """Steps not yet satisfied whose parents all are, ascending (O(N); for start-up)."""
    @property
    def satisfied_count(self) -> int: ...
    def all_satisfied(self) -> bool: ...

def jitter_fraction(key: int, attempt: int, seed: int) -> float:
    """A number in [0, 1) that is a pure function of (key, attempt, seed), all unsigned 64-bit.

    x = key ^ (attempt * 0x9E3779B97F4A7C15) ^ (seed * 0xBF58476D1CE4E5B9)   (wrapping u64)
    z = x + 0x9E3779B97F4A7C15; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z >> 27) * 0x94D049BB133111EB; z = z ^ z >> 31                  (splitmix64)
    result = (z >> 11) * 2**-53
    OverflowError for an argument outside unsigned 64 bits (negative, or 2**64 and up).
    """

def backoff_delay(
    attempt: int,
    base: float,
    max_delay: float,
    jitter: float,
    key: int,
    seed: int = 0,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before the next attempt after failed attempt number ``attempt`` (>= 1).

    ``retry_after`` (from the handler) wins when given: ``max(retry_after, 0.0)``, a NaN counting
    as 0.0. Otherwise ``d = min(base * 2.0 ** (attempt - 1), max_delay)`` (an exponent past 1023
    counts as infinite; a zero ``base`` always gives 0) and the result is
    ``d * (1.0 - jitter * jitter_fraction(key, attempt, seed))``.

    The arguments are checked first, even when ``retry_after`` is given. Converting them comes
    before anything else: OverflowError when ``key`` or ``seed`` is outside unsigned 64 bits
    (negative, or 2**64 and up) or ``attempt`` is outside signed 64 bits. Then ValueError when
    attempt < 1, base < 0, max_delay < 0 or jitter is outside [0, 1], and when base, max_delay
    or jitter is NaN.
    """

def encode_event_payloads(events: Iterable[Any], fallback: Callable[[Any], bytes]) -> list[bytes]:
    """Each event's wire payload, in order: compact ASCII JSON of ``event.to_dict()``.

    Byte for byte what ``json.dumps(event.to_dict(), separators=(",", ":"), allow_nan=False)
    .encode()`` writes, for events (``tasker_core.Event`` or anything with its attributes
    ``name, id, time, task_id, namespace, workflow, version, data``) whose values all have the
    exact types None, bool, int, float, str, list, tuple, or dict with str keys, nested at most
    100 deep, and whose ``data`` is a dict with no key named like a common field. Any other event
    is written by ``fallback(event)``, which must return bytes (TypeError otherwise) and whose
    exceptions propagate. ValueError, naming the event's position, name and id and the path to
    the value (``data["payload"][2]``), for a NaN or infinity.
    """

def encode_event_runs(
    events: Iterable[Any], max_events: int, max_bytes: int, fallback: Callable[[Any], bytes]
) -> list[tuple[str, int, bytes]]:
    """The events as runs of consecutive events of one name: ``(name, count, payload)`` each,
    the payload being their :func:`encode_event_payloads` payloads joined by ``b"\\n"``. A run
    is cut before the event that would take it past ``max_events`` events or ``max_bytes``
    bytes (separators counted); it holds one event at least. Errors as
    :func:`encode_event_payloads`; TypeError for an event whose name is not a str, ValueError
    when either limit is below 1.
    """

def copy_flat_dict(value: object) -> dict[str, Any] | None:
    """A new dict equal to ``value`` when it is exactly a dict whose keys are exactly str and
    whose values are exactly str, int, bool, None or a finite float; None for anything else."""

def is_flat_dict(value: object) -> bool:
    """Whether :func:`copy_flat_dict` would copy ``value`` (the check without the copy)."""

@final
class StepBatchApplier:
    """The memory store's usual batch of step changes applied in one call, over the store's own
    tables (the objects its Python code reads and writes)."""

    def __new__(
        cls,
        positions: dict[str, dict[str, int]],
        steps: dict[str, list[dict[str, Any]]],
        transitions: dict[str, list[Any]],
        metadata: dict[str, list[Any]],
        recent: dict[str, dict[str | None, int]],
        in_progress: set[tuple[str, str]],
        step_change: type,
        copy_json: Callable[[Any, str], Any],
    ) -> StepBatchApplier: ...
    def apply(
        self, changes: Sequence[Any], now: float, atomic: bool, sort_key: int
    ) -> tuple[list[bool], int] | None:
        """``(applied, last sort key)`` when every change is a StepChange of a known step whose
        (from, to) pair the step machine accepts, its payloads copy, and (if ``atomic``) every
        compare-and-set wins: written and logged as ``MemoryStore.apply`` would. Otherwise None,
        with every row as it was."""
