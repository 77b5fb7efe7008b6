"""A harness for running workflows on Postgres with in-process workers (tests, examples).

:class:`Harness` builds engines (for submitting and manual operations) and workers (each on its
own thread, engine and connection pool) over one database, with short leases and poll intervals
so that tests run fast; :meth:`Harness.close` stops and closes everything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from tasker_core import Config, Engine, Registry, Task, template_from_mapping

from tasker_postgres.store import PostgresStore
from tasker_postgres.worker import Worker, WorkerOptions

FAST = {"lease": 2.0, "heartbeat_interval": 0.3, "poll_interval": 0.2, "concurrency": 4}


class Harness:
    """Engines and in-process workers on one database; everything closed at teardown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.templates: list[Mapping[str, Any]] = []
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.engines: list[Engine] = []
        self.workers: list[tuple[Worker, threading.Thread]] = []
        self.config: dict[str, Any] = {"backoff": {"base": "50ms", "max": "1s", "jitter": 0.0}}

    def engine(self) -> Engine:
        sections = {"store": {"url": self.url}, "events": {"sinks": []}, **self.config}
        engine = Engine(
            Config.from_mapping(sections),
            store=PostgresStore(self.url, pool_size=4, migrate=False),
            registry=Registry(),
        )
        for name, fn in self.handlers.items():
            engine.register_handler(name, fn)
        for data in self.templates:
            engine.register_template(template_from_mapping(data))
        self.engines.append(engine)
        return engine

    def start_worker(self, **options: Any) -> Worker:
        engine = self.engine()
        worker = Worker(engine, WorkerOptions(**{**FAST, **options}))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        self.workers.append((worker, thread))
        return worker

    def wait_done(self, engine: Engine, ids: list[str], timeout: float = 30.0) -> list[Task]:
        """The tasks, once none is pending or in progress (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = [engine.get_task(i) for i in ids]
            if all(t.state not in ("pending", "in_progress") for t in tasks):
                return tasks
            if time.monotonic() > deadline:
                states = {t.id: t.state for t in tasks}
                raise AssertionError(f"tasks not finished after {timeout}s: {states}")
            time.sleep(0.05)

    def close(self) -> None:
        for worker, _ in self.workers:
            worker.stop()
        for _, thread in self.workers:
            thread.join(10)
        for engine in self.engines:
            engine.close()
