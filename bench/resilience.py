"""Scenario ``resilience``: success rate with one provider failing every call, and what a
degraded call costs.

**Part 1 — success rate (``success``).** Three ``Echo`` providers (each a ``dubbok.App``, in
one providers process), one of which aborts every call with INTERNAL. A consumer in another
process calls them through a reference with ``Echo`` idempotent, failover, ``retries=2``:
a short warm-up, then ``--calls`` calls from ``--concurrency`` threads (or asyncio tasks),
counting the calls that succeed. Arms, each on a fresh reference:

* ``breakers on`` — the defaults: outlier ejection takes the failing provider out after 5
  failures in a row, so it sees a probe now and then; target ≥ 99.9 % success;
* ``breakers off`` — every third call's first attempt fails and needs a retry, but the
  retry budget allows retries for only about a tenth of the calls: the other failures
  reach the caller (about a fifth of the calls);
* ``breakers off, no budget`` — retries save every call, at a third more attempts.

``to failing`` is what the failing provider's handler saw during the measured calls (its own
counter, read through the harness pipe), ``attempts/call`` all providers' calls per call.

**Part 2 — degraded call latency (``degrade``).** One consumer thread (or task) times calls
in a tight loop after a warm-up:

* ``breaker open + fallback`` — the only provider fails every call; the method breaker
  (``consecutive_failures: 5``, ``reset_timeout: 600``, ejection off) is tripped first, then
  every call is refused before balancing and answered by the fallback
  (``fallbacks={"Echo": ...}``); target p99 ≤ 1 ms;
* ``degrade force`` — ``dubbok.degrade(ref, "Echo", {"mode": "force", "return": {...}})`` on
  a healthy provider: the rule answers, nothing is sent; target p99 ≤ 1 ms;
* ``healthy call`` — a real call to a healthy provider, for scale (no target).

Each degraded row checks every reply is the degraded one and that the provider handled no
call while it was timed (``to provider``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dubbok
from bench.balancing import (
    REQUEST,
    Arm,
    AsyncConsumer,
    Burst,
    BurstResult,
    Consumer,
    Fleet,
    Open,
    ProviderSpec,
    ask,
    burst_timeout,
    diff,
    fmt_pct,
    share,
    spawn_consumer,
)
from bench.harness import (
    MODES,
    BenchError,
    environment,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    mode_list,
    percentiles,
    progress,
    render_table,
    results_path,
    write_json,
)

DESCRIPTION = "success rate with one failing provider; latency of fallback and degrade calls"

PARTS = ("success", "degrade")
SUCCESS_TARGET = 0.999
DEGRADED_P99_TARGET = 0.001
FALLBACK_TEXT = "fallback"
FORCE_TEXT = "busy"
TRIP_FAILURES = 5

FLEET = (
    ProviderSpec("r1"),
    ProviderSpec("r2"),
    ProviderSpec("failing", fail="INTERNAL"),
)
SUCCESS_PROVIDERS = (0, 1, 2)
HEALTHY_INDEX = 0
FAILING_INDEX = 2

# The method breaker only: trips after a few failures and stays open for the whole run.
OPEN_BREAKER: Mapping[str, Any] = {
    "method": {"consecutive_failures": TRIP_FAILURES, "error_ratio": None, "reset_timeout": 600},
    "instance": None,
}


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class TimedResult:
    """Latencies (s) of one caller's back-to-back calls; ``wrong`` replies were not the
    expected text."""

    calls: int
    elapsed: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    wrong: int

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed if self.elapsed > 0 else math.nan


def timed_result(latencies: Sequence[float], elapsed: float, wrong: int) -> TimedResult:
    """Fold one tight loop's latencies."""
    if not latencies:
        raise BenchError("no call was timed; --timed-calls must be at least 1")
    p50, p90, p99, p999 = percentiles(latencies, (50, 90, 99, 99.9))
    return TimedResult(len(latencies), elapsed, p50, p90, p99, p999, max(latencies), wrong)


