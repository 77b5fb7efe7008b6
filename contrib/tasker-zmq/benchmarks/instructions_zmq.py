"""Instructions per engine step with the zmq sink off and on, counted by valgrind.

    python contrib/tasker-zmq/benchmarks/instructions_zmq.py [--settings off on on_task on_pyzmq]
        [--path EXTRA_SYS_PATH]

The wall-clock figures of ``bench_zmq.py`` swing by more than the sink costs on this shared
two-core machine; instruction counts do not. Each setting runs a fan-out of 1,000 no-op steps on
the memory store, with the default ``[log]`` sink, under ``valgrind --tool=callgrind``, once for
1 and once for 3 tasks after a warm-up task; the difference per step cancels start-up. Every
thread of the process counts: the engine's, the log sink's, the zmq sink's and libzmq's. The
subscriber is a SUB socket of the same process that never reads (its queue holds every event),
so what is counted is the publishing side only.

- ``off``: ``[log]``; ``on``: ``[log, zmq]`` with a subscriber of every event; ``on_task``: a
  subscriber of ``task.`` only; ``on_pyzmq``: every event, the sink forced onto pyzmq's path
  (a delivery thread of the event bus's filters, encodes and sends).

``--path`` puts another checkout's packages first on ``sys.path`` (its extensions built), for
before/after pairs. Needs valgrind; takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SETTINGS = ("off", "on", "on_task", "on_pyzmq")

_CHILD = """
import sys, time
import zmq
from tasker_core import Config, Engine, StepTemplate, TaskRequest, TaskTemplate
from tasker_core.builtin.log_sink import LogSink
from tasker_zmq import ZmqOptions, ZmqSink

setting, runs = sys.argv[1], int(sys.argv[2])
config = Config.from_mapping(
    {
        "store": {"url": "memory://"},
        "events": {"sinks": []},
        "execution": {"max_concurrent_steps": 4, "poll_interval": "10ms"},
    }
)
sinks = [LogSink()]
context = zmq.Context()
if setting != "off":
    sink = ZmqSink(
        ZmqOptions(bind="tcp://127.0.0.1:*", hwm=1_000_000), native_sender=setting != "on_pyzmq"
    )
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1_000_000)
    sub.setsockopt(zmq.SUBSCRIBE, b"task." if setting == "on_task" else b"")
    sub.connect(sink.endpoint)
    assert sink.wait_for_subscriptions(timeout=30)
    sinks.append(sink)
engine = Engine(config, sinks=sinks)
engine.register_handler("bench.noop", lambda ctx: None)
steps = [StepTemplate("src", "bench.noop")]
steps += [StepTemplate(f"w{i}", "bench.noop", ("src",)) for i in range(1000)]
engine.register_template(TaskTemplate("bench", "fan", "1.0.0", tuple(steps)))
for _ in range(runs + 1):  # one warm-up task
    engine.run(TaskRequest("bench", "fan"), timeout=600)
    assert engine.bus.flush(timeout=60)
if setting != "off":
    deadline = time.monotonic() + 60
    while sink.stats()["sent"] + sink.dropped < engine.event_stats()["zmq"].delivered:
        assert time.monotonic() < deadline, sink.stats()
        time.sleep(0.01)
    assert sink.stats()["hwm"] == 0, sink.stats()
engine.close()
print(len(steps))
"""


def count(setting: str, runs: int, path: str | None) -> tuple[int, int]:
    """(instructions, steps per task) of a child process running ``runs`` timed tasks."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    if path:
        env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                _CHILD,
                setting,
                str(runs),
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1)), int(done.stdout.split()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--path", help="a directory to put first on the children's sys.path")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    per_step: dict[str, float] = {}
    for setting in args.settings:
        few, steps = count(setting, 1, args.path)
        many, _ = count(setting, 3, args.path)
        per_step[setting] = (many - few) / (2 * steps)
    base = per_step.get("off")
    for setting, instructions in per_step.items():
        versus = "" if base is None or setting == "off" else f" ({instructions / base - 1:+.1%})"
        print(f"{setting}: {instructions:,.0f} instructions per step{versus}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
