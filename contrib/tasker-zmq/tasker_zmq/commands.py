"""``tasker events tail | proxy | keygen``.

Exit codes follow the ``tasker`` conventions: 0 on success (including a stop by SIGINT or
SIGTERM), 1 when ``tail --count N`` timed out before N events, 2 on bad input (an address or key
file that cannot be used), with one line on stderr. ZeroMQ is imported only when a command runs,
so the plugin costs ``tasker``'s start-up nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from tasker_core import ConfigError, load_config
from tasker_core.plugin import duration, positive_int

from tasker_zmq.options import (
    DEFAULT_BACKEND,
    DEFAULT_FRONTEND,
    ZmqOptions,
    check_endpoint,
)

__all__ = ["add_commands", "run_keygen", "run_proxy", "run_tail"]

_PROG = "tasker events"
_STOP_POLL = 0.1


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``events`` and its three sub-commands."""
    events = subparsers.add_parser(
        "events",
        help="the ZeroMQ event bus: tail events, run the proxy, make CURVE keys",
        description="The ZeroMQ event bus (docs/events-wire-format.md).",
    )
    commands = events.add_subparsers(dest="events_command", metavar="COMMAND", required=True)
    _add_tail(commands)
    _add_proxy(commands)
    _add_keygen(commands)


def _json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    # SUPPRESS keeps a global `tasker --json events ...` from being reset by this default.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=what)


def _add_tail(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tail = commands.add_parser(
        "tail",
        help="print events from the bus as they arrive",
        description="Subscribe to the bus and print each event: one readable line, or one "
        "JSON object per line with --json. Stops on Ctrl-C / SIGTERM.",
    )
    tail.add_argument(
        "--connect",
        metavar="ADDR",
        help="where to subscribe: the proxy's backend, or a sink's events.zmq.bind "
        f"(default: events.zmq.bind if set, else {DEFAULT_BACKEND})",
    )
    tail.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="PREFIX",
        help="only events whose name starts with PREFIX (step., task.failed); repeatable",
    )
    _json_flag(tail, "print one JSON object per line (the wire payload)")
    tail.add_argument("--count", type=positive_int, metavar="N", help="exit after N events")
    tail.add_argument(
        "--timeout",
        type=duration,
        metavar="DURATION",
        help="exit after this long (30s, 500ms); with --count, exit 1 if N did not arrive",
    )
    tail.add_argument(
        "--server-key",
        type=Path,
        metavar="FILE",
        help="CURVE: the server's public key file (NAME.key)",
    )
    tail.add_argument(
        "--client-key",
        type=Path,
        metavar="FILE",
        help="CURVE: this subscriber's key pair (NAME.key_secret)",
    )
    tail.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (for the default --connect)",
    )
    tail.set_defaults(run=run_tail)


def _add_proxy(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="forward events from many publishers to many subscribers",
        description="Run the XSUB/XPUB forwarder: workers publish to --frontend, subscribers "
        "connect to --backend. Prints one line when ready; stops on Ctrl-C / SIGTERM.",
    )
    proxy.add_argument(
        "--frontend",
        default=DEFAULT_FRONTEND,
        metavar="ADDR",
        help=f"bind for publishers (default {DEFAULT_FRONTEND}; port * = any)",
    )
    proxy.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        metavar="ADDR",
        help=f"bind for subscribers (default {DEFAULT_BACKEND}; port * = any)",
    )
    proxy.add_argument(
        "--hwm",
        type=positive_int,
        default=10000,
        metavar="N",
        help="messages queued per peer before dropping (default 10000)",
    )
    proxy.add_argument(
        "--server-key",
        type=Path,
        metavar="FILE",
        help="CURVE: the proxy's key pair (NAME.key_secret); enables encryption",
    )
    proxy.add_argument(
        "--publishers",
        type=Path,
        metavar="DIR",
        help="CURVE: only publishers whose public keys (*.key) are in DIR",
    )
    proxy.add_argument(
        "--subscribers",
        type=Path,
        metavar="DIR",
        help="CURVE: only subscribers whose public keys (*.key) are in DIR",
    )
    _json_flag(proxy, "print the ready line as a JSON object")
    proxy.set_defaults(run=run_proxy)


