"""ZeroMQ event bus: events/s through the proxy, and what the sink costs the engine.

    python contrib/tasker-zmq/benchmarks/bench_zmq.py [--quick] [--steps 2000] [--rounds 7]

1. Bus throughput: this process's ``zmq`` sink publishes pre-built events as fast as it is handed
   them, through a ``tasker events proxy`` process, to one subscriber process that decodes each
   event. Reported: events/s handed to the sink, events/s the subscriber received, and losses.
2. Engine cost: the same fan-out (1 -> N no-op steps -> done, memory store) run with no sink and
   with the ``zmq`` sink publishing to the proxy while a subscriber receives everything, rounds
   interleaved so both see the same machine load. Target: the sink costs under 10% of steps/s.

Prints markdown tables (docs/performance.md, "ZeroMQ event bus").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from tasker_core import Config, Engine, Event, StepTemplate, TaskRequest, TaskTemplate

from tasker_zmq import ZmqOptions, ZmqSink

ANY_PORT = "tcp://127.0.0.1:*"
CLI = [sys.executable, "-m", "tasker_core.cli", "events"]
ENV = {**os.environ, "TASKER_LOAD_PLUGINS": "zmq", "PYTHONUNBUFFERED": "1"}

# A subscriber process: counts decoded events; "once": until none arrive for a while, then
# reports; "forever": until killed.
SUBSCRIBER = """
import json, sys, time
from tasker_zmq import Subscriber
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
    )
    assert proxy.stdout is not None
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
    )
    assert sub.stdout is not None and sub.stdout.readline().strip() == "ready"
    return sub


def sample_events(n: int) -> list[Event]:
    task = "9f" * 16
    return [
        Event(
            "step.completed",
            f"bench-{i}",
            time.time(),
            task,
            "bench",
            "fan",
            "1.0.0",
            {"step": f"w{i}", "attempt": 1, "duration": 0.000123},
        )
        for i in range(n)
    ]


def bus_throughput(frontend: str, backend: str, n: int) -> dict[str, Any]:
    sub = start_subscriber(backend, idle=1.0, mode="once")
    # Queues large enough for the whole run: this measures throughput, not the drop policy.
    sink = ZmqSink(ZmqOptions(publish=frontend, hwm=n, linger=30.0))
    assert sink.wait_for_subscriptions([""], timeout=30)
    events = sample_events(n)
    batch = 256
    started = time.perf_counter()
    for i in range(0, n, batch):
        sink.publish(events[i : i + batch])
    published = time.perf_counter() - started
    sink.close()
    out, _ = sub.communicate(timeout=120)
    result = json.loads(out.strip().splitlines()[-1])
    stats = sink.stats()
    return {
        "events": n,
        "handed_per_s": n / published,
        "received": result["count"],
        "received_per_s": result["count"] / result["seconds"] if result["seconds"] else 0.0,
        "dropped": stats["dropped"],
    }


def fanout(width: int) -> TaskTemplate:
    steps = [StepTemplate("src", "bench.noop")]
    steps += [StepTemplate(f"w{i}", "bench.noop", ("src",)) for i in range(width)]
    return TaskTemplate("bench", "fan", "1.0.0", tuple(steps))


