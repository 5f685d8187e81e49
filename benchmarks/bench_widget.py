"""The task-log widget's cost on a 1,000-task run (SPEC §8, §13: with the widget <= 1.2x without).

Everything in ONE process, repetitions interleaved, reported as medians and ratios:

1. a run whose first execution suspends on a short wait; then, as in a notebook, the log widget
   is attached (a real ``anywidget`` model on a comm that JSON-encodes every message it would
   send to the browser, as a kernel comm does) and the second execution — resumed in the
   background by the wait's timer — runs N new tasks while the widget observes it. The same
   without a widget. Reported: the second execution's duration with / without, the ratio, the
   comm messages and bytes the widget sent;
2. the time from the end of the run to the widget's final render (its state says SUCCESS);
3. why one model: creating N rows as stock ipywidgets (an HBox of four widgets per row) against
   one anywidget model holding the N rows in one JSON trait — time, comm messages, bytes.

    python benchmarks/bench_widget.py [--tasks 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any

import comm
from _common import fmt_ms, header, median, verdict
from comm.base_comm import BaseComm

SENT = {"messages": 0, "bytes": 0}


class RecordingComm(BaseComm):
    """A comm that does what a kernel's does with a message (JSON-encode it), then drops it."""

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any) -> None:
        SENT["messages"] += 1
        SENT["bytes"] += len(json.dumps(data, default=str))


comm.create_comm = lambda *args, **kwargs: RecordingComm(*args, **kwargs)

from trigger_nb import TriggerClient  # noqa: E402 - after the comm is in place
from trigger_nb._notebook._widget import TaskLog  # noqa: E402


def define(client: TriggerClient, tasks: int) -> None:
    def task_fn(i: int) -> Any:
        async def fn() -> dict[str, int]:
            return {"i": i}

        return fn

    @client.define_job(id="bench-widget")
    async def job(payload: Any, io: Any, ctx: Any) -> Any:
        await io.wait("start", 0.05)
        for i in range(tasks):
            await io.run_task(["item", i], task_fn(i), name="item")
        return tasks


def one_run(client: TriggerClient, *, widget: bool) -> dict[str, float]:
    """The second execution's seconds, and (with the widget) run end -> final render."""
    run = client.invoke_sync("bench-widget", {"t": time.time_ns()})
    assert run.status == "WAITING"
    log = None
    rendered: dict[str, float] = {}
    if widget:
        log = TaskLog(run)

        def seen(change: Any) -> None:
            state = change["new"]
            if state.get("run", {}).get("status") == "SUCCESS" and "at" not in rendered:
                rendered["at"] = time.time()

        log.widget.observe(seen, names="state")
    SENT.update(messages=0, bytes=0)
    run.wait_sync(timeout=120)
    result = {}
    history = run.record["history"]
    second = history[-1]
    result["execution_s"] = second["ended_at"] - second["started_at"]
    if log is not None:
        deadline = time.time() + 10
        while "at" not in rendered and time.time() < deadline:
            time.sleep(0.001)
        result["render_after_end_s"] = rendered["at"] - second["ended_at"]
        result["messages"] = SENT["messages"]
        result["bytes"] = SENT["bytes"]
        log.close()
        log.widget.close()
    return result


def stock_vs_one_model(rows: int) -> None:
    import anywidget
    import ipywidgets as widgets
    import traitlets

    class One(anywidget.AnyWidget):
        _esm = "export default { render() {} }"
        state = traitlets.Dict().tag(sync=True)

    SENT.update(messages=0, bytes=0)
    started = time.perf_counter()
    boxes = [
        widgets.HBox([widgets.Label(f"item {i}"), widgets.HTML("<b>✓ COMPLETED</b>"), widgets.Label("1 attempt"), widgets.Label("3 ms")])
        for i in range(rows)
    ]
    widgets.VBox(boxes)
    stock = (time.perf_counter() - started, SENT["messages"], SENT["bytes"])
    SENT.update(messages=0, bytes=0)
    started = time.perf_counter()
    One(state={"rows": [{"id": f"t{i}", "name": "item", "key": f"item-{i}", "status": "COMPLETED", "attempts": 1, "ms": 3} for i in range(rows)]})
    one = (time.perf_counter() - started, SENT["messages"], SENT["bytes"])
    print(f"  {rows:,} rows as stock ipywidgets : {fmt_ms(stock[0]):>10}, {stock[1]:>6,} comm messages, {stock[2] / 1024:>8.0f} KiB")
    print(f"  {rows:,} rows in one anywidget   : {fmt_ms(one[0]):>10}, {one[1]:>6,} comm messages, {one[2] / 1024:>8.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    header(f"task-log widget on a {args.tasks:,}-task execution (median of {args.repeat}, interleaved)")
    with tempfile.TemporaryDirectory() as tmp:
        client = TriggerClient(dir=tmp)
        define(client, args.tasks)
        try:
            one_run(client, widget=True)  # warm-up: imports, the receiver-less loop, caches
            without, with_widget = [], []
            for _ in range(args.repeat):
                without.append(one_run(client, widget=False))
                with_widget.append(one_run(client, widget=True))
        finally:
            client.close()
    bare = median([r["execution_s"] for r in without])
    watched = median([r["execution_s"] for r in with_widget])
    ratio = watched / bare
    print(f"  execution without the widget : {fmt_ms(bare)}")
    print(f"  execution with the widget    : {fmt_ms(watched)}")
    print(f"  ratio with / without         : {ratio:.2f}x  (target <= 1.2x: {verdict(ratio <= 1.2)})")
    print(
        f"  widget traffic per execution : {median([r['messages'] for r in with_widget]):.0f} comm "
        f"messages, {median([r['bytes'] for r in with_widget]) / 1024:.0f} KiB"
    )
    render = median([r["render_after_end_s"] for r in with_widget])
    print(f"  run end -> final render      : {fmt_ms(render)}  (target <= 1 s: {verdict(render <= 1.0)})")
    header("why one model: stock ipywidgets per row vs one anywidget model")
    stock_vs_one_model(args.tasks)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
