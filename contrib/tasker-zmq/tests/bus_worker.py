"""One worker process of the bus tests: an engine on its own memory store, publishing through
the ``zmq`` sink (built by the installed plugin, as ``events.sinks: [zmq]`` would), running one
task. It waits for the listed subscriptions first (the slow-joiner handshake), records every event
it emits through an in-process subscriber, and writes them as JSON to ``--out``.

    python bus_worker.py --publish tcp://127.0.0.1:5559 --out events.json \
        [--await PREFIX ...] [--fail] [--label NAME]

Exit status: 0 when the task ended as expected, 3 when the subscriptions never arrived.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tasker_core import (
    Config,
    Engine,
    Event,
    PermanentError,
    RetryableError,
    StepContext,
    StepTemplate,
    TaskRequest,
    TaskTemplate,
)
from tasker_core.plugin import PluginHost

from tasker_zmq import ZmqSink


def prepare(ctx: StepContext) -> dict[str, Any]:
    return {"label": ctx.context["label"]}


def flaky(ctx: StepContext) -> str:
    if ctx.attempt == 1:
        raise RetryableError("first attempt always fails", retry_after=0.01)
    return "ok"


def work(ctx: StepContext) -> int:
    ctx.publish("progress", {"step": ctx.step})
    return len(ctx.step)


def finish(ctx: StepContext) -> None:
    if ctx.context.get("fail"):
        raise PermanentError("told to fail")


def template() -> TaskTemplate:
    steps = [
        StepTemplate("prepare", "bus.prepare"),
        StepTemplate("flaky", "bus.flaky", ("prepare",)),
    ]
    steps += [StepTemplate(f"work_{i}", "bus.work", ("prepare",)) for i in range(3)]
    parents = ("flaky", "work_0", "work_1", "work_2")
    steps.append(StepTemplate("finish", "bus.finish", parents))
    return TaskTemplate("bus", "fanout", "1.0.0", tuple(steps))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--await", dest="awaits", action="append", default=[])
    parser.add_argument("--label", default="worker")
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    config = Config.from_mapping(
        {
            "store": {"url": "memory://"},
            "events": {"sinks": ["zmq"], "zmq": {"publish": args.publish, "linger": "5s"}},
            "execution": {"max_concurrent_steps": 4, "poll_interval": "10ms"},
            "backoff": {"base": "10ms", "max": "50ms", "jitter": 0.0},
        }
    )
    plugins = PluginHost.create()
    sinks = plugins.make_sinks(list(config.events.sinks), config)
    sink = sinks[0]
    assert isinstance(sink, ZmqSink), sink
    if args.awaits and not sink.wait_for_subscriptions(args.awaits, timeout=30):
        print(f"subscriptions {args.awaits} never arrived: {sink.subscriptions()}", file=sys.stderr)
        return 3
    recorded: list[Event] = []
    engine = Engine(config, plugins=plugins, sinks=sinks)
    engine.subscribe("*", recorded.append)
    for name, fn in (("prepare", prepare), ("flaky", flaky), ("work", work), ("finish", finish)):
        engine.register_handler(f"bus.{name}", fn)
    engine.register_template(template())
    task = engine.run(
        TaskRequest("bus", "fanout", context={"label": args.label, "fail": args.fail}), timeout=60
    )
    engine.close()
    args.out.write_text(json.dumps([e.to_dict() for e in recorded]), encoding="utf-8")
    print(json.dumps({"task_id": task.id, "state": task.state, "sink": sink.stats()}))
    expected = "error" if args.fail else "complete"
    return 0 if task.state == expected else 1


if __name__ == "__main__":
    sys.exit(main())
