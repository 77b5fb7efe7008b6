"""``tasker worker`` and ``tasker db upgrade|status``.

``tasker worker`` builds an engine from the configuration (so handlers and templates resolve
exactly as for the embedded engine: registered handlers, ``--template`` files,
``templates.paths`` through the template-finder plugins) and runs a :class:`Worker` on its
Postgres store until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tasker_core import Engine, TaskerError, load_config
from tasker_core.plugin import duration, positive_int

__all__ = ["add_commands", "run_db", "run_worker"]

EXIT_OK = 0
EXIT_USAGE = 2
_SUFFIXES = (".yml", ".yaml")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run steps from a Postgres database (any number of workers, any machines)",
        description="Claim and run steps from the configured Postgres store until SIGTERM.",
    )
    worker.add_argument(
        "--concurrency",
        "-n",
        type=positive_int,
        default=None,
        help="steps run at once (default: execution.max_concurrent_steps)",
    )
    worker.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        help="most steps claimed per transaction (default: execution.batch_size)",
    )
    worker.add_argument(
        "--grace",
        type=duration,
        default=30.0,
        help="on SIGTERM, how long running steps may finish (default 30s)",
    )
    worker.add_argument(
        "--template",
        "-t",
        action="append",
        default=[],
        metavar="FILE",
        help="register a template file (or a directory of them); repeatable",
    )
    worker.add_argument("--worker-id", default=None, help="name in leases and logs")
    worker.set_defaults(run=run_worker)

    db = subparsers.add_parser(
        "db",
        help="manage the Postgres schema",
        description="Manage the tasker schema of the configured store.",
    )
    sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    up = sub.add_parser("upgrade", help="apply missing migrations (safe to run concurrently)")
    up.set_defaults(run=run_db, action="upgrade")
    st = sub.add_parser("status", help="print the schema version")
    st.set_defaults(run=run_db, action="status")
    db.set_defaults(run=run_db, action=None)


def _option(args: argparse.Namespace, name: str, default: Any) -> Any:
    return getattr(args, name, default)


def _logging(level: str, verbose: int) -> None:
    if verbose >= 2:
        level = "DEBUG"
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
    )


def _register_templates(engine: Engine, path: Path) -> None:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        raise TaskerError(f"--template {path}: no such file or directory")
    for file in files:
        engine.load_template(file)


def run_worker(args: argparse.Namespace) -> int:
    from tasker_postgres.worker import Worker, WorkerOptions

    config = load_config(_option(args, "config", None))
    _logging(config.logging.level, _option(args, "verbose", 0))
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    engine = Engine(config)
    try:
        for path in args.template:
            _register_templates(engine, Path(path))
        options = WorkerOptions.from_engine(
            engine, concurrency=args.concurrency, batch_size=args.batch, grace=args.grace
        )
        worker = Worker(engine, options, owner=args.worker_id)

        def on_signal(signum: int, _frame: object) -> None:
            logging.getLogger("tasker.worker").info(
                "%s received: finishing running steps", signal.Signals(signum).name
            )
            worker.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker.run()
    except TypeError as exc:
        print(f"tasker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine.close()
    return EXIT_OK


def run_db(args: argparse.Namespace) -> int:
    from tasker_postgres.store import PostgresStore

    if args.action is None:
        print("tasker db: choose an action: upgrade or status", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(_option(args, "config", None))
    if not config.store.url.startswith("postgresql"):
        print(
            f"tasker: error: store.url is {config.store.url!r}, not a postgresql:// URL",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from tasker_postgres.schema import LATEST_VERSION

    if args.action == "upgrade":
        store = PostgresStore(config.store.url, pool_size=1, migrate=True)
        applied = store.applied_migrations
        version = store.schema_version()
        store.close()
        if _option(args, "json", False):
            import json

            print(json.dumps({"applied": applied, "version": version}))
        elif applied:
            print(f"applied migrations {', '.join(map(str, applied))}; schema version {version}")
        else:
            print(f"schema is up to date (version {version})")
        return EXIT_OK
    import psycopg

    from tasker_postgres.db import conninfo
    from tasker_postgres.schema import current_version

    with psycopg.connect(conninfo(config.store.url)) as conn:
        version = current_version(conn)
    if _option(args, "json", False):
        import json

        print(json.dumps({"version": version, "latest": LATEST_VERSION}))
    else:
        state = "up to date" if version == LATEST_VERSION else "needs `tasker db upgrade`"
        print(f"schema version {version} (latest {LATEST_VERSION}): {state}")
    return EXIT_OK
