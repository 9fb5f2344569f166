"""Scenario ``pick``: what one load-balancing decision costs, per balancer.

``python bench/pick.py`` (or ``python -m bench pick``) builds a picker of every built-in
balancer over 10 and 1,000 endpoints, with equal and with mixed weights, and times:

* ``pick`` — ``picker.pick(invocation)``, the per-attempt cost (the usual, empty-exclude path);
* ``retry`` — ``picker.pick(invocation, exclude)`` with one endpoint already tried;
* ``track`` — ``balancer.started(ep)`` + ``balancer.finished(ep, ...)``, paid per attempt by
  balancers that track load (``-`` for the others);
* ``routed`` rows — ``RoutePlan.select(invocation)`` for a version + tag + three-rule condition
  chain, the per-call routing cost (the picker's ``pick`` comes on top).

Times are nanoseconds of CPU per operation, net of the timing loop's own cost, the best of
``--repeat`` runs of about ``--time`` seconds each (a run of the whole table takes about a
minute). ``x choice`` compares ``pick`` with
``random.choice(endpoints)`` timed in the same run: the cheapest pick Python can make.
Load-tracking balancers are measured with a realistic state: a few calls in flight and a
latency recorded for every endpoint.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import sys
import time
from collections.abc import Callable, Sequence

from dubbok.balancer import create_balancer
from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation
from dubbok.outcome import Verdict
from dubbok.routing import (
    ConditionRouter,
    ConditionRule,
    HeaderMatch,
    Match,
    RoutePlan,
    Router,
    TagRouter,
    Target,
    VersionRouter,
)

DESCRIPTION = "cost of one load-balancing pick (and of routing) per balancer, in ns"

BALANCERS = ("random", "roundrobin", "leastactive", "p2c", "consistenthash")
SIZES = (10, 1_000)
CALL = Invocation(
    "demo.Svc", "Get", b"payload", (("x-user-id", "user-4711"), ("x-trace", "1")), None
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time", type=float, default=0.05, help="seconds per timed run (default 0.05)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")


def fleet(n: int, mixed: bool) -> list[Endpoint]:
    rng = random.Random(n)
    return [
        Endpoint(
            f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}",
            50051,
            weight=rng.choice((50, 100, 100, 200)) if mixed else 100,
            version="1.2.0",
            tags={"tag": "canary"} if i % 10 == 0 else {},
        )
        for i in range(n)
    ]


def _per_call(fn: Callable[[], object], number: int) -> float:
    # Process CPU time, not wall time: on a shared machine, time spent descheduled while
    # other processes run would otherwise count as pick cost. The benchmark is one thread.
    loop = itertools.repeat(None, number)
    start = time.process_time_ns()
    for _ in loop:
        fn()
    return (time.process_time_ns() - start) / number


def _noop() -> None:
    return None


def timed(op: Callable[[], object], seconds: float, repeat: int) -> float:
    """Best ns per call of ``op()`` over ``repeat`` runs of about ``seconds`` each, minus the
    timing loop's own cost."""
    number = 100
    while _per_call(op, number) * number < seconds * 1e9 and number < 10_000_000:
        number *= 4
    overhead = min(_per_call(_noop, number) for _ in range(repeat))
    return max(min(_per_call(op, number) for _ in range(repeat)) - overhead, 0.0)


def measure(name: str, n: int, mixed: bool, seconds: float, repeat: int) -> list[str]:
    eps = fleet(n, mixed)
    options: dict[str, object] = {"rng": random.Random(1)}
    if name == "consistenthash":
        options["key"] = "header:x-user-id"
    balancer = create_balancer(name, **options)
    if balancer.tracks_load:
        for ep in eps:
            balancer.started(ep)
            balancer.finished(ep, 0.001 + 0.0001 * (hash(ep.address) % 10), Verdict.OK)
        for ep in eps[::7]:
            balancer.started(ep)
    picker = balancer.build(eps)
    tried = (eps[0].address,)
    pick = timed(lambda: picker.pick(CALL), seconds, repeat)
    retry = timed(lambda: picker.pick(CALL, tried), seconds, repeat)
    track = "-"
    if balancer.tracks_load:
        ep = eps[1]

        def attempt() -> None:
            balancer.started(ep)
            balancer.finished(ep, 0.001, Verdict.OK)

        track = f"{timed(attempt, seconds, repeat):.0f}"
    baseline = timed(lambda: random.choice(eps), seconds, repeat)
    ratio = f"{pick / baseline:.1f}" if baseline else "-"
    weights = "mixed" if mixed else "equal"
    return [name, str(n), weights, f"{pick:.0f}", f"{retry:.0f}", track, ratio]


def measure_routing(n: int, seconds: float, repeat: int) -> list[list[str]]:
    eps = fleet(n, mixed=False)
    rules = [
        ConditionRule(
            match=Match(headers=(HeaderMatch(name="x-canary", equals="1"),)),
            to=Target(tags={"tag": "canary"}),
        ),
        ConditionRule(match=Match(methods=("Put",)), to=Target(tags={"zone": "a"})),
        ConditionRule(
            match=Match(headers=(HeaderMatch(name="x-user-id", regex="vip-.*"),)),
            to=Target(addresses=(eps[0].address,)),
        ),
    ]
    routers: list[Router] = [VersionRouter("1.*", "*"), TagRouter(), ConditionRouter(rules)]
    plan = RoutePlan(routers, eps, create_balancer("random").build)
    tagged = Invocation("demo.Svc", "Get", b"", (("x-dubbok-tag", "canary"),), None)
    rows = []
    for label, call in (("untagged", CALL), ("tagged", tagged)):
        plan.select(call)  # the subset's picker is built on first use
        cost = timed(functools.partial(plan.select, call), seconds, repeat)
        rows.append([f"routed ({label})", str(n), "equal", f"{cost:.0f}", "-", "-", "-"])
    return rows


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [
            c.rjust(w) if c[:1].isdigit() else c.ljust(w) for c, w in zip(row, widths, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in BALANCERS:
        for n in SIZES:
            for mixed in (False, True):
                print(f"pick: {name} n={n} {'mixed' if mixed else 'equal'}", file=sys.stderr)
                rows.append(measure(name, n, mixed, args.time, args.repeat))
    for n in SIZES:
        rows.extend(measure_routing(n, args.time, args.repeat))
    header = ["balancer", "endpoints", "weights", "pick ns", "retry ns", "track ns", "x choice"]
    print(render(header, rows))
    print(f"\nPython {sys.version.split()[0]}; best of {args.repeat} runs of ~{args.time} s each")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/pick.py", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
