"""ZeroMQ event bus: events/s through the proxy, and what the sink costs the engine.

    python contrib/tasker-zmq/benchmarks/bench_zmq.py [--quick] [--steps 3000] [--rounds 11]

1. Bus throughput: this process's ``zmq`` sink publishes pre-built events as fast as it can
   encode and send them, through a ``tasker events proxy`` process, to one subscriber process
   that decodes each event. Reported: events/s sent by the sink, events per message (the sink
   coalesces runs of one event name), events/s the subscriber received and decoded, and losses;
   with the native sender and with pyzmq's.
2. Engine cost: one fan-out (1 -> N no-op steps -> done, memory store; ``--store sqlite`` for
   the embedded default, durable, a new file per run) run in interleaved rounds
   (every setting in each round, so all see the same machine load) with
   - no sinks at all (the engine then builds no events),
   - the default sinks, ``[log]``: the zmq sink **off**,
   - ``[log, zmq]`` publishing through a proxy to a subscriber process that receives every
     message and counts its events without decoding them: the zmq sink **on** (a consumer's own
     work happens on its machine; how fast one decodes is the bus table's subject),
   - the same through another proxy to a subscriber that decodes every event (``on_decoding``):
     on this two-core VM its decoding takes the engine's second core even at idle priority (a
     busy loop at ``SCHED_IDLE`` alone costs the engine ~8% of its steps/s here),
   - the same with that decoding subscriber stopped (SIGSTOP) while the run is timed
     (``on_paused``), its events waiting in its socket's queue until it resumes,
   - the same with one event per message (``events_per_message: 1``, the wire format's first
     version): what coalescing saves, measured in the same rounds,
   - the same with the sink forced onto pyzmq's per-frame sends (``native_sender=False``): the
     sender before the native batch sender, measured in the same rounds,
   - ``[log, zmq]`` with a subscriber of ``task.`` only.
   Each round runs the settings in a fresh random order (seeded), after a garbage collection and
   once the peer processes are quiet: with a fixed cyclic order each setting always followed the
   same one, and whatever a heavy setting left behind always slowed the same successor.
   Reported: steps/s, the on/off ratio of each round (median), process CPU per step, and the
   CPU of the sink's own threads per step, in all and by thread: on the native path the
   publisher's thread (sends, reads subscriptions) and libzmq's, while filtering and encoding
   run on the engine's threads and show only in process CPU on vs off; on pyzmq's path the event
   bus's delivery thread for the sink, where it filters, encodes and sends. Also the `log`
   sink's delivery thread, on and off: the engine's events die on whichever thread lets go of
   them last, so with pyzmq's path freeing them moves onto the zmq sink's delivery thread, a cost
   that is not the sink's (with it off, the log thread pays it). Target: the sink costs under 10%
   of steps/s.

The proxy and subscriber processes run at idle priority (``SCHED_IDLE``; ``--share-cpu`` turns
that off): in a deployment they are other machines' work, and on this two-core machine they would
otherwise take the engine's CPU whenever events flow, blurring "on" with their own cost. For the
same reason each timed run starts only once they have gone quiet (their CPU time has stopped
growing): a subscriber still decoding the previous round's events would otherwise slow whichever
setting runs next.

Prints markdown tables (docs/performance.md, "ZeroMQ event bus").
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import attrs
from tasker_core import Config, Engine, Event, StepTemplate, TaskRequest, TaskTemplate
from tasker_core.builtin.log_sink import LogSink

from tasker_zmq import ZmqOptions, ZmqSink

ANY_PORT = "tcp://127.0.0.1:*"
CLI = [sys.executable, "-m", "tasker_core.cli", "events"]
ENV = {**os.environ, "TASKER_LOAD_PLUGINS": "zmq", "PYTHONUNBUFFERED": "1"}
SETTINGS = ("none", "off", "on", "on_decoding", "on_paused", "on_single", "on_pyzmq", "on_task")
PEERS: list[int] = []
"""The proxy and subscriber processes' pids (see quiesce)."""
STORE_FILES: list[str] = []
"""The SQLite files of the run in progress (``--store sqlite``), removed after it."""
PAUSED: list[int] = []
"""The subscriber of every event, stopped (SIGSTOP) while an ``on_paused`` run is timed."""
BACKGROUND = True
"""Run the proxy and subscriber processes at idle priority (see background_priority);
``--share-cpu`` turns it off."""
LABELS = {
    "none": "no sinks (no events are built)",
    "off": "zmq off: the default sinks, `[log]`",
    "on": "zmq on: `[log, zmq]`, a subscriber of every event (receives, counts)",
    "on_decoding": "zmq on, every event, the subscriber decoding each on these cores",
    "on_single": "zmq on, every event, one event per message (no coalescing)",
    "on_pyzmq": "zmq on, every event, pyzmq's path (the bus's delivery thread encodes and sends)",
    "on_task": "zmq on, the subscriber wants only `task.`",
    "on_paused": "zmq on, every event, the decoding subscriber paused during the run",
}