@dataclass(frozen=True, slots=True)
class Timed:
    """Job: ``warmup`` calls, then ``calls`` timed calls one after another, each reply's text
    compared with ``expect``. A failed call fails the job: these calls must not fail."""

    calls: int
    warmup: int
    expect: str

    def run(self, consumer: Consumer) -> TimedResult:
        echo = consumer.ref.Echo
        for _ in range(self.warmup):
            echo(REQUEST)
        clock = time.perf_counter
        latencies = [0.0] * self.calls
        wrong = 0
        begin = clock()
        for i in range(self.calls):
            started = clock()
            reply = echo(REQUEST)
            latencies[i] = clock() - started
            if reply.text != self.expect:
                wrong += 1
        return timed_result(latencies, clock() - begin, wrong)

    async def arun(self, consumer: AsyncConsumer) -> TimedResult:
        echo = consumer.ref.Echo
        for _ in range(self.warmup):
            await echo(REQUEST)
        clock = time.perf_counter
        latencies = [0.0] * self.calls
        wrong = 0
        begin = clock()
        for i in range(self.calls):
            started = clock()
            reply = await echo(REQUEST)
            latencies[i] = clock() - started
            if reply.text != self.expect:
                wrong += 1
        return timed_result(latencies, clock() - begin, wrong)


@dataclass(frozen=True, slots=True)
class Degrade:
    """Job: set (or with ``None`` remove) a mock rule on the current reference's Echo."""

    rule: Mapping[str, Any] | None

    def run(self, consumer: Consumer) -> None:
        dubbok.degrade(consumer.ref, "Echo", self.rule)

    async def arun(self, consumer: AsyncConsumer) -> None:
        dubbok.degrade(consumer.ref, "Echo", self.rule)


# --------------------------------------------------------------------------- part 1


def success_arms() -> list[Arm]:
    def arm(label: str, breaker: bool, budget: bool) -> Arm:
        return Arm(
            label,
            SUCCESS_PROVIDERS,
            idempotent=True,
            retries=2,
            breaker=breaker,
            retry_budget=budget,
        )

    return [
        arm("breakers on (default)", True, True),
        arm("breakers off", False, True),
        arm("breakers off, no budget", False, False),
    ]


@dataclass(frozen=True, slots=True)
class SuccessRow:
    """One success arm; ``target`` says whether the success target applies to it."""

    mode: str
    arm: str
    burst: BurstResult
    attempts: int
    failing_calls: int
    warmup_failing_calls: int
    target: bool

    @property
    def verdict(self) -> str:
        if not self.target:
            return "-"
        return "ok" if self.burst.success >= SUCCESS_TARGET else "MISS"


def measure_success(args: argparse.Namespace, fleet: Fleet) -> list[SuccessRow]:
    failing = SUCCESS_PROVIDERS.index(FAILING_INDEX)
    rows = []
    for mode in args.modes:
        consumer = spawn_consumer(mode, fleet.ports)
        try:
            for i, arm in enumerate(success_arms()):
                ask(consumer, Open(arm))
                start = fleet.counts()
                ask(consumer, Burst(args.warmup_calls, args.concurrency), 60.0)
                before = fleet.counts()
                burst = ask(
                    consumer, Burst(args.calls, args.concurrency), burst_timeout(args.calls)
                )
                handled = diff(fleet.counts(), before)
                warm = diff(before, start)
                row = SuccessRow(
                    mode=mode,
                    arm=arm.label,
                    burst=burst,
                    attempts=sum(handled[p] for p in arm.providers),
                    failing_calls=handled[arm.providers[failing]],
                    warmup_failing_calls=warm[arm.providers[failing]],
                    target=i == 0,
                )
                rows.append(row)
                progress(
                    f"  {mode:<4} {arm.label:<24}: {fmt_pct(burst.success, 2)} of "
                    f"{burst.calls} calls succeeded, failing provider got {row.failing_calls}"
                )
        finally:
            consumer.stop(2.0)
    return rows


def render_success(rows: Sequence[SuccessRow]) -> str:
    header = ["mode", "arm", "calls", "ok", "success", "to failing", "(warm-up)",
              "attempts/call", "p50", "p99", "target"]  # fmt: skip
    body = [
        [
            row.mode, row.arm, str(row.burst.calls), str(row.burst.ok),
            fmt_pct(row.burst.success, 2), str(row.failing_calls),
            str(row.warmup_failing_calls),
            fmt_ratio(share(row.attempts, row.burst.calls)),
            fmt_ms(row.burst.p50), fmt_ms(row.burst.p99), row.verdict,
        ]
        for row in rows
    ]  # fmt: skip
    return render_table(header, body, align="ll" + "r" * (len(header) - 2))


