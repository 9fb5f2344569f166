"""Scenario ``balancing``: load balancers and hedging around a slow provider, and the retry
budget against a failing one.

**Part 1 — one slow provider (``balance``).** Five ``Echo`` providers, each a
``dubbok.App`` in one providers process; one of them sleeps 50 ms in every call. A consumer
in another process calls them through ``app.reference(EchoStub, discovery="static://…")``
from N threads (``sync``) or N tasks (``aio``) and reports QPS and latency percentiles for
each arm, all measured in the same run:

* ``loadbalance=`` roundrobin, random, leastactive, p2c (failover, defaults otherwise);
* ``cluster="hedging"`` over roundrobin, with ``hedge_delay`` 10 ms and ``Echo`` idempotent,
  once with the reference's retry budget (the default) and once without it — every hedge
  takes a token from the budget, so with the budget on only about a tenth of the calls may
  hedge.

Beside latency, the providers' own call counters give ``slow share`` (the share of attempts
that reached the slow provider: 20 % for a balancer blind to latency) and ``attempts/call``
(server-side attempts over calls started: above 1 when hedges or retries add load).

**Part 2 — one failing provider (``budget``).** Three providers, one answering every call
with UNAVAILABLE; ``Echo`` idempotent, failover with ``retries=2``. For a fixed number of
calls, with the retry budget on and off, first with both breaker levels off (so instance
ejection does not hide the retries) and then with the default breakers: ``attempts`` is the
providers' count of calls handled during the run, ``retry ratio`` = (attempts − calls) /
calls, ``bound`` the most retries the budget can allow in that run
(balance at start + 0.1 per call + 10 per second).

Balancers the library does not provide (yet) are skipped and named in the report. Both parts
share the providers process and build a fresh consumer ``App`` and reference per arm, so no
arm inherits another's breaker, budget or balancer state.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import math
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import grpc

from bench.harness import (
    BenchError,
    Child,
    ChildError,
    Link,
    LoadResult,
    LoadSpec,
    add_load_arguments,
    environment,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    median_result,
    percentiles,
    progress,
    render_table,
    results_path,
    run_async_load,
    run_sync_load,
    stop_all,
    write_json,
)
from dubbok.testing import EchoServicer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

DESCRIPTION = "balancers and hedging around a slow provider; retry budget vs a failing one"

SERVICE = "dubbok.testing.v1.Echo"
HOST = "127.0.0.1"
SLOW_DELAY = 0.05
HEDGE_DELAY = 0.01
CALL_TIMEOUT = 5.0
READY_TIMEOUT = 30.0
SERVER_GRACE = 2.0
PARTS = ("balance", "budget")
BALANCERS = ("roundrobin", "random", "leastactive", "p2c")


# --------------------------------------------------------------------------- providers


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider of the fleet: ``delay`` seconds of extra latency per call, and ``fail``,
    the name of the status it aborts every call with (``None``: it answers)."""

    name: str
    delay: float = 0.0
    fail: str | None = None

    @property
    def kind(self) -> str:
        if self.fail:
            return f"fails ({self.fail})"
        return f"+{self.delay * 1e3:g} ms" if self.delay else "healthy"