# A subscriber process: counts decoded events; "once": until none arrive for a while, then
# reports; "forever": until killed; "raw": until killed, counting the events in each message
# without decoding them (a consumer whose work happens elsewhere: the engine-cost settings
# measure the engine, and decoding speed is the bus table's subject).
SUBSCRIBER = """
import json, sys, time
from tasker_zmq import Subscriber
if sys.argv[3] == "raw":
    import zmq
    socket = zmq.Context().socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 1_000_000)
    socket.setsockopt(zmq.SUBSCRIBE, sys.argv[4].encode())
    socket.connect(sys.argv[1])
    print("ready", flush=True)
    count = 0
    while True:
        count += socket.recv_multipart()[1].count(b"\\n") + 1
sub = Subscriber(sys.argv[1], [sys.argv[4]], hwm=1_000_000)
print("ready", flush=True)
count, first, last = 0, None, None
while True:
    event = sub.receive(float(sys.argv[2]))
    if event is None:
        if count and sys.argv[3] == "once":
            break
        continue
    last = time.perf_counter()
    first = first or last
    count += 1
print(json.dumps({"count": count, "seconds": (last - first) if count > 1 else 0.0}), flush=True)
"""


def background_priority() -> None:
    """Make this (child) process run only on CPU time nothing else wants (SCHED_IDLE).

    In a deployment the proxy and the subscribers are other machines' work. Here they share two
    cores with the engine, and at normal priority they take its CPU whenever events flow: "on"
    would then also measure them, not only what the sink costs the engine's process. At idle
    priority they still get the core the engine leaves; a subscriber that fell behind would
    show as dropped events, which the report counts.
    """
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def peer_cpu() -> int:
    """Clock ticks of CPU the peer processes have used so far (Linux; 0 elsewhere)."""
    total = 0
    for pid in PEERS:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total


def quiesce(timeout: float = 10.0) -> None:
    """Wait until the peer processes have used no CPU for two 20 ms looks in a row."""
    deadline = time.monotonic() + timeout
    last, still = peer_cpu(), 0
    while still < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
        now = peer_cpu()
        still = still + 1 if now == last else 0
        last = now


def start_proxy() -> tuple[subprocess.Popen[str], str, str]:
    proxy = subprocess.Popen(
        [
            *CLI,
            "proxy",
            "--frontend",
            ANY_PORT,
            "--backend",
            ANY_PORT,
            "--json",
            "--hwm",
            "1000000",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=background_priority if BACKGROUND else None,
    )
    assert proxy.stdout is not None
    PEERS.append(proxy.pid)
    ready = json.loads(proxy.stdout.readline())
    return proxy, ready["frontend"], ready["backend"]


def start_subscriber(
    backend: str, idle: float, mode: str, prefix: str = ""
) -> subprocess.Popen[str]:
    sub = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, backend, str(idle), mode, prefix],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=ENV,
        preexec_fn=background_priority if BACKGROUND else None,
    )
    assert sub.stdout is not None and sub.stdout.readline().strip() == "ready"
    PEERS.append(sub.pid)
    return sub


