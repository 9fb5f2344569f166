"""Scenario ``config_propagation``: from a config write returning to the change applied.

One real etcd on loopback. ``--processes`` watcher processes each run ``--per-process``
:class:`~dubbok.config.ConfigCenter` instances (each with its own etcd connection and its
own watch, as separate processes would have), all following the rules of one service. Each
round the orchestrator writes a new ``timeout`` to ``services/bench.Service/governance``
with :meth:`ConfigStore.put` — what ``dubbok config set`` runs — and every center records
the wall-clock time its rules-changed listener saw the new value. Latency = that time minus
the moment the write returned (``--via cli`` runs the real ``dubbok config set`` process
instead and measures from its exit). Reported: p50/p99/max over every (round, watcher), and
per round the time until the *last* watcher applied it.

Target: p99 < 200 ms on loopback. All processes share this machine's clock, so wall-clock
differences across them are meaningful.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchError,
    Child,
    Link,
    environment,
    fmt_ms,
    percentiles,
    progress,
    render_table,
    results_path,
    stop_all,
    write_json,
)

DESCRIPTION = "config change propagation: `dubbok config set` returning → applied in N watchers"

SERVICE = "bench.Service"
KEY = f"services/{SERVICE}/governance"
TARGET_P99 = 0.200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, default=10, help="watcher processes (10)")
    parser.add_argument(
        "--per-process", type=int, default=5, help="config centers per process (5; 10x5 = 50)"
    )
    parser.add_argument("--rounds", type=int, default=40, help="writes to measure (40)")
    parser.add_argument("--warmup", type=int, default=3, help="writes not measured (3)")
    parser.add_argument(
        "--via",
        choices=("api", "cli"),
        default="api",
        help="write with ConfigStore.put in-process (api) or the dubbok command (cli)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if p99 misses the target")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")


# -- watcher processes --------------------------------------------------------------------


def watcher_main(link: Link, url: str, index: int, count: int) -> None:
    """A process with ``count`` config centers; answers each request ``{"value": v}`` with
    the times (``time.time()``) at which each center applied timeout ``v``."""
    from dubbok.config import ConfigCenter, EffectiveRules, InstanceIdentity

    applied: dict[tuple[int, float], float] = {}
    changed = threading.Condition()

    def listener(slot: int) -> Any:
        def on_change(rules: EffectiveRules) -> None:
            now = time.time()
            if rules.timeout is not None:
                with changed:
                    applied.setdefault((slot, rules.timeout), now)
                    changed.notify_all()

        return on_change

    centers = []
    try:
        for slot in range(count):
            identity = InstanceIdentity(f"bench{index}", f"bench{index}-{slot}:{os.getpid()}")
            center = ConfigCenter(url, f"bench{index}", identity=identity)
            center.start()
            if center.state != "live":
                raise BenchError(f"watcher {index}/{slot} could not reach etcd at {url}")
            center.on_rules_change(SERVICE, listener(slot))
            centers.append(center)
        link.ready(os.getpid())
        while True:
            request = link.next_request()
            if request is None:
                break
            assert isinstance(request, dict)
            value = float(request["value"])
            deadline = time.monotonic() + float(request["timeout"])
            with changed:
                while not all((slot, value) in applied for slot in range(count)):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    changed.wait(remaining)
                times = [applied.get((slot, value)) for slot in range(count)]
            link.reply(times)
    finally:
        for center in centers:
            center.close()


# -- orchestration ------------------------------------------------------------------------


def _write(args: argparse.Namespace, store: Any, url: str, value: float) -> tuple[float, float]:
    """Write the new timeout; the wall-clock times just before and just after."""
    text = f"timeout: {value}\n"
    before = time.time()
    if args.via == "api":
        store.put(KEY, text)
    else:
        done = subprocess.run(
            [sys.executable, "-m", "dubbok.cli", "config", "set", KEY, text, "--registry", url],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"dubbok config set failed ({done.returncode}): {done.stderr}")
    return before, time.time()


def run(args: argparse.Namespace) -> int:
    from dubbok.config import ConfigStore
    from dubbok.testing.etcd import EtcdServer

    watchers = args.processes * args.per_process
    if watchers < 1 or args.rounds < 1:
        raise BenchError("need at least one watcher and one round")
    children: list[Child] = []
    with EtcdServer() as etcd:
        url = f"{etcd.url}/?namespace=bench"
        try:
            progress(f"starting {args.processes} watcher processes × {args.per_process} centers")
            for index in range(args.processes):
                children.append(
                    Child.spawn(f"watcher-{index}", watcher_main, url, index, args.per_process)
                )
            for child in children:
                child.wait_ready(120)
            with ConfigStore.from_url(url) as store:
                samples, from_start, last = _measure(args, store, url, children)
        finally:
            stop_all(children)
    return _report(args, watchers, samples, from_start, last)


def _measure(
    args: argparse.Namespace, store: Any, url: str, children: list[Child]
) -> tuple[list[float], list[float], list[float]]:
    samples: list[float] = []  # applied - write returned, every watcher and round
    from_start: list[float] = []  # applied - write started
    last: list[float] = []  # per round: the slowest watcher
    total = args.warmup + args.rounds
    for round_number in range(total):
        value = round(1.0 + (round_number + 1) / 1000, 3)
        started, returned = _write(args, store, url, value)
        times: list[float | None] = []
        for child in children:
            answer = child.request({"value": value, "timeout": 10.0}, timeout=30)
            assert isinstance(answer, list)
            times.extend(answer)
        missing = sum(1 for t in times if t is None)
        if missing:
            raise BenchError(f"round {round_number}: {missing} watcher(s) never applied {value}")
        if round_number < args.warmup:
            continue
        applied = [t for t in times if t is not None]
        samples.extend(t - returned for t in applied)
        from_start.extend(t - started for t in applied)
        last.append(max(applied) - returned)
        if (round_number + 1) % 10 == 0:
            progress(f"round {round_number + 1 - args.warmup}/{args.rounds}")
    return samples, from_start, last


def _report(
    args: argparse.Namespace,
    watchers: int,
    samples: list[float],
    from_start: list[float],
    last: list[float],
) -> int:
    p50, p90, p99 = percentiles(samples, [50, 90, 99])
    s50, s99 = percentiles(from_start, [50, 99])
    l50, l99 = percentiles(last, [50, 99])
    ok = p99 < TARGET_P99
    rows = [
        ["set returned → applied", fmt_ms(p50), fmt_ms(p90), fmt_ms(p99), fmt_ms(max(samples))],
        ["set started → applied", fmt_ms(s50), "-", fmt_ms(s99), fmt_ms(max(from_start))],
        ["set returned → last of all", fmt_ms(l50), "-", fmt_ms(l99), fmt_ms(max(last))],
    ]
    print(
        f"config propagation: {watchers} watchers ({args.processes} processes × "
        f"{args.per_process}), {args.rounds} writes via {args.via}, "
        f"{len(samples)} samples"
    )
    print(render_table(["latency (ms)", "p50", "p90", "p99", "max"], rows))
    print(f"target p99 < {TARGET_P99 * 1e3:.0f} ms: {'ok' if ok else 'MISS'}")
    document = {
        "scenario": "config_propagation",
        "environment": environment(),
        "settings": {
            "processes": args.processes,
            "per_process": args.per_process,
            "watchers": watchers,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "via": args.via,
        },
        "returned_to_applied": {"p50": p50, "p90": p90, "p99": p99, "max": max(samples)},
        "started_to_applied": {"p50": s50, "p99": s99, "max": max(from_start)},
        "returned_to_last_watcher": {
            "p50": l50,
            "p99": l99,
            "max": max(last),
            "mean": statistics.fmean(last),
        },
        "target_p99": TARGET_P99,
        "target_met": ok,
        "samples": samples,
    }
    path = write_json(results_path("config_propagation", args.json), document)
    progress(f"results written to {path}")
    return 1 if args.check and not ok else 0