class CountingEcho(EchoServicer):
    """``Echo`` as in :class:`dubbok.testing.EchoServicer`, plus a fixed delay or failure,
    counting every call its handler starts (under a lock: the server's worker threads all
    increment it). The providers process reads ``handled`` when the parent asks."""

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec.name)
        self.handled = 0
        self._delay = spec.delay
        self._fail = grpc.StatusCode[spec.fail] if spec.fail else None
        self._lock = threading.Lock()

    def Echo(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.handled += 1
        if self._delay:
            time.sleep(self._delay)  # the provider's simulated slowness
        if self._fail is not None:
            context.abort(self._fail, f"{self.name} fails every call")
        return super().Echo(request, context)


def fleet_main(link: Link, specs: Sequence[ProviderSpec], workers: int) -> None:
    """Child target: one ``dubbok.App`` per spec, each on its own port, in this process.

    Sends the ports as its ready payload, then answers every request with the list of
    calls each provider's handler has started; stops the Apps when asked to stop.
    """
    import dubbok

    apps: list[dubbok.App] = []
    try:
        servicers = [CountingEcho(spec) for spec in specs]
        ports = []
        for spec, servicer in zip(specs, servicers, strict=True):
            app = dubbok.App(f"bench-{spec.name}", max_workers=workers)
            apps.append(app)
            ports.append(app.serve(servicer, host=HOST, port=0))
        link.ready(ports)
        while link.next_request() is not None:
            link.reply([servicer.handled for servicer in servicers])
    finally:
        for app in apps:
            app.stop(grace=1.0)


class Fleet:
    """Parent-side handle on the providers process; used from the orchestrating thread."""

    def __init__(self, child: Child, specs: Sequence[ProviderSpec], ports: Sequence[int]) -> None:
        self.child = child
        self.specs = tuple(specs)
        self.ports = tuple(ports)

    @classmethod
    def start(cls, specs: Sequence[ProviderSpec], workers: int) -> Fleet:
        child = Child.spawn("providers", fleet_main, tuple(specs), workers)
        try:
            ports = child.wait_ready(READY_TIMEOUT)
            if not isinstance(ports, list) or len(ports) != len(specs):
                raise ChildError(f"providers sent {ports!r} instead of {len(specs)} ports")
        except BaseException:
            stop_all([child], SERVER_GRACE)
            raise
        return cls(child, specs, ports)

    def counts(self) -> list[int]:
        """Calls each provider's handler has started so far, in spec order."""
        answer = self.child.request("counts", timeout=10.0)
        if not isinstance(answer, list):
            raise ChildError(f"providers answered {answer!r} instead of a list of counts")
        return [int(x) for x in answer]

    def stop(self) -> None:
        stop_all([self.child], SERVER_GRACE)


# --------------------------------------------------------------------------- arms


def fallback_reply(text: str, request: Any, error: BaseException) -> Any:
    """A fallback for ``Echo`` answering ``text`` (bound with ``functools.partial``)."""
    return echo_pb2.EchoReply(text=text)


@dataclass(frozen=True, slots=True)
class Arm:
    """One way of calling the providers: the reference options under test.

    Plain picklable data: it crosses to the consumer process, which builds the reference
    with :meth:`options`. ``providers`` are indices into the fleet's specs.
    """

    label: str
    providers: tuple[int, ...]
    loadbalance: str = "roundrobin"
    cluster: str = "failover"
    retries: int = 2
    retry_budget: bool = True
    breaker: bool | Mapping[str, Any] = True
    idempotent: bool = False
    hedge_delay: float | None = None
    fallback_text: str | None = None

    def options(self, ports: Sequence[int]) -> dict[str, Any]:
        """Keyword arguments for ``App.reference`` given the fleet's ports."""
        opts: dict[str, Any] = {
            "discovery": "static://" + ",".join(f"{HOST}:{ports[i]}" for i in self.providers),
            "loadbalance": self.loadbalance,
            "cluster": self.cluster,
            "retries": self.retries,
            "timeout": CALL_TIMEOUT,
            "breaker": self.breaker,
            "retry_budget": self.retry_budget,
        }
        if self.idempotent:
            opts["methods"] = {"Echo": {"idempotent": True}}
        if self.hedge_delay is not None:
            opts["cluster_options"] = {"hedge_delay": self.hedge_delay}
        if self.fallback_text is not None:
            opts["fallbacks"] = {"Echo": functools.partial(fallback_reply, self.fallback_text)}
        return opts


# --------------------------------------------------------------------------- consumer

REQUEST = echo_pb2.EchoRequest(payload=b"x" * 32, text="hello")


class Consumer:
    """The consumer process's state on the sync driver: one App and one reference at a
    time. Jobs run on the child's main thread; load jobs call :meth:`call` from theirs."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = tuple(ports)
        self.app: Any = None
        self.ref: Any = None
        self.counter = itertools.count()

    def open(self, arm: Arm) -> None:
        import dubbok

        self.close()
        self.app = dubbok.App("bench-consumer")
        self.ref = self.app.reference(echo_pb2_grpc.EchoStub, SERVICE, **arm.options(self.ports))

    def call(self) -> Any:
        next(self.counter)  # itertools.count is atomic under the GIL
        return self.ref.Echo(REQUEST)

    def close(self) -> None:
        if self.app is not None:
            app, self.app, self.ref = self.app, None, None
            app.close()


class AsyncConsumer:
    """The asyncio twin of :class:`Consumer`, on ``dubbok.aio.App``; lives on one loop."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = tuple(ports)
        self.app: Any = None
        self.ref: Any = None
        self.counter = itertools.count()

    async def open(self, arm: Arm) -> None:
        import dubbok.aio

        await self.aclose()
        self.app = dubbok.aio.App("bench-consumer")
        self.ref = self.app.reference(echo_pb2_grpc.EchoStub, SERVICE, **arm.options(self.ports))

    async def call(self) -> Any:
        next(self.counter)
        return await self.ref.Echo(REQUEST)

    async def aclose(self) -> None:
        if self.app is not None:
            app, self.app, self.ref = self.app, None, None
            await app.aclose()


class Job(Protocol):
    """A request the parent sends to a consumer process; it runs there, on either driver,
    and its return value is the reply (plain picklable data)."""

    def run(self, consumer: Consumer) -> object: ...

    async def arun(self, consumer: AsyncConsumer) -> object: ...


def _job(request: object) -> Job:
    if not (hasattr(request, "run") and hasattr(request, "arun")):
        raise BenchError(f"a consumer takes jobs (Open, Load, Burst, ...), got {request!r}")
    return request


def sync_consumer_main(link: Link, ports: Sequence[int]) -> None:
    """Child target: a consumer on the sync driver, running each job the parent sends."""
    consumer = Consumer(ports)
    try:
        link.ready()
        while (request := link.next_request()) is not None:
            link.reply(_job(request).run(consumer))
    finally:
        consumer.close()


def async_consumer_main(link: Link, ports: Sequence[int]) -> None:
    """Child target: a consumer on ``dubbok.aio``, running each job on one event loop."""

    async def main() -> None:
        consumer = AsyncConsumer(ports)
        try:
            link.ready()
            # The pipe is read off-loop; no job runs while a request is awaited.
            while (request := await asyncio.to_thread(link.next_request)) is not None:
                link.reply(await _job(request).arun(consumer))
        finally:
            await consumer.aclose()

    asyncio.run(main())


def spawn_consumer(mode: str, ports: Sequence[int]) -> Child:
    """Start a consumer process in ``mode`` and wait until it takes jobs."""
    target = {"sync": sync_consumer_main, "aio": async_consumer_main}[mode]
    child = Child.spawn(f"{mode} consumer", target, tuple(ports))
    try:
        child.wait_ready(READY_TIMEOUT)
    except BaseException:
        stop_all([child], 2.0)
        raise
    return child


def ask(consumer: Child, job: Job, timeout: float = 60.0) -> Any:
    """Run ``job`` in ``consumer`` and return its reply."""
    return consumer.request(job, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Open:
    """Job: close the current reference and App, and build new ones for ``arm``."""

    arm: Arm

    def run(self, consumer: Consumer) -> None:
        consumer.open(self.arm)

    async def arun(self, consumer: AsyncConsumer) -> None:
        await consumer.open(self.arm)


@dataclass(frozen=True, slots=True)
class Measured:
    """A load phase's result and the calls started in the whole phase (warm-up included)."""

    result: LoadResult
    started: int


@dataclass(frozen=True, slots=True)
class Load:
    """Job: one closed-loop phase (the harness's load runners) on the current reference."""

    spec: LoadSpec

    def run(self, consumer: Consumer) -> Measured:
        before = next(consumer.counter)
        result = run_sync_load(consumer.call, self.spec)
        return Measured(result, next(consumer.counter) - before - 1)

    async def arun(self, consumer: AsyncConsumer) -> Measured:
        before = next(consumer.counter)
        result = await run_async_load(consumer.call, self.spec)
        return Measured(result, next(consumer.counter) - before - 1)


@dataclass(frozen=True, slots=True)
class BurstResult:
    """What a fixed number of calls produced; latencies (s) are of the successful calls."""

    calls: int
    ok: int
    errors: int
    elapsed: float
    p50: float
    p99: float
    first_error: str | None = None

    @property
    def success(self) -> float:
        return self.ok / self.calls if self.calls else math.nan


@dataclass(slots=True)
class _Tally:
    """One caller's outcomes; only its own thread or task writes to it."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"


def _burst_result(calls: int, tallies: Sequence[_Tally], elapsed: float) -> BurstResult:
    latencies = [x for t in tallies for x in t.latencies]
    p50, p99 = percentiles(latencies, (50, 99)) if latencies else (math.nan, math.nan)
    return BurstResult(
        calls=calls,
        ok=len(latencies),
        errors=sum(t.errors for t in tallies),
        elapsed=elapsed,
        p50=p50,
        p99=p99,
        first_error=next((t.first_error for t in tallies if t.first_error), None),
    )


@dataclass(frozen=True, slots=True)
class Burst:
    """Job: exactly ``calls`` calls from ``concurrency`` callers, as fast as they complete."""

    calls: int
    concurrency: int

    def run(self, consumer: Consumer) -> BurstResult:
        tickets = itertools.count()
        clock = time.perf_counter

        def caller(tally: _Tally) -> None:
            while next(tickets) < self.calls:
                started = clock()
                try:
                    consumer.call()
                except Exception as exc:  # a failed call is counted, never ends the burst
                    tally.failed(exc)
                else:
                    tally.latencies.append(clock() - started)

        tallies = [_Tally() for _ in range(self.concurrency)]
        threads = [
            threading.Thread(target=caller, args=(t,), name=f"burst-{i}", daemon=True)
            for i, t in enumerate(tallies)
        ]
        begin = clock()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return _burst_result(self.calls, tallies, clock() - begin)

    async def arun(self, consumer: AsyncConsumer) -> BurstResult:
        tickets = itertools.count()
        clock = time.perf_counter

        async def caller(tally: _Tally) -> None:
            while next(tickets) < self.calls:
                started = clock()
                try:
                    await consumer.call()
                except Exception as exc:  # a failed call is counted, never ends the burst
                    tally.failed(exc)
                else:
                    tally.latencies.append(clock() - started)

        tallies = [_Tally() for _ in range(self.concurrency)]
        begin = clock()
        await asyncio.gather(*(caller(t) for t in tallies))
        return _burst_result(self.calls, tallies, clock() - begin)


def burst_timeout(calls: int) -> float:
    """How long the parent waits for a burst: generous, yet bounded if calls hang."""
    return 60.0 + calls * 0.01


# --------------------------------------------------------------------------- pure helpers


def diff(after: Sequence[int], before: Sequence[int]) -> list[int]:
    """Per-provider calls handled between two snapshots of :meth:`Fleet.counts`."""
    return [a - b for a, b in zip(after, before, strict=True)]


def retry_ratio(attempts: int, calls: int) -> float:
    """(attempts − calls) / calls: extra load retries (and hedges) put on the providers."""
    return (attempts - calls) / calls if calls else math.nan


def budget_bound(
    calls: int, elapsed: float, *, ratio: float, per_second: float, initial: float
) -> float:
    """The most retries a retry budget allows over ``calls`` calls in ``elapsed`` seconds,
    starting with ``initial`` tokens: one token per retry, ``ratio`` earned per call,
    ``per_second`` more each second (the cap only lowers this)."""
    return initial + ratio * calls + per_second * elapsed


def share(part: int, whole: int) -> float:
    """``part / whole`` as a fraction, NaN when ``whole`` is 0."""
    return part / whole if whole else math.nan


def fmt_pct(fraction: float, digits: int = 1) -> str:
    """A fraction as a percentage; ``-`` when missing."""
    return "-" if math.isnan(fraction) else f"{fraction * 100:.{digits}f}%"


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


# --------------------------------------------------------------------------- part 1

FLEET = (
    ProviderSpec("p1"),
    ProviderSpec("p2"),
    ProviderSpec("p3"),
    ProviderSpec("p4"),
    ProviderSpec("slow", delay=SLOW_DELAY),
    # Part 2's providers, in the same process.
    ProviderSpec("q1"),
    ProviderSpec("q2"),
    ProviderSpec("failing", fail="UNAVAILABLE"),
)
BALANCE_PROVIDERS = (0, 1, 2, 3, 4)
SLOW_INDEX = 4
BUDGET_PROVIDERS = (5, 6, 7)
FAILING_INDEX = 7


def balance_arms(hedge_delay: float) -> list[Arm]:
    """Part 1's arms: each balancer, then roundrobin with hedging (budget on and off)."""
    arms = [Arm(lb, BALANCE_PROVIDERS, loadbalance=lb) for lb in BALANCERS]
    hedged = f"rr + hedging {hedge_delay * 1e3:g} ms"
    for budget in (True, False):
        arms.append(
            Arm(
                hedged if budget else f"{hedged}, no budget",
                BALANCE_PROVIDERS,
                cluster="hedging",
                idempotent=True,
                hedge_delay=hedge_delay,
                retry_budget=budget,
            )
        )
    return arms


def available(arms: Sequence[Arm]) -> tuple[list[Arm], list[str]]:
    """The arms whose balancer this dubbok provides, and the names of those it lacks."""
    from dubbok.balancer import create_balancer

    keep, missing = [], []
    for arm in arms:
        try:
            create_balancer(arm.loadbalance)
        except Exception:  # unknown, or its module is not importable (yet)
            if arm.loadbalance not in missing:
                missing.append(arm.loadbalance)
        else:
            keep.append(arm)
    return keep, missing


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured phase of one arm."""

    measured: Measured
    handled: tuple[int, ...]  # per provider of the arm, during the phase


@dataclass(frozen=True, slots=True)
class BalanceRow:
    """An arm's medians over its repeats."""

    mode: str
    concurrency: int
    arm: str
    result: LoadResult
    slow_share: float
    attempts_per_call: float


def balance_row(
    mode: str, concurrency: int, arm: str, samples: Sequence[Sample], slow: int
) -> BalanceRow:
    """Fold an arm's samples; ``slow`` is the slow provider's position in ``handled``."""
    return BalanceRow(
        mode=mode,
        concurrency=concurrency,
        arm=arm,
        result=median_result([s.measured.result for s in samples]),
        slow_share=_median([share(s.handled[slow], sum(s.handled)) for s in samples]),
        attempts_per_call=_median([share(sum(s.handled), s.measured.started) for s in samples]),
    )


def measure_balance(
    args: argparse.Namespace, fleet: Fleet, arms: Sequence[Arm]
) -> list[BalanceRow]:
    samples: dict[tuple[str, int, str], list[Sample]] = defaultdict(list)
    slow = BALANCE_PROVIDERS.index(SLOW_INDEX)
    for mode in args.modes:
        consumer = spawn_consumer(mode, fleet.ports)
        try:
            for repeat in range(args.repeat):
                # Rotate the order so no arm always runs first (or last) on a drifting machine.
                k = repeat % len(arms)
                order = [*arms[k:], *arms[:k]]
                for concurrency in args.concurrency:
                    for arm in order:
                        ask(consumer, Open(arm))
                        spec = LoadSpec(concurrency, args.warmup, args.duration, CALL_TIMEOUT + 5)
                        before = fleet.counts()
                        measured = ask(consumer, Load(spec), timeout=spec.deadline + 30.0)
                        handled = diff(fleet.counts(), before)
                        samples[mode, concurrency, arm.label].append(
                            Sample(measured, tuple(handled[i] for i in arm.providers))
                        )
                        r = measured.result
                        progress(
                            f"  {mode:<4} c={concurrency:<3} {arm.label:<28} #{repeat + 1}: "
                            f"{fmt_rate(r.qps)} qps, p50 {fmt_ms(r.p50)} ms, "
                            f"p99 {fmt_ms(r.p99)} ms" + (f", {r.errors} errors" if r.errors else "")
                        )
        finally:
            stop_all([consumer], 2.0)
    return [
        balance_row(mode, c, arm.label, samples[mode, c, arm.label], slow)
        for mode in args.modes
        for c in args.concurrency
        for arm in arms
    ]


def render_balance(rows: Sequence[BalanceRow]) -> str:
    header = ["mode", "conc", "arm", "qps", "p50", "p90", "p99", "slow share", "attempts/call",
              "errors"]  # fmt: skip
    body = [
        [
            row.mode, str(row.concurrency), row.arm,
            fmt_rate(row.result.qps), fmt_ms(row.result.p50), fmt_ms(row.result.p90),
            fmt_ms(row.result.p99), fmt_pct(row.slow_share), fmt_ratio(row.attempts_per_call),
            str(row.result.errors),
        ]
        for row in rows
    ]  # fmt: skip
    return render_table(header, body, align="lll" + "r" * (len(header) - 3))


# --------------------------------------------------------------------------- part 2


def budget_arms() -> list[Arm]:
    """Part 2's arms: retry budget on/off, breakers off (ejection would hide the retries),
    then the same with the default breakers."""
    arms = []
    for breaker in (False, True):
        for budget in (True, False):
            arms.append(
                Arm(
                    f"breaker {'on' if breaker else 'off'}, budget {'on' if budget else 'off'}",
                    BUDGET_PROVIDERS,
                    idempotent=True,
                    retries=2,
                    breaker=breaker,
                    retry_budget=budget,
                )
            )
    return arms


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One arm of part 2; ratios are of ``burst.calls``."""

    arm: str
    retry_budget: bool
    burst: BurstResult
    attempts: int
    failing_calls: int
    retry_ratio: float
    bound_ratio: float  # NaN without a budget


def budget_row(arm: Arm, burst: BurstResult, handled: Sequence[int], failing: int) -> BudgetRow:
    """``handled``: per provider of the arm during the burst; ``failing``: its position."""
    from dubbok.cluster.budget import RetryBudget

    attempts = sum(handled)
    defaults = RetryBudget()  # a fresh reference's budget: full, at its cap
    bound = budget_bound(
        burst.calls,
        burst.elapsed,
        ratio=defaults.ratio,
        per_second=defaults.min_per_second,
        initial=defaults.cap,
    )
    return BudgetRow(
        arm=arm.label,
        retry_budget=arm.retry_budget,
        burst=burst,
        attempts=attempts,
        failing_calls=handled[failing],
        retry_ratio=retry_ratio(attempts, burst.calls),
        bound_ratio=bound / burst.calls if arm.retry_budget and burst.calls else math.nan,
    )


def measure_budget(args: argparse.Namespace, fleet: Fleet) -> list[BudgetRow]:
    concurrency = args.concurrency[0]
    failing = BUDGET_PROVIDERS.index(FAILING_INDEX)
    rows = []
    consumer = spawn_consumer("sync", fleet.ports)
    try:
        for arm in budget_arms():
            ask(consumer, Open(arm))
            before = fleet.counts()
            burst = ask(consumer, Burst(args.calls, concurrency), burst_timeout(args.calls))
            handled = diff(fleet.counts(), before)
            row = budget_row(arm, burst, [handled[i] for i in arm.providers], failing)
            rows.append(row)
            progress(
                f"  {arm.label:<26}: {burst.calls} calls, {row.attempts} attempts, "
                f"{burst.errors} errors, failing provider got {row.failing_calls}"
            )
    finally:
        stop_all([consumer], 2.0)
    return rows


def render_budget(rows: Sequence[BudgetRow]) -> str:
    header = ["arm", "calls", "ok", "errors", "attempts", "retry ratio", "bound",
              "to failing", "p50", "p99"]  # fmt: skip
    body = [
        [
            row.arm, str(row.burst.calls), str(row.burst.ok), str(row.burst.errors),
            str(row.attempts), fmt_ratio(row.retry_ratio), fmt_ratio(row.bound_ratio),
            str(row.failing_calls), fmt_ms(row.burst.p50), fmt_ms(row.burst.p99),
        ]
        for row in rows
    ]  # fmt: skip
    return render_table(header, body)


def report_balance(
    args: argparse.Namespace, rows: Sequence[BalanceRow], missing: Sequence[str]
) -> None:
    if not rows:
        return
    print()
    print(
        f"part 1 — one slow provider of 5 (+{SLOW_DELAY * 1e3:g} ms); median of "
        f"{args.repeat} x {args.duration:g} s windows after {args.warmup:g} s warm-up"
    )
    print(render_balance(rows))
    print(
        "qps: calls/s; p50..p99: latency ms; slow share: attempts that reached the slow "
        "provider (20% = blind to latency); attempts/call: provider-side attempts per call "
        "started (>1: hedges or retries)"
    )
    if missing:
        print(f"balancers not available in this dubbok, skipped: {', '.join(missing)}")
    for row in rows:
        if row.result.first_error:
            print(f"{row.mode} {row.arm}: first error: {row.result.first_error}")


def report_budget(args: argparse.Namespace, rows: Sequence[BudgetRow]) -> None:
    if not rows:
        return
    print()
    print(
        "part 2 — one provider of 3 failing every call (UNAVAILABLE); Echo idempotent, "
        f"failover retries=2; {args.calls} calls from {args.concurrency[0]} threads per arm"
    )
    print(render_budget(rows))
    print(
        "attempts: calls the providers handled; retry ratio: (attempts - calls) / calls; "
        "bound: most the budget allows in that run ((100 at start + 0.1/call + 10/s) / "
        "calls); to failing: calls the failing provider got; p50, p99: ms, successful calls"
    )
    for row in rows:
        if row.burst.first_error:
            print(f"{row.arm}: first error: {row.burst.first_error}")


# --------------------------------------------------------------------------- scenario


def part_list(text: str) -> list[str]:
    """argparse type for "balance,budget"."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or set(values) - set(PARTS):
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)}, got {text!r}")
    return [p for p in PARTS if p in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_load_arguments(parser, concurrency="16", duration=2.5, warmup=1.0, repeat=1)
    parser.add_argument(
        "--parts", type=part_list, default=list(PARTS), help="what to run (balance,budget)"
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=5000,
        help="calls per arm in the budget part, at the first --concurrency (%(default)s)",
    )
    parser.add_argument(
        "--hedge-delay",
        type=float,
        default=HEDGE_DELAY,
        help="hedging arms' hedge_delay in seconds (%(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=32, help="thread pool of each provider (%(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1 or args.workers < 1 or args.calls < 1 or not args.hedge_delay > 0:
        raise BenchError("--repeat, --workers and --calls must be at least 1, --hedge-delay > 0")
    LoadSpec(1, args.warmup, args.duration)  # validates the durations up front
    env = environment()
    arms, missing = available(balance_arms(args.hedge_delay))
    print(
        f"dubbok balancing: unary {SERVICE}/Echo; part 1: 5 providers, one +"
        f"{SLOW_DELAY * 1e3:g} ms per call; part 2: 3 providers, one failing every call "
        "with UNAVAILABLE"
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
    balance: list[BalanceRow] = []
    budget: list[BudgetRow] = []
    try:
        if "balance" in args.parts:
            phases = len(args.modes) * len(args.concurrency) * len(arms) * args.repeat
            progress(
                f"part 1: {phases} phases, about {phases * (args.warmup + args.duration):.0f} s"
            )
            balance = measure_balance(args, fleet, arms)
        if "budget" in args.parts:
            progress(f"part 2: {len(budget_arms())} arms of {args.calls} calls")
            budget = measure_budget(args, fleet)
    finally:
        fleet.stop()

    report_balance(args, balance, missing)
    report_budget(args, budget)
    path = write_json(
        results_path("balancing", args.json),
        {
            "scenario": "balancing",
            "environment": env,
            "settings": {
                **{k: v for k, v in vars(args).items() if k != "json"},
                "slow_delay": SLOW_DELAY,
                "missing_balancers": missing,
                "elapsed": round(time.monotonic() - started, 1),
            },
            "balance": [asdict(row) for row in balance],
            "budget": [asdict(row) for row in budget],
        },
    )
    print(f"results: {path}")
    return 0
