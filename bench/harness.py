"""Reusable pieces for benchmarks: processes, closed-loop load, statistics, reports.

A benchmark run has one orchestrating process (``python -m bench``) and spawned
children: servers, and clients that drive load. Every child is a plain function
``target(link, *args)`` started with :meth:`Child.spawn` (the ``spawn`` start method, so
a child shares no threads, channels or event loop with its parent). The child calls
``link.ready(payload)`` once it can be used (a server sends its bound port), and the
parent waits for that with a deadline. The pipe is the child's lifeline: when the
parent asks it to stop, or dies, the child hears it on the pipe and shuts down; a
child that does not stop within the grace is terminated, then killed.

Clients are generic: :func:`sync_client_main` and :func:`async_client_main` take a
*setup* — a context manager (sync) or async context manager (asyncio) that connects
and yields one zero-argument *call* — and then run each :class:`LoadSpec` the parent
sends with :func:`run_sync_load` (N threads looping on a blocking call) or
:func:`run_async_load` (N tasks on one event loop), answering with a
:class:`LoadResult`. Only calls that complete inside the measured window count:
``qps`` is completions per second of window, latencies are per completed call.

The pure helpers (:func:`percentile`, :func:`summarize`, :func:`median_result`,
:func:`render_table`, the formatters) are what a scenario uses to report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeAlias

MODES: tuple[str, ...] = ("sync", "aio")
RESULTS_DIR = Path(__file__).resolve().parent / "results"

SyncCall: TypeAlias = Callable[[], object]
AsyncCall: TypeAlias = Callable[[], Awaitable[object]]
SyncSetup: TypeAlias = Callable[..., AbstractContextManager[SyncCall]]
AsyncSetup: TypeAlias = Callable[..., AbstractAsyncContextManager[AsyncCall]]

P = ParamSpec("P")


class BenchError(RuntimeError):
    """A benchmark could not be run or measured; the message says which part and why."""


# --------------------------------------------------------------------------- statistics


def percentiles(values: Iterable[float], qs: Sequence[float]) -> list[float]:
    """The ``qs`` percentiles (0-100) of ``values``, interpolating linearly between ranks.

    Same definition as numpy's default (``method="linear"``): rank ``q/100 * (n-1)``
    of the sorted values. Sorts once for all ``qs``.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sample: no call completed in the window")
    last = len(ordered) - 1
    out = []
    for q in qs:
        if not 0.0 <= q <= 100.0 or math.isnan(q):
            raise ValueError(f"percentile must be between 0 and 100, got {q!r}")
        rank = q / 100.0 * last
        low = math.floor(rank)
        high = min(low + 1, last)
        out.append(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))
    return out


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` percentile (0-100) of ``values``; see :func:`percentiles`."""
    return percentiles(values, [q])[0]


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when either side is missing or the divisor is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def paired_ratio(pairs: Iterable[tuple[float, float]]) -> float:
    """The median of ``a / b`` over ``(a, b)`` pairs, skipping pairs without a ratio;
    NaN when none has one. Pairs measured back to back share the machine's load of the
    moment, so this is steadier than the ratio of two medians on a noisy machine."""
    ratios = [x for x in (ratio(a, b) for a, b in pairs) if not math.isnan(x)]
    return statistics.median(ratios) if ratios else math.nan


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one measured window produced. Times are in seconds.

    ``cpu_per_call`` is the client process's CPU time (all threads, user + system)
    during the window divided by the calls completed in it. Latency fields are NaN
    when no call completed.
    """

    concurrency: int
    calls: int
    errors: int
    window: float
    qps: float
    p50: float
    p90: float
    p99: float
    max: float
    cpu_per_call: float
    first_error: str | None = None
    # Every latency of the window, when the spec asked to keep them (to merge the phases
    # of several client processes); not in the JSON.
    latencies: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (NaN becomes ``None``)."""
        return {k: _jsonable(v) for k, v in asdict(self).items() if k != "latencies"}


def summarize(
    *,
    concurrency: int,
    latencies: Sequence[float],
    errors: int,
    window: float,
    cpu_seconds: float = math.nan,
    first_error: str | None = None,
    keep_latencies: bool = False,
) -> LoadResult:
    """Fold the per-call latencies of one window into a :class:`LoadResult`."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window!r}")
    calls = len(latencies)
    if calls:
        p50, p90, p99 = percentiles(latencies, (50, 90, 99))
        worst = max(latencies)
    else:
        p50 = p90 = p99 = worst = math.nan
    return LoadResult(
        concurrency=concurrency,
        calls=calls,
        errors=errors,
        window=window,
        qps=calls / window,
        p50=p50,
        p90=p90,
        p99=p99,
        max=worst,
        cpu_per_call=cpu_seconds / calls if calls else math.nan,
        first_error=first_error,
        latencies=tuple(latencies) if keep_latencies else (),
    )


def median_result(results: Sequence[LoadResult]) -> LoadResult:
    """Combine repeats of one measurement: rates and latencies are the median of the
    repeats (each field on its own), ``calls``, ``errors`` and ``window`` are totals."""
    if not results:
        raise ValueError("median of no results")
    if len({r.concurrency for r in results}) != 1:
        raise ValueError("median_result combines repeats of one concurrency only")

    def med(name: str) -> float:
        values = [getattr(r, name) for r in results if not math.isnan(getattr(r, name))]
        return statistics.median(values) if values else math.nan

    return LoadResult(
        concurrency=results[0].concurrency,
        calls=sum(r.calls for r in results),
        errors=sum(r.errors for r in results),
        window=sum(r.window for r in results),
        qps=med("qps"),
        p50=med("p50"),
        p90=med("p90"),
        p99=med("p99"),
        max=med("max"),
        cpu_per_call=med("cpu_per_call"),
        first_error=next((r.first_error for r in results if r.first_error), None),
    )


# --------------------------------------------------------------------------- load


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One closed-loop phase: ``concurrency`` callers loop for ``warmup`` + ``duration``
    seconds; only the last ``duration`` seconds are measured. A call still running
    ``call_timeout`` seconds after the window ends makes the phase fail."""

    concurrency: int
    warmup: float
    duration: float
    call_timeout: float = 10.0
    keep_latencies: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.warmup < 0 or self.duration <= 0:
            raise ValueError(
                f"need warmup >= 0 and duration > 0 seconds, got {self.warmup}, {self.duration}"
            )

    @property
    def deadline(self) -> float:
        """Seconds a caller should allow for the whole phase to answer."""
        return self.warmup + self.duration + self.call_timeout


@dataclass(slots=True)
class _Recorder:
    """One caller's measurements; only its own thread or task writes to it."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def record(self, begin: float, end: float, started: float, finished: float) -> None:
        if begin <= finished < end:
            self.latencies.append(finished - started)

    def record_error(self, begin: float, end: float, finished: float, exc: BaseException) -> None:
        if begin <= finished < end:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"


def _collect(spec: LoadSpec, recorders: Sequence[_Recorder], cpu_seconds: float) -> LoadResult:
    latencies = [x for r in recorders for x in r.latencies]
    return summarize(
        concurrency=spec.concurrency,
        latencies=latencies,
        errors=sum(r.errors for r in recorders),
        window=spec.duration,
        cpu_seconds=cpu_seconds,
        first_error=next((r.first_error for r in recorders if r.first_error), None),
        keep_latencies=spec.keep_latencies,
    )


def _sync_caller(call: SyncCall, begin: float, end: float, rec: _Recorder) -> None:
    clock = time.perf_counter
    while True:
        started = clock()
        if started >= end:
            return
        try:
            call()
        except Exception as exc:  # a failed call is counted, never ends the phase
            rec.record_error(begin, end, clock(), exc)
        else:
            rec.record(begin, end, started, clock())


def _sleep_until(moment: float) -> None:
    # Times the measured window itself; nothing is being waited for.
    remaining = moment - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def run_sync_load(call: SyncCall, spec: LoadSpec) -> LoadResult:
    """Drive ``call`` from ``spec.concurrency`` threads, each looping on a blocking call.

    Runs in the calling thread of a client process; returns after the window closes
    and every caller has finished its last call.
    """
    begin = time.perf_counter() + spec.warmup
    end = begin + spec.duration
    recorders = [_Recorder() for _ in range(spec.concurrency)]
    threads = [
        threading.Thread(
            target=_sync_caller, args=(call, begin, end, rec), name=f"load-{i}", daemon=True
        )
        for i, rec in enumerate(recorders)
    ]
    for thread in threads:
        thread.start()
    _sleep_until(begin)
    cpu_start = time.process_time()
    _sleep_until(end)
    cpu_seconds = time.process_time() - cpu_start
    join_by = end + spec.call_timeout
    for thread in threads:
        thread.join(max(0.0, join_by - time.perf_counter()))
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        raise BenchError(
            f"{stuck} of {spec.concurrency} callers were still in a call "
            f"{spec.call_timeout} s after the window closed; give calls a timeout"
        )
    return _collect(spec, recorders, cpu_seconds)


async def _async_caller(call: AsyncCall, begin: float, end: float, rec: _Recorder) -> None:
    clock = time.perf_counter
    while True:
        started = clock()
        if started >= end:
            return
        try:
            await call()
        except Exception as exc:  # a failed call is counted, never ends the phase
            rec.record_error(begin, end, clock(), exc)
        else:
            rec.record(begin, end, started, clock())


async def run_async_load(call: AsyncCall, spec: LoadSpec) -> LoadResult:
    """Drive ``call`` from ``spec.concurrency`` tasks on the running event loop."""
    begin = time.perf_counter() + spec.warmup
    end = begin + spec.duration
    recorders = [_Recorder() for _ in range(spec.concurrency)]
    tasks = [asyncio.create_task(_async_caller(call, begin, end, rec)) for rec in recorders]
    # Times the measured window itself; nothing is being waited for.
    await asyncio.sleep(max(0.0, begin - time.perf_counter()))
    cpu_start = time.process_time()
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    cpu_seconds = time.process_time() - cpu_start
    _, pending = await asyncio.wait(
        tasks, timeout=max(0.0, end + spec.call_timeout - time.perf_counter())
    )
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        raise BenchError(
            f"{len(pending)} of {spec.concurrency} callers were still in a call "
            f"{spec.call_timeout} s after the window closed; give calls a timeout"
        )
    for task in tasks:
        task.result()  # surfaces a bug in the caller loop itself
    return _collect(spec, recorders, cpu_seconds)


# --------------------------------------------------------------------------- processes


class ChildError(BenchError):
    """A spawned child failed, exited, or did not answer in time."""


class Link:
    """The child's end of the pipe to its parent.

    Used from the child's main thread; :meth:`watch_stop` reads from a thread of its
    own, so a child uses either it or :meth:`next_request`, not both.
    """

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()

    def ready(self, payload: object = None) -> None:
        """Tell the parent this child is usable (a server sends its bound port)."""
        self._send("ready", payload)

    def reply(self, payload: object) -> None:
        """Answer the request last returned by :meth:`next_request`."""
        self._send("reply", payload)

    def fail(self, text: str) -> None:
        """Report a fatal error; a parent that is already gone is not an error."""
        with suppress(OSError):
            self._send("error", text)

    def next_request(self) -> object | None:
        """Block for the parent's next request; ``None`` once it asks to stop or is gone."""
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            return None
        return None if kind == "stop" else payload

    def watch_stop(self, on_stop: Callable[[], object]) -> threading.Thread:
        """Call ``on_stop`` from a daemon thread once the parent asks to stop or dies."""

        def watch() -> None:
            while self.next_request() is not None:
                pass  # a server child takes no requests
            on_stop()

        thread = threading.Thread(target=watch, name="bench-stop-watch", daemon=True)
        thread.start()
        return thread

    def _send(self, kind: str, payload: object) -> None:
        with self._send_lock:
            self._conn.send((kind, payload))


def _child_main(
    target: Callable[..., None],
    conn: multiprocessing.connection.Connection,
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> None:
    # Ctrl-C reaches the whole process group; the parent decides how children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = Link(conn)
    try:
        target(link, *args, **kwargs)
    except BaseException:
        link.fail(traceback.format_exc())
        raise SystemExit(1) from None


class Child:
    """Parent-side handle on a spawned child process; used from one thread."""

    def __init__(
        self,
        name: str,
        process: multiprocessing.process.BaseProcess,
        conn: multiprocessing.connection.Connection,
    ) -> None:
        self.name = name
        self.ready: object = None
        self._process = process
        self._conn = conn

    @classmethod
    def spawn(
        cls,
        name: str,
        target: Callable[Concatenate[Link, P], None],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Child:
        """Start ``target(link, *args, **kwargs)`` in a new process; does not wait.

        ``target`` and its arguments must be picklable (module-level functions,
        plain data). Follow with :meth:`wait_ready`.
        """
        context = multiprocessing.get_context("spawn")
        parent_conn, child_conn = context.Pipe()
        process = context.Process(
            target=_child_main,
            args=(target, child_conn, args, kwargs),
            name=name,
            daemon=True,
        )
        process.start()
        child_conn.close()  # so the parent sees EOF if the child dies
        return cls(name, process, parent_conn)

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def wait_ready(self, timeout: float) -> object:
        """Wait for the child's ``ready`` message and return (and keep) its payload."""
        kind, payload = self._receive(timeout, "starting")
        if kind != "ready":
            raise ChildError(f"{self.name} sent {kind!r} before it was ready")
        self.ready = payload
        return payload

    def request(self, payload: object, timeout: float) -> object:
        """Send one request and wait for the child's reply."""
        self.send_request(payload)
        return self.receive_reply(timeout)

    def send_request(self, payload: object) -> None:
        """Send one request; :meth:`receive_reply` waits for the answer."""
        try:
            self._conn.send(("run", payload))
        except OSError as exc:
            raise ChildError(f"{self.name} is gone (exit code {self._exitcode()})") from exc

    def receive_reply(self, timeout: float) -> object:
        """Wait for the reply to the request sent last."""
        kind, answer = self._receive(timeout, "answering a request")
        if kind != "reply":
            raise ChildError(f"{self.name} sent {kind!r} instead of a reply")
        return answer

    def stop(self, grace: float = 5.0) -> None:
        """Ask the child to stop; terminate, then kill it if it outlives ``grace``."""
        stop_all([self], grace)

    def _ask_stop(self) -> None:
        with suppress(OSError):  # already gone
            self._conn.send(("stop", None))

    def _exitcode(self) -> int | None:
        self._process.join(0.5)
        return self._process.exitcode

    def _receive(self, timeout: float, doing: str) -> tuple[str, object]:
        ready = multiprocessing.connection.wait([self._conn, self._process.sentinel], timeout)
        if self._conn in ready:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                pass  # died; reported below
            else:
                if kind == "error":
                    raise ChildError(f"{self.name} failed while {doing}:\n{payload}")
                return str(kind), payload
        elif not ready:
            raise ChildError(f"{self.name} did not answer within {timeout:.1f} s while {doing}")
        raise ChildError(f"{self.name} exited with code {self._exitcode()} while {doing}")


def stop_all(children: Iterable[Child], grace: float = 5.0) -> None:
    """Stop children together: ask all, wait up to ``grace`` seconds in total, then
    terminate (SIGTERM) and finally kill those still running. Never raises for a
    child that is already gone."""
    children = list(children)
    for child in children:
        child._ask_stop()
    _join_all(children, grace)
    for child in children:
        if child.alive:
            child._process.terminate()
    _join_all(children, 2.0)
    for child in children:
        if child.alive:
            child._process.kill()
            child._process.join()
        child._conn.close()


def _join_all(children: Sequence[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for child in children:
        child._process.join(max(0.0, deadline - time.monotonic()))


def sync_client_main(link: Link, setup: SyncSetup, *args: object) -> None:
    """Child target of a sync client: ``with setup(*args) as call``, then run each
    :class:`LoadSpec` the parent sends with :func:`run_sync_load`."""
    with setup(*args) as call:
        link.ready()
        while (spec := link.next_request()) is not None:
            if not isinstance(spec, LoadSpec):
                raise BenchError(f"a client takes LoadSpec requests, got {spec!r}")
            link.reply(run_sync_load(call, spec))


def async_client_main(link: Link, setup: AsyncSetup, *args: object) -> None:
    """Child target of an asyncio client: like :func:`sync_client_main`, with
    ``async with setup(*args) as call`` and :func:`run_async_load` on one event loop."""

    async def main() -> None:
        async with setup(*args) as call:
            link.ready()
            # The pipe is read off-loop; no load runs while a request is awaited.
            while (spec := await asyncio.to_thread(link.next_request)) is not None:
                if not isinstance(spec, LoadSpec):
                    raise BenchError(f"a client takes LoadSpec requests, got {spec!r}")
                link.reply(await run_async_load(call, spec))

    asyncio.run(main())


def spawn_client(name: str, mode: str, setup: SyncSetup | AsyncSetup, *args: object) -> Child:
    """Spawn a load client child in ``mode`` ("sync" or "aio"); follow with
    :meth:`Child.wait_ready`, then :func:`run_load`."""
    if mode == "sync":
        return Child.spawn(name, sync_client_main, setup, *args)  # type: ignore[arg-type]
    if mode == "aio":
        return Child.spawn(name, async_client_main, setup, *args)  # type: ignore[arg-type]
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def run_load(client: Child, spec: LoadSpec) -> LoadResult:
    """Run one phase on a client child and return its measurements."""
    return _load_result(client, client.request(spec, timeout=spec.deadline + 30.0))


def _load_result(client: Child, answer: object) -> LoadResult:
    if not isinstance(answer, LoadResult):
        raise ChildError(f"{client.name} answered {answer!r} instead of a LoadResult")
    return answer


def run_load_split(clients: Sequence[Child], spec: LoadSpec) -> LoadResult:
    """Run one phase on several client children at once, ``spec.concurrency`` callers
    shared out among them, and merge their measurements as if one client had made every
    call (percentiles over all the latencies; CPU is the children's total per call).

    A single Python client process tops out near one CPU (its GIL); several processes
    show what a service sees from many clients."""
    if len(clients) == 1:
        return run_load(clients[0], spec)
    if spec.concurrency < len(clients):
        raise BenchError(
            f"concurrency {spec.concurrency} cannot be shared among {len(clients)} client "
            "processes; use at most one process per caller"
        )
    count = len(clients)
    for i, client in enumerate(clients):
        share = spec.concurrency // count + (1 if i < spec.concurrency % count else 0)
        client.send_request(replace(spec, concurrency=share, keep_latencies=True))
    results = [
        _load_result(client, client.receive_reply(spec.deadline + 30.0)) for client in clients
    ]
    return summarize(
        concurrency=spec.concurrency,
        latencies=[x for r in results for x in r.latencies],
        errors=sum(r.errors for r in results),
        window=spec.duration,
        cpu_seconds=sum(r.cpu_per_call * r.calls for r in results if r.calls),
        first_error=next((r.first_error for r in results if r.first_error), None),
        keep_latencies=spec.keep_latencies,
    )


# --------------------------------------------------------------------------- CLI


def int_list(text: str) -> list[int]:
    """argparse type for "1,16,64": positive integers, comma separated."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 1,16,64, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected positive integers such as 1,16,64, got {text!r}"
        )
    return values


def mode_list(text: str) -> list[str]:
    """argparse type for "sync,aio"."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    bad = [v for v in values if v not in MODES]
    if not values or bad:
        raise argparse.ArgumentTypeError(
            f"modes are {', '.join(MODES)} (comma separated), got {text!r}"
        )
    return values


def add_load_arguments(
    parser: argparse.ArgumentParser,
    *,
    concurrency: str = "1,16,64",
    duration: float = 3.0,
    warmup: float = 1.0,
    repeat: int = 3,
) -> None:
    """The options every load scenario shares, with scenario-chosen defaults."""
    parser.add_argument(
        "--duration", type=float, default=duration, help="measured seconds per phase (%(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=warmup, help="unmeasured seconds first (%(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=int_list,
        default=int_list(concurrency),
        help=f"callers in flight, comma separated ({concurrency})",
    )
    parser.add_argument(
        "--modes",
        type=mode_list,
        default=list(MODES),
        help="sync (threads) and/or aio (asyncio tasks) (sync,aio)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=repeat,
        help="measured phases per cell; the median is reported (%(default)s)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the JSON results (default bench/results/<scenario>-<time>.json)",
    )


# --------------------------------------------------------------------------- reports


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None
) -> str:
    """A plain-text table: header, a rule, then rows. ``align`` has one ``l`` or ``r``
    per column; by default the first column is left-aligned and the rest right."""
    width = len(header)
    if align is None:
        align = "l" + "r" * (width - 1)
    if len(align) != width or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one 'l' or 'r' per column ({width}), got {align!r}")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} cells, the header has {width}")
    widths = [max([len(header[c])] + [len(row[c]) for row in rows]) for c in range(width)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(w) if a == "l" else cell.rjust(w)
            for cell, w, a in zip(cells, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds with two decimals; ``-`` when missing."""
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.2f}"


def fmt_us(seconds: float) -> str:
    """Seconds as whole microseconds; ``-`` when missing."""
    return "-" if math.isnan(seconds) else f"{seconds * 1e6:.0f}"


def fmt_rate(per_second: float) -> str:
    """A rate rounded to a whole number; ``-`` when missing."""
    return "-" if math.isnan(per_second) else f"{per_second:.0f}"


def fmt_ratio(value: float) -> str:
    """A ratio with two decimals; ``-`` when missing."""
    return "-" if math.isnan(value) else f"{value:.2f}"


def environment() -> dict[str, object]:
    """What the numbers depend on, for the report header and the JSON file."""
    import grpc

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on this platform
        load = None
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # Other busy processes skew every number; a reader of the results should know.
        "load_average": load,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
    }


def results_path(scenario: str, explicit: Path | None = None) -> Path:
    """``explicit``, or ``bench/results/<scenario>-<UTC time>.json``."""
    if explicit is not None:
        return explicit
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_DIR / f"{scenario}-{stamp}.json"


def write_json(path: Path, document: Mapping[str, object]) -> Path:
    """Write ``document`` as indented JSON (NaN as null), creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(document), indent=2, allow_nan=False) + "\n")
    return path


def progress(message: str) -> None:
    """A progress line on stderr, so stdout carries only the report."""
    print(message, file=sys.stderr, flush=True)


def _jsonable(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, LoadResult):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