# --------------------------------------------------------------------------- part 2


@dataclass(frozen=True, slots=True)
class DegradeRow:
    """One timed arm; ``provider_calls`` is -1 where no provider is watched."""

    mode: str
    arm: str
    timed: TimedResult
    provider_calls: int
    target: bool

    @property
    def verdict(self) -> str:
        if not self.target:
            return "-"
        ok = self.timed.p99 <= DEGRADED_P99_TARGET and not self.timed.wrong
        return "ok" if ok and self.provider_calls == 0 else "MISS"


@dataclass(frozen=True, slots=True)
class DegradeCase:
    """One row of part 2: the reference, what to do before timing, and what to expect."""

    arm: Arm
    watched: int | None  # the provider whose calls must stay at 0 while timed
    setup: tuple[Timed | Degrade, ...]
    expect: str
    target: bool


DEGRADE_CASES = (
    DegradeCase(
        Arm(
            "breaker open + fallback",
            (FAILING_INDEX,),
            breaker=OPEN_BREAKER,
            fallback_text=FALLBACK_TEXT,
        ),
        FAILING_INDEX,
        # Trip the breaker: the first calls reach the provider and fail (the fallback
        # answers them too), then the breaker refuses the rest.
        (Timed(TRIP_FAILURES * 2, 0, FALLBACK_TEXT),),
        FALLBACK_TEXT,
        True,
    ),
    DegradeCase(
        Arm("degrade force", (HEALTHY_INDEX,)),
        HEALTHY_INDEX,
        (Degrade({"mode": "force", "return": {"text": FORCE_TEXT}}),),
        FORCE_TEXT,
        True,
    ),
    DegradeCase(Arm("healthy call", (HEALTHY_INDEX,)), None, (), REQUEST.text, False),
)


def measure_degrade(args: argparse.Namespace, fleet: Fleet) -> list[DegradeRow]:
    rows = []
    for mode in args.modes:
        consumer = spawn_consumer(mode, fleet.ports)
        try:
            for case in DEGRADE_CASES:
                arm = case.arm
                ask(consumer, Open(arm))
                for job in case.setup:
                    ask(consumer, job)
                before = fleet.counts()
                result = ask(
                    consumer,
                    Timed(args.timed_calls, args.timed_warmup, case.expect),
                    burst_timeout(args.timed_calls + args.timed_warmup),
                )
                handled = diff(fleet.counts(), before)
                row = DegradeRow(
                    mode=mode,
                    arm=arm.label,
                    timed=result,
                    provider_calls=-1 if case.watched is None else handled[case.watched],
                    target=case.target,
                )
                rows.append(row)
                progress(
                    f"  {mode:<4} {arm.label:<24}: p50 {fmt_us3(result.p50)} us, "
                    f"p99 {fmt_us3(result.p99)} us"
                )
        finally:
            consumer.stop(2.0)
    return rows


def fmt_us3(seconds: float) -> str:
    """Seconds as microseconds with one decimal; ``-`` when missing."""
    return "-" if math.isnan(seconds) else f"{seconds * 1e6:.1f}"


def render_degrade(rows: Sequence[DegradeRow]) -> str:
    header = ["mode", "arm", "calls/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us",
              "wrong", "to provider", "target"]  # fmt: skip
    body = [
        [
            row.mode, row.arm, fmt_rate(row.timed.rate),
            fmt_us3(row.timed.p50), fmt_us3(row.timed.p90), fmt_us3(row.timed.p99),
            fmt_us3(row.timed.p999), fmt_us3(row.timed.max), str(row.timed.wrong),
            "-" if row.provider_calls < 0 else str(row.provider_calls), row.verdict,
        ]
        for row in rows
    ]  # fmt: skip
    return render_table(header, body, align="ll" + "r" * (len(header) - 2))


def report_success(args: argparse.Namespace, rows: Sequence[SuccessRow]) -> None:
    if not rows:
        return
    print()
    print(
        "part 1 — one provider of 3 failing every call (INTERNAL); Echo idempotent, failover "
        f"retries=2; {args.warmup_calls} warm-up calls, then {args.calls} measured calls "
        f"from {args.concurrency} callers"
    )
    print(render_success(rows))
    print(
        "success: calls answered without error; to failing: calls the failing provider "
        "handled during the measured calls (and during the warm-up); attempts/call: all "
        "providers' calls per call; p50, p99: ms, successful calls; target: success >= "
        f"{SUCCESS_TARGET:.1%} with the default breakers"
    )
    for row in rows:
        if row.burst.first_error:
            print(f"{row.mode} {row.arm}: first error: {row.burst.first_error}")