def _add_keygen(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keygen = commands.add_parser(
        "keygen",
        help="write a CURVE key pair (NAME.key, NAME.key_secret)",
        description="Write a CURVE key pair as ZeroMQ certificate files: DIR/NAME.key "
        "(public, share it) and DIR/NAME.key_secret (mode 0600, keep it).",
    )
    keygen.add_argument("directory", type=Path, metavar="DIR")
    keygen.add_argument("--name", default="tasker", help="file name stem (default: tasker)")
    keygen.add_argument("--force", action="store_true", help="replace existing key files")
    _json_flag(keygen, "print the file paths and public key as JSON")
    keygen.set_defaults(run=run_keygen)


def _fail(command: str, message: str) -> int:
    print(f"{_PROG} {command}: error: {message}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (main thread only; elsewhere the caller stops it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ------------------------------------------------------------------------------------- tail


def _default_connect(args: argparse.Namespace) -> str:
    """The configured sink's bind address (a single-process setup), else the proxy backend."""
    options = ZmqOptions.from_config(load_config(getattr(args, "config", None)))
    if options.bind is not None and check_endpoint(options.bind, bind=False) is None:
        return options.bind
    return DEFAULT_BACKEND


def run_tail(args: argparse.Namespace) -> int:
    from tasker_zmq.keys import load_public_key, load_secret_key
    from tasker_zmq.tail import Subscriber, tail

    try:
        connect = args.connect or _default_connect(args)
    except ConfigError as exc:
        return _fail("tail", str(exc))
    problem = check_endpoint(connect, bind=False)
    if problem is not None:
        return _fail("tail", f"--connect {connect!r}: {problem}")
    if (args.server_key is None) != (args.client_key is None):
        return _fail("tail", "CURVE needs both --server-key and --client-key")
    try:
        server = load_public_key(args.server_key) if args.server_key else None
        client = load_secret_key(args.client_key) if args.client_key else None
        subscriber = Subscriber(connect, args.filter, server_key=server, client_key=client)
    except ValueError as exc:
        return _fail("tail", str(exc))
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            printed = tail(
                subscriber,
                sys.stdout,
                stop,
                as_json=bool(getattr(args, "json", False)),
                count=args.count,
                timeout=args.timeout,
            )
    finally:
        subscriber.close()
    if args.count is not None and printed < args.count and not stop.is_set():
        print(f"{_PROG} tail: timed out after {printed} of {args.count} events", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------ proxy


def run_proxy(args: argparse.Namespace) -> int:
    import zmq

    from tasker_zmq.keys import load_secret_key
    from tasker_zmq.proxy import Proxy

    for flag, address in (("--frontend", args.frontend), ("--backend", args.backend)):
        problem = check_endpoint(address, bind=True)
        if problem is not None:
            return _fail("proxy", f"{flag} {address!r}: {problem}")
    for flag, directory in (("--publishers", args.publishers), ("--subscribers", args.subscribers)):
        if directory is not None and not directory.is_dir():
            return _fail("proxy", f"{flag} {str(directory)!r} is not a directory")
    try:
        key = load_secret_key(args.server_key) if args.server_key else None
        proxy = Proxy(
            args.frontend,
            args.backend,
            hwm=args.hwm,
            server_key=key,
            publishers=args.publishers,
            subscribers=args.subscribers,
        )
        frontend, backend = proxy.start()
    except (ValueError, zmq.ZMQError) as exc:
        return _fail("proxy", str(exc))
    if getattr(args, "json", False):
        print(json.dumps({"frontend": frontend, "backend": backend, "curve": key is not None}))
    else:
        print(
            f"{_PROG} proxy: publishers connect to {frontend}, subscribers to {backend}"
            + (" (CURVE)" if key is not None else "")
        )
    sys.stdout.flush()
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            while not stop.is_set():
                time.sleep(_STOP_POLL)
    finally:
        counters = proxy.stop()
    if counters is not None:
        print(
            f"{_PROG} proxy: stopped after forwarding {counters.messages_forwarded} messages",
            file=sys.stderr,
        )
    return 0


# ----------------------------------------------------------------------------------- keygen


def run_keygen(args: argparse.Namespace) -> int:
    from tasker_zmq.keys import load_public_key, write_keypair

    try:
        public, secret = write_keypair(args.directory, args.name, force=args.force)
    except (OSError, ValueError) as exc:
        return _fail("keygen", str(exc))
    key = load_public_key(public).decode()
    if getattr(args, "json", False):
        print(json.dumps({"public": str(public), "secret": str(secret), "public_key": key}))
    else:
        print(f"public key  {public}  (share it: {key})")
        print(f"secret key  {secret}  (mode 0600: keep it)")
    return 0