def sample_events(n: int, interleaved: bool = False) -> list[Event]:
    """A fan-out's step events (enqueued, started, completed per step) in the engine's order.

    The engine emits every ``step.enqueued`` of the fan-out first, then, four steps running at
    a time, four ``step.started`` and four ``step.completed`` by turns: the runs of one name the
    sink coalesces. ``interleaved`` alternates the names event by event instead: no run at all,
    the worst case for coalescing.
    """
    task, steps, events = "9f" * 16, -(-n // 3), []
    order = [("step.enqueued", i) for i in range(steps)]
    for start in range(0, steps, 4):
        group = range(start, min(start + 4, steps))
        order += [("step.started", i) for i in group] + [("step.completed", i) for i in group]
    if interleaved:
        kinds = ("step.enqueued", "step.started", "step.completed")
        order = [(kinds[i % 3], i // 3) for i in range(3 * steps)]
    for i, (kind, step) in enumerate(order[:n]):
        data: dict[str, Any] = {"step": f"w{step}", "attempt": 1}
        if kind == "step.completed":
            data["duration"] = time.perf_counter() % 0.001
        events.append(Event(kind, f"bench-{i}", time.time(), task, "bench", "fan", "1.0.0", data))
    return events


def wait_until_sent(sink: ZmqSink, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sink.stats()["sent"] + sink.dropped < total and time.monotonic() < deadline:
        time.sleep(0.0005)


def bus_throughput(
    frontend: str, backend: str, n: int, native: bool, interleaved: bool = False
) -> dict[str, Any]:
    sub = start_subscriber(backend, idle=1.0, mode="once")
    # Queues large enough for the whole run: this measures throughput, not the drop policy.
    sink = ZmqSink(ZmqOptions(publish=frontend, hwm=n, linger=30.0), native_sender=native)
    assert sink.wait_for_subscriptions([""], timeout=30)
    events = sample_events(n, interleaved)
    batch = 256  # the event bus's default batch size
    started = time.perf_counter()
    for i in range(0, n, batch):
        sink.publish(events[i : i + batch])
    wait_until_sent(sink, n, timeout=120)
    sent_in = time.perf_counter() - started
    sink.close()
    out, _ = sub.communicate(timeout=120)
    result = json.loads(out.strip().splitlines()[-1])
    stats = sink.stats()
    return {
        "sender": sink.sender + (", names interleaved (no runs)" if interleaved else ""),
        "events": n,
        "sent_per_s": stats["sent"] / sent_in,
        "per_message": stats["sent"] / max(1, stats["messages"]),
        "received": result["count"],
        "received_per_s": result["count"] / result["seconds"] if result["seconds"] else 0.0,
        "dropped": stats["dropped"],
    }


def fanout(width: int) -> TaskTemplate:
    steps = [StepTemplate("src", "bench.noop")]
    steps += [StepTemplate(f"w{i}", "bench.noop", ("src",)) for i in range(width)]
    return TaskTemplate("bench", "fan", "1.0.0", tuple(steps))


def threads() -> set[int]:
    """This process's thread ids (Linux; empty elsewhere, and then no per-thread figures)."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def native_threads(ids: set[int], name: str) -> set[int]:
    """Those of ``ids`` whose kernel thread name is ``name`` (threads Python did not start)."""
    found = set()
    for native_id in ids:
        try:
            with open(f"/proc/self/task/{native_id}/comm", encoding="ascii") as file:
                if file.read().strip() == name:
                    found.add(native_id)
        except OSError:
            continue
    return found


def named_threads(name: str) -> list[int]:
    """The native ids of this process's Python threads called ``name``."""
    ids = [t.native_id for t in threading.enumerate() if t.name == name]
    return [native_id for native_id in ids if native_id is not None]


def thread_cpu(native_id: int) -> float:
    """Seconds of CPU a thread of this process has used (Linux schedstat; 0 elsewhere)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", encoding="ascii") as file:
            return int(file.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def store_url(store: str) -> str:
    """A fresh store of the kind asked for: the memory store, or a new SQLite file."""
    if store == "memory":
        return "memory://"
    fd, path = tempfile.mkstemp(prefix="bench-zmq-", suffix=".db")
    os.close(fd)
    os.unlink(path)
    STORE_FILES.append(path)
    return f"sqlite:///{path}"


def engine_run(
    width: int, setting: str, frontends: dict[str, str], store: str = "memory"
) -> dict[str, float]:
    """One run: steps/s, process CPU per step, and the zmq sink's threads' CPU per step."""
    config = Config.from_mapping(
        {
            "store": {"url": store_url(store)},
            "events": {"sinks": []},
            "execution": {"max_concurrent_steps": 4, "poll_interval": "10ms"},
        }
    )
    sinks: list[Any] = [] if setting == "none" else [LogSink()]
    sink: ZmqSink | None = None
    own: set[int] = set()
    if setting in frontends:
        before = threads()
        native = setting != "on_pyzmq"
        options = ZmqOptions(publish=frontends[setting])
        if setting == "on_single":
            options = attrs.evolve(options, events_per_message=1)
        sink = ZmqSink(options, native_sender=native)
        assert sink.sender == ("native" if native else "pyzmq"), sink.sender
        own = threads() - before  # its I/O thread and libzmq's threads
        assert sink.wait_for_subscriptions(timeout=30)
        sinks.append(sink)
    engine = Engine(config, sinks=sinks)
    bus_ids: list[int] = []
    if sink is not None:  # and the event bus's thread that delivers the sink its batches
        bus_ids = named_threads("tasker-sink-zmq")
        own |= set(bus_ids)
    log_ids = named_threads("tasker-sink-log")
    engine.register_handler("bench.noop", lambda ctx: None)
    engine.register_template(fanout(width))
    io = set(named_threads("tasker-zmq-io")) & own
    publisher = native_threads(own, "tasker-zmq-pub")
    parts = {
        "io": io,
        "publisher": publisher,
        "libzmq": own - io - publisher - set(bus_ids),
        "bus": set(bus_ids),
        "log": set(log_ids),
    }
    gc.collect()  # the previous run's garbage is not this run's cost
    quiesce()
    paused = PAUSED if setting == "on_paused" else []
    for pid in paused:  # its decoding then cannot share the engine's two cores
        os.kill(pid, signal.SIGSTOP)
    parts_before = {name: sum(thread_cpu(t) for t in ids) for name, ids in parts.items()}
    own_before = sum(thread_cpu(t) for t in own)
    cpu_before = time.process_time()
    started = time.perf_counter()
    task = engine.run(TaskRequest("bench", "fan"), timeout=600)
    elapsed = time.perf_counter() - started
    assert task.state == "complete", task.state
    assert engine.bus.flush(timeout=60)  # the events' cost counts, wherever it lands
    if sink is not None:
        wait_until_sent(sink, engine.event_stats()["zmq"].delivered, timeout=60)
    cpu = time.process_time() - cpu_before
    for pid in paused:
        os.kill(pid, signal.SIGCONT)
    own_cpu = sum(thread_cpu(t) for t in own) - own_before
    parts_cpu = {
        name: sum(thread_cpu(t) for t in ids) - parts_before[name] for name, ids in parts.items()
    }
    engine.close()
    for path in STORE_FILES:  # a SQLite run's files: the next run starts from nothing
        for leftover in (path, f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    STORE_FILES.clear()
    steps = width + 1
    result = {
        "steps_per_s": steps / elapsed,
        "cpu_us_per_step": cpu / steps * 1e6,
        "log_us_per_step": parts_cpu["log"] / steps * 1e6,
    }
    if sink is not None:
        stats = sink.stats()
        result |= {
            "sink_us_per_step": own_cpu / steps * 1e6,
            **{
                f"{name}_us_per_step": cpu / steps * 1e6
                for name, cpu in parts_cpu.items()
                if name != "log"
            },
            "events_per_step": (stats["sent"] + stats["dropped"]) / steps,
            "events_per_message": stats["sent"] / max(1, stats["messages"]),
            "dropped": stats["dropped"],
            "no_subscriber": stats["no_subscriber"],
        }
    return result


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(
    buses: list[dict[str, Any]], runs: dict[str, list[dict[str, float]]], steps: int, store: str
) -> None:
    print("### Bus throughput (one publisher -> proxy process -> one subscriber process)\n")
    print(
        "| sender | events | sent by the sink/s | events/message "
        "| received and decoded/s | received | dropped |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for bus in buses:
        print(
            f"| {bus['sender']} | {bus['events']:,} | {bus['sent_per_s']:,.0f} "
            f"| {bus['per_message']:.1f} | {bus['received_per_s']:,.0f} | {bus['received']:,} "
            f"| {bus['dropped']:,} |"
        )
    rounds = len(runs["off"])
    print(
        f"\n### Engine, fan-out of {steps:,} no-op steps, {store} store "
        f"({rounds} interleaved rounds; medians)\n"
    )
    print("| setting | steps/s | min | max | process CPU µs/step | sink threads CPU µs/step |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in runs:
        rates = [run["steps_per_s"] for run in runs[name]]
        sink = f"{median(runs[name], 'sink_us_per_step'):.1f}" if name.startswith("on") else ""
        print(
            f"| {LABELS[name]} | {median(runs[name], 'steps_per_s'):,.0f} | {min(rates):,.0f} "
            f"| {max(rates):,.0f} | {median(runs[name], 'cpu_us_per_step'):.1f} | {sink} |"
        )

    def paired(name: str, base: str) -> float:
        if name not in runs or base not in runs:
            return math.nan
        pairs = zip(runs[name], runs[base], strict=True)
        ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in pairs]
        return statistics.median(ratios) - 1

    off_cpu = median(runs["off"], "cpu_us_per_step")
    off_log = median(runs["off"], "log_us_per_step")
    versus = ", ".join(
        f"{name} {paired(name, 'off'):+.1%}" for name in runs if name not in ("off", "none")
    )
    print(
        f"\n- wall clock vs off (median of the {rounds} rounds' ratios): {versus}"
        + (f"; `[log]` vs no sinks: {paired('off', 'none'):+.1%}" if "none" in runs else "")
        + " (target: the zmq sink under 10%)"
    )
    for name, label in (
        ("on", "native sender"),
        ("on_decoding", "native sender, the subscriber decoding"),
        ("on_paused", "native sender, the decoding subscriber paused"),
        ("on_single", "native sender, one event per message"),
        ("on_pyzmq", "pyzmq sender"),
    ):
        if name not in runs:
            continue
        sink_us = median(runs[name], "sink_us_per_step")
        on_cpu = median(runs[name], "cpu_us_per_step")
        split = ", ".join(
            f"{part} {median(runs[name], f'{key}_us_per_step'):.1f}"
            for key, part in (
                ("bus", "the bus's delivery thread"),
                ("publisher", "the native publisher's thread"),
                ("io", "I/O thread"),
                ("libzmq", "libzmq's threads"),
            )
        )
        moved = off_log - median(runs[name], "log_us_per_step")
        print(
            f"- {label}: the sink's own threads use {sink_us:.1f} µs per step "
            f"({median(runs[name], 'events_per_step'):.2f} events, "
            f"{median(runs[name], 'events_per_message'):.1f} per message), "
            f"**{sink_us / off_cpu:.1%}** "
            f"of the {off_cpu:.1f} µs a step costs with zmq off (by thread: {split}); "
            f"process CPU per step on vs off: {on_cpu / off_cpu - 1:+.1%}; the log sink's "
            f"delivery thread {off_log:.1f} µs per step off, {off_log - moved:.1f} on (the "
            f"difference, freeing events, moved to the zmq sink's threads): net of it "
            f"{sink_us - moved:.1f} µs ({(sink_us - moved) / off_cpu:.1%})"
        )
    if "on_task" in runs:
        print(
            f"- with a subscriber of `task.` only: {paired('on_task', 'off'):+.1%} vs off; "
            f"sink threads {median(runs['on_task'], 'sink_us_per_step'):.1f} µs per step"
        )
    every = ("on", "on_decoding", "on_paused", "on_single", "on_pyzmq")
    dropped = ", ".join(
        f"{name} {sum(int(run['dropped'] - run['no_subscriber']) for run in runs[name]):,}"
        for name in every
        if name in runs
    )
    unwanted = sum(int(run["no_subscriber"]) for run in runs.get("on_task", []))
    print(
        f"- events dropped by the sink over all rounds (subscribers of every event): {dropped}; "
        f"{unwanted:,} not subscribed to, never encoded (`task.` subscriber)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--steps", type=int, default=3000, help="fan-out width")
    parser.add_argument("--rounds", type=int, default=11, help="engine rounds per setting")
    parser.add_argument("--events", type=int, default=200_000, help="events for the bus run")
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        help="engine settings to run (off is always run: every ratio is against it)",
    )
    parser.add_argument(
        "--store",
        choices=("memory", "sqlite"),
        default="memory",
        help="the engine's store: memory (the cheapest step, so the sink's largest share) or "
        "sqlite (the embedded default, a new file per run)",
    )
    parser.add_argument(
        "--share-cpu",
        action="store_true",
        help="run the proxy and subscribers at normal priority, competing with the engine",
    )
    args = parser.parse_args()
    global BACKGROUND
    BACKGROUND = not args.share_cpu
    if args.quick:
        args.rounds, args.events = 3, 50_000
    chosen = tuple(name for name in SETTINGS if name in args.settings or name == "off")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    proxy, frontend, backend = start_proxy()
    task_proxy, task_frontend, task_backend = start_proxy()
    raw_proxy, raw_frontend, raw_backend = start_proxy()
    frontends = {
        "on": raw_frontend,
        "on_decoding": frontend,
        "on_paused": frontend,
        "on_single": raw_frontend,
        "on_pyzmq": raw_frontend,
        "on_task": task_frontend,
    }
    try:
        buses = [
            bus_throughput(frontend, backend, args.events, native=True),
            bus_throughput(frontend, backend, args.events, native=False),
            bus_throughput(frontend, backend, args.events, native=True, interleaved=True),
        ]
        subs = [
            start_subscriber(backend, idle=1.0, mode="forever"),
            start_subscriber(task_backend, idle=1.0, mode="forever", prefix="task."),
            start_subscriber(raw_backend, idle=1.0, mode="raw"),
        ]
        PAUSED.append(subs[0].pid)
        for name in ("on", "on_pyzmq"):  # warm-up: imports, native graph code, allocator
            engine_run(200, name, frontends, args.store)
        order = random.Random(7)  # fixed: runs of the script see the same orders
        for _ in range(args.rounds):
            # A fresh order each round: a cost one setting leaves behind (a busy peer, freed
            # memory) lands on a different successor every time instead of always the same one.
            for name in order.sample(chosen, len(chosen)):
                runs[name].append(engine_run(args.steps, name, frontends, args.store))
        for sub in subs:
            sub.kill()
            sub.wait()
    finally:
        for process in (proxy, task_proxy, raw_proxy):
            process.terminate()
            process.wait(30)
    report(buses, runs, args.steps, args.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
