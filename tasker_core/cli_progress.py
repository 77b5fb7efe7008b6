"""Live progress for long ``tasker`` runs: one terminal line, rewritten as events arrive.

Fed by ``engine.subscribe`` (events arrive on the subscriber sink's thread), so it costs the
orchestration nothing. Only used when stdout is a terminal: piped output stays clean.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from tasker_core.cli_render import SATISFIED, Style
from tasker_core.engine import Engine
from tasker_core.models import Event, Task

__all__ = ["Progress"]

# Redraw at most this often; a 10,000-step fan-out must not turn into 10,000 terminal writes.
_MIN_REDRAW_SECONDS = 0.1
# Beyond this many tasks the line shows totals instead of one entry per task.
_MAX_LISTED_TASKS = 4


class _TaskProgress:
    def __init__(self, label: str, total: int, done: set[str], state: str) -> None:
        self.label = label
        self.total = total
        self.done = done
        self.failed: set[str] = set()
        self.state = state


class Progress:
    """``order_fulfillment 3/5 | pipeline 5/5 complete | ...`` on a single updating line."""

    def __init__(self, out: TextIO, style: Style) -> None:
        self._out = out
        self._style = style
        self._tasks: dict[str, _TaskProgress] = {}
        self._lock = threading.Lock()
        self._unsubscribe: list[Callable[[], None]] = []
        self._last_draw = 0.0
        self._drawn = False
        self._closed = False

    def watch(self, engine: Engine, tasks: Sequence[Task]) -> None:
        """Start following ``tasks`` (their current step counts are read from the store)."""
        with self._lock:
            for task in tasks:
                steps = engine.get_steps(task.id)
                self._tasks[task.id] = _TaskProgress(
                    task.name,
                    len(steps),
                    {s.name for s in steps if s.state in SATISFIED},
                    task.state,
                )
        if not self._unsubscribe:
            self._unsubscribe = [
                engine.subscribe("step.*", self._on_event),
                engine.subscribe("task.*", self._on_event),
            ]
        self._draw(force=True)

    def _on_event(self, event: Event) -> None:
        with self._lock:
            task = self._tasks.get(event.task_id)
            if task is None:
                return
            step = event.data.get("step")
            if event.name in ("step.completed", "step.resolved") and isinstance(step, str):
                task.done.add(step)
                task.failed.discard(step)
            elif event.name == "step.failed" and isinstance(step, str):
                task.failed.add(step)
            elif event.name == "step.enqueued" and isinstance(step, str):
                task.failed.discard(step)
            elif event.name.startswith("task."):
                task.state = _TASK_STATE_AFTER.get(event.name, task.state)
        self._draw(force=event.name.startswith("task."))

    def line(self) -> str:
        """The text of the progress line."""
        with self._lock:
            return self._line()

    def _line(self) -> str:
        tasks = list(self._tasks.values())
        if len(tasks) > _MAX_LISTED_TASKS:
            finished = sum(1 for t in tasks if t.state in _FINAL)
            done = sum(len(t.done) for t in tasks)
            total = sum(t.total for t in tasks)
            failed = sum(len(t.failed) for t in tasks)
            text = f"{finished}/{len(tasks)} tasks finished, {done}/{total} steps done"
            return text + (f", {failed} failed" if failed else "")
        parts = []
        for t in tasks:
            part = f"{t.label} {len(t.done)}/{t.total}"
            if t.failed:
                part += f" ({len(t.failed)} failed)"
            if t.state in _FINAL:
                part += " " + self._style.state(t.state)
            parts.append(part)
        return " | ".join(parts)

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if self._closed or (not force and now - self._last_draw < _MIN_REDRAW_SECONDS):
                return
            self._last_draw = now
            text = self._line()
            width = shutil.get_terminal_size((100, 20)).columns - 1
            if not self._style.enabled and len(text) > width:
                text = text[: max(0, width - 3)] + "..."
            self._out.write("\r\x1b[K" + text)
            self._out.flush()
            self._drawn = True

    def close(self) -> None:
        """Stop following and erase the line, so the final summary starts on a clean line."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        with self._lock:
            self._closed = True
            if self._drawn:
                self._out.write("\r\x1b[K")
                self._out.flush()
                self._drawn = False


_TASK_STATE_AFTER = {
    "task.started": "in_progress",
    "task.completed": "complete",
    "task.failed": "error",
    "task.cancelled": "cancelled",
    "task.resolved": "resolved_manually",
    "task.retried": "pending",
}
_FINAL = frozenset({"complete", "error", "cancelled", "resolved_manually"})
