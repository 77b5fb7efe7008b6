"""A throwaway PostgreSQL cluster for tests and benchmarks, from the installed server binaries.

``initdb`` refuses to run as root, so as root the cluster is created and run as an unprivileged
user (``postgres`` by default) in a private directory that user owns; otherwise it runs as the
current user. It listens on 127.0.0.1 only, on a free port, with ``trust`` authentication, and
everything is removed on :meth:`TempCluster.stop`. :func:`find_binaries` says why a cluster
cannot be made, so a test suite can skip with that reason (or fail, where Postgres is required).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ClusterUnavailable", "TempCluster", "find_binaries"]

SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin")
"""Where server binaries are looked for (newest version first), after ``$TASKER_PG_BIN``."""


class ClusterUnavailable(RuntimeError):
    """No throwaway cluster can be made here; the message says why and what to install."""


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; ClusterUnavailable if there is none."""
    candidates: list[Path] = []
    if os.environ.get("TASKER_PG_BIN"):
        candidates.append(Path(os.environ["TASKER_PG_BIN"]))
    for pattern in SEARCH:
        root = Path("/")
        found = sorted(root.glob(pattern.lstrip("/")), key=_version_key, reverse=True)
        candidates.extend(found)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise ClusterUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in $TASKER_PG_BIN, "
        f"{', '.join(SEARCH)} or PATH; install them (e.g. apt-get install postgresql-15)"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    digits = [part for part in path.parts if part.replace(".", "").isdigit()]
    return tuple(int(x) for x in digits[0].split(".")) if digits else (0,)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TempCluster:
    """One private cluster: ``start()``, use :attr:`url`, ``stop()`` (or use it as a context).

    ``durable=False`` (tests) turns off fsync and synchronous commit: a crash of the machine may
    lose it, which does not matter for a throwaway cluster and makes tests fast. Benchmarks keep
    the defaults, so their figures are those of a durable database.
    """

    def __init__(
        self,
        *,
        durable: bool = False,
        user: str = "postgres",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bin = find_binaries()
        self.durable = durable
        self.settings = dict(settings or {})
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise ClusterUnavailable(
                    f"running as root and there is no user {user!r} to run the cluster as "
                    "(initdb refuses root)"
                ) from None
            self.run_as = user
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tasker-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.database = "tasker"
        self._started = False

    @property
    def url(self) -> str:
        """SQLAlchemy/tasker URL of the test database (psycopg 3 driver)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def conninfo(self) -> str:
        """The same database as a libpq connection string (for psycopg directly)."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={self.database}"

    def _run(self, args: Sequence[str], timeout: float = 120.0) -> str:
        command = list(args)
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ClusterUnavailable(
                f"{' '.join(command)} failed with status {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done.stdout

    def _options(self) -> str:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            "shared_buffers": "64MB",
            **({} if self.durable else {"fsync": "off", "synchronous_commit": "off"}),
            "full_page_writes": "on" if self.durable else "off",
            **self.settings,
        }
        return "\n".join(f"{key} = {value}" for key, value in settings.items()) + "\n"

    def start(self) -> TempCluster:
        """initdb, configure, start, create the database; ClusterUnavailable on any failure."""
        if self.run_as is not None:
            shutil.chown(self.root, self.run_as, self.run_as)
        try:
            self._run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            )
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(self._options())
            self.pg_ctl("start")
            self._started = True
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def pg_ctl(self, action: str, *extra: str) -> None:
        """Run ``pg_ctl ACTION`` on this cluster (start waits until it accepts connections)."""
        args = [str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-w", "-t", "60"]
        if action in ("start", "restart"):
            args += ["-l", str(self.log)]
        self._run([*args, *extra])

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server (fast: connections are cut), wait ``down_for`` seconds, start it."""
        self.pg_ctl("stop", "-m", "fast")
        time.sleep(down_for)
        self.pg_ctl("start")

    def _create_database(self) -> None:
        import psycopg

        admin = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        """Stop the server (immediately) and delete every file of the cluster."""
        if self._started:
            with contextlib.suppress(ClusterUnavailable):
                self.pg_ctl("stop", "-m", "immediate")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_TEMPLATE_DB = "tasker_template"


def fresh_database(cluster: TempCluster, name: str) -> str:
    """A new empty database on ``cluster`` with the schema applied; its URL.

    Copies a migrated template database (made on first use), which is much faster than
    migrating every test's database.
    """
    import psycopg

    from tasker_postgres.schema import upgrade

    admin = f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (_TEMPLATE_DB,)
        ).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{_TEMPLATE_DB}"')
            template = f"host=127.0.0.1 port={cluster.port} user=postgres dbname={_TEMPLATE_DB}"
            with psycopg.connect(template) as tconn:
                upgrade(tconn, _TEMPLATE_DB)
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE_DB}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/{name}"


def require_postgres() -> bool:
    """True where Postgres tests must run (``TASKER_REQUIRE_POSTGRES=1``, e.g. CI)."""
    return os.environ.get("TASKER_REQUIRE_POSTGRES", "").strip() == "1"