def thread_cpu(native_id: int | None) -> float:
    """Seconds of CPU a thread of this process has used (Linux schedstat; 0 elsewhere)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", encoding="ascii") as file:
            return int(file.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class MeteredSink(ZmqSink):
    """The zmq sink, counting the CPU its publish() calls take on the bus thread."""

    publish_cpu = 0.0

    def publish(self, events: Sequence[Event]) -> None:
        started = time.thread_time()
        super().publish(events)
        self.publish_cpu += time.thread_time() - started

    def io_cpu(self) -> float:
        return thread_cpu(self._thread.native_id)


class NullSink:
    """Accepts and forgets: what any sink costs the engine before doing anything."""

    name = "null"

    def publish(self, events: Sequence[Event]) -> None:
        return None

    def close(self) -> None:
        return None


def engine_run(width: int, setting: str, frontends: dict[str, str]) -> dict[str, float]:
    """One run; steps/s, process CPU per step, and the sink's own CPU per step."""
    config = Config.from_mapping(
        {
            "store": {"url": "memory://"},
            "events": {"sinks": []},
            "execution": {"max_concurrent_steps": 4, "poll_interval": "10ms"},
        }
    )
    sink: MeteredSink | None = None
    sinks: list[Any] = []
    if setting == "null":
        sinks.append(NullSink())
    elif setting in frontends:
        sink = MeteredSink(ZmqOptions(publish=frontends[setting]))
        assert sink.wait_for_subscriptions(timeout=30)
        sinks.append(sink)
    engine = Engine(config, sinks=sinks)
    engine.register_handler("bench.noop", lambda ctx: None)
    engine.register_template(fanout(width))
    io_before = sink.io_cpu() if sink else 0.0
    cpu_before = time.process_time()
    started = time.perf_counter()
    task = engine.run(TaskRequest("bench", "fan"), timeout=600)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    assert task.state == "complete", task.state
    engine.close()
    steps = width + 1
    result = {"steps_per_s": steps / elapsed, "cpu_us_per_step": cpu / steps * 1e6}
    if sink is not None:
        sink_cpu = sink.publish_cpu + sink.io_cpu() - io_before
        stats = sink.stats()
        result |= {
            "sink_us_per_step": sink_cpu / steps * 1e6,
            "events_per_step": (stats["sent"] + stats["dropped"]) / steps,
            "dropped": stats["dropped"],
        }
    return result


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--steps", type=int, default=2000, help="fan-out width")
    parser.add_argument("--rounds", type=int, default=9, help="engine rounds per setting")
    parser.add_argument("--events", type=int, default=200_000, help="events for the bus run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.events = 3, 50_000
    settings = ("off", "null", "zmq", "zmq_task")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    proxy, frontend, backend = start_proxy()
    task_proxy, task_frontend, task_backend = start_proxy()
    frontends = {"zmq": frontend, "zmq_task": task_frontend}
    try:
        bus = bus_throughput(frontend, backend, args.events)
        subs = [
            start_subscriber(backend, idle=1.0, mode="forever"),
            start_subscriber(task_backend, idle=1.0, mode="forever", prefix="task."),
        ]
        engine_run(200, "zmq", frontends)  # warm-up: imports, native graph code, allocator
        for _ in range(args.rounds):
            for name in settings:
                runs[name].append(engine_run(args.steps, name, frontends))
        for sub in subs:
            sub.kill()
            sub.wait()
    finally:
        for process in (proxy, task_proxy):
            process.terminate()
            process.wait(30)
    print("### Bus throughput (one publisher -> proxy process -> one subscriber process)\n")
    print("| events | handed to the sink/s | received/s | received | dropped |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {bus['events']:,} | {bus['handed_per_s']:,.0f} | {bus['received_per_s']:,.0f} "
        f"| {bus['received']:,} | {bus['dropped']:,} |"
    )
    print(
        f"\n### Engine, fan-out of {args.steps:,} no-op steps, memory store "
        f"(medians of {args.rounds} interleaved rounds)\n"
    )
    print("| setting | steps/s | min | max | process CPU µs/step |")
    print("|---|---:|---:|---:|---:|")
    labels = {
        "off": "no sink",
        "null": "a sink that does nothing (the event bus alone)",
        "zmq": "zmq sink, through the proxy to a subscriber of every event",
        "zmq_task": "zmq sink, the subscriber wants only `task.`",
    }
    for name in settings:
        rates = [run["steps_per_s"] for run in runs[name]]
        print(
            f"| {labels[name]} | {median(runs[name], 'steps_per_s'):,.0f} | {min(rates):,.0f} "
            f"| {max(rates):,.0f} | {median(runs[name], 'cpu_us_per_step'):.1f} |"
        )
    off, null, zmq_, task_only = (median(runs[n], "steps_per_s") for n in settings)
    sink_us = median(runs["zmq"], "sink_us_per_step")
    off_cpu = median(runs["off"], "cpu_us_per_step")
    print(
        f"\n- steps/s with the zmq sink vs no sink: {zmq_ / off - 1:+.1%}; "
        f"vs the bus alone: {zmq_ / null - 1:+.1%} (target: cost under 10%)"
    )
    print(
        f"- with a subscriber of `task.` only: {task_only / off - 1:+.1%} vs no sink, "
        f"{task_only / null - 1:+.1%} vs the bus alone"
    )
    print(
        f"- the sink's own CPU (publish on the bus thread + its I/O thread): {sink_us:.1f} µs "
        f"per step for {median(runs['zmq'], 'events_per_step'):.2f} events per step, "
        f"{sink_us / off_cpu:.1%} of the CPU a step costs without sinks ({off_cpu:.1f} µs)"
    )
    dropped = sum(int(run["dropped"]) for run in runs["zmq"])
    dropped_task = sum(int(run["dropped"]) for run in runs["zmq_task"])
    print(
        f"- events dropped by the sink over all rounds: {dropped:,} (every-event subscriber); "
        f"{dropped_task:,} not subscribed to, never encoded (`task.` subscriber)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