def report_degrade(args: argparse.Namespace, rows: Sequence[DegradeRow]) -> None:
    if not rows:
        return
    print()
    print(
        f"part 2 — one caller, {args.timed_calls} back-to-back calls after "
        f"{args.timed_warmup} warm-up calls"
    )
    print(render_degrade(rows))
    print(
        "latencies in microseconds; wrong: replies that were not the degraded answer; "
        "to provider: calls the provider handled while timed (must be 0 for degraded "
        f"rows); target: p99 <= {DEGRADED_P99_TARGET * 1e3:g} ms"
    )


# --------------------------------------------------------------------------- scenario


def part_list(text: str) -> list[str]:
    """argparse type for "success,degrade"."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or set(values) - set(PARTS):
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)}, got {text!r}")
    return [p for p in PARTS if p in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parts", type=part_list, default=list(PARTS), help="what to run (success,degrade)"
    )
    parser.add_argument(
        "--modes",
        type=mode_list,
        default=list(MODES),
        help="sync (threads) and/or aio (asyncio tasks) (sync,aio)",
    )
    parser.add_argument(
        "--calls", type=int, default=10_000, help="measured calls per success arm (%(default)s)"
    )
    parser.add_argument(
        "--warmup-calls",
        type=int,
        default=200,
        help="unmeasured calls before them, on the same reference (%(default)s)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="callers in the success part (%(default)s)"
    )
    parser.add_argument(
        "--timed-calls",
        type=int,
        default=20_000,
        help="timed calls per degrade arm, one caller (%(default)s)",
    )
    parser.add_argument(
        "--timed-warmup",
        type=int,
        default=1_000,
        help="untimed calls before them (%(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=32, help="thread pool of each provider (%(default)s)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the JSON results (default bench/results/resilience-<time>.json)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )


def run(args: argparse.Namespace) -> int:
    if (
        min(args.calls, args.concurrency, args.timed_calls, args.workers) < 1
        or min(args.warmup_calls, args.timed_warmup) < 0
    ):
        raise BenchError(
            "--calls, --concurrency, --timed-calls and --workers must be at least 1, "
            "--warmup-calls and --timed-warmup at least 0"
        )
    env = environment()
    print(
        "dubbok resilience: unary dubbok.testing.v1.Echo/Echo; part 1: 3 providers, one "
        "failing every call with INTERNAL; part 2: latency of degraded calls"
    )
    print(
        f"python {env['python']}, grpcio {env['grpcio']}, {env['cpu_count']} CPUs "
        f"({env['cpus_usable']} usable), {env['platform']}, load average {env['load_average']}"
    )
    print(
        "providers: one process (a dubbok.App per provider, "
        f"{args.workers} threads each); consumer: another process",
        flush=True,
    )
    started = time.monotonic()
    fleet = Fleet.start(FLEET, args.workers)
    success: list[SuccessRow] = []
    degraded: list[DegradeRow] = []
    try:
        if "success" in args.parts:
            progress(f"part 1: {len(args.modes) * 3} arms of {args.calls} calls")
            success = measure_success(args, fleet)
        if "degrade" in args.parts:
            progress(f"part 2: {len(args.modes) * 3} arms of {args.timed_calls} timed calls")
            degraded = measure_degrade(args, fleet)
    finally:
        fleet.stop()

    report_success(args, success)
    report_degrade(args, degraded)
    path = write_json(
        results_path("resilience", args.json),
        {
            "scenario": "resilience",
            "environment": env,
            "settings": {
                **{k: v for k, v in vars(args).items() if k not in ("json", "check")},
                "elapsed": round(time.monotonic() - started, 1),
            },
            "success": [{**asdict(row), "verdict": row.verdict} for row in success],
            "degrade": [{**asdict(row), "verdict": row.verdict} for row in degraded],
        },
    )
    print(f"results: {path}")
    missed = any(r.verdict == "MISS" for r in success) or any(r.verdict == "MISS" for r in degraded)
    return 1 if missed and args.check else 0
