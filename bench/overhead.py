"""Scenario ``overhead``: what dubbok adds to a unary call, against raw grpcio.

The same workload — unary ``dubbok.testing.v1.Echo/Echo`` with a small payload — goes
through two implementations, each with its server and its client in separate
processes:

* ``raw``: a plain grpcio server (``grpc.server`` on a thread pool of ``--workers``
  threads, or ``grpc.aio.server``) and a client on one channel calling the generated
  stub with a 5 s timeout;
* ``dubbok``: the provider served by ``dubbok.App`` (same pool size) and a consumer
  reference with static discovery of that one provider, round-robin, failover
  (retries=2), the same timeout, tracing off.

Both run in ``sync`` mode (N threads looping on a blocking call) and ``aio`` mode (N
tasks on one event loop, asyncio servers), at each concurrency. Raw and dubbok phases
are interleaved — raw then dubbok, then dubbok then raw on the next repeat — and each
cell reports the median of the repeats, so drift on a noisy machine hits both alike.
The ratios dubbok/raw come from the same run.

Targets: dubbok QPS at least 0.90x raw and p99 at most 1.15x raw at concurrency 16
and 64.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from bench.harness import (
    AsyncCall,
    AsyncSetup,
    BenchError,
    Child,
    Link,
    LoadResult,
    LoadSpec,
    SyncCall,
    SyncSetup,
    add_load_arguments,
    environment,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    median_result,
    paired_ratio,
    progress,
    ratio,
    render_table,
    results_path,
    run_load_split,
    spawn_client,
    stop_all,
    write_json,
)
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

DESCRIPTION = "unary Echo through raw grpcio and through dubbok, sync and asyncio"

SERVICE = "dubbok.testing.v1.Echo"
HOST = "127.0.0.1"
IMPLS = ("raw", "dubbok")
CALL_TIMEOUT = 5.0
READY_TIMEOUT = 30.0
SERVER_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """The bar dubbok is held to, at the listed concurrencies."""

    min_qps_ratio: float = 0.90
    max_p99_ratio: float = 1.15
    concurrencies: tuple[int, ...] = (16, 64)

    def verdict(self, concurrency: int, qps_ratio: float, p99_ratio: float) -> str:
        """``ok`` or ``MISS`` where the target applies, ``-`` elsewhere or without data."""
        if concurrency not in self.concurrencies or math.isnan(qps_ratio) or math.isnan(p99_ratio):
            return "-"
        ok = qps_ratio >= self.min_qps_ratio and p99_ratio <= self.max_p99_ratio
        return "ok" if ok else "MISS"


TARGET = Target()

# The generated grpc module carries no annotations.
_add_echo_servicer: Callable[[Any, Any], None] = echo_pb2_grpc.add_EchoServicer_to_server
_echo_stub: Callable[[Any], Any] = echo_pb2_grpc.EchoStub


# --------------------------------------------------------------------------- servers


class EchoService(echo_pb2_grpc.EchoServicer):
    """Answers with the request's payload; runs on the server's thread pool."""

    def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(payload=request.payload)


class AsyncEchoService(echo_pb2_grpc.EchoServicer):
    """The asyncio twin of :class:`EchoService`; runs on the server's event loop."""

    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(payload=request.payload)


def _sigterm_self() -> None:
    # dubbok's App.wait() returns on SIGTERM: the same path a real deployment takes.
    os.kill(os.getpid(), signal.SIGTERM)


def raw_sync_server(link: Link, workers: int) -> None:
    """Child target: a plain grpcio server on a pool of ``workers`` threads."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    _add_echo_servicer(EchoService(), server)
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    link.watch_stop(lambda: server.stop(grace=1.0))
    link.ready(port)
    server.wait_for_termination()


def raw_aio_server(link: Link, workers: int) -> None:
    """Child target: a plain ``grpc.aio`` server (``workers`` is unused: no pool)."""

    async def main() -> None:
        server = grpc.aio.server()
        _add_echo_servicer(AsyncEchoService(), server)
        port = server.add_insecure_port(f"{HOST}:0")
        await server.start()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        link.watch_stop(lambda: loop.call_soon_threadsafe(stopping.set))
        link.ready(port)
        await stopping.wait()
        await server.stop(1.0)

    asyncio.run(main())


def dubbok_sync_server(link: Link, workers: int) -> None:
    """Child target: the provider served by ``dubbok.App`` on ``workers`` threads."""
    import dubbok

    app = dubbok.App("bench-provider", max_workers=workers)
    port = app.serve(EchoService(), host=HOST, port=0)
    link.watch_stop(_sigterm_self)
    link.ready(port)
    app.wait()


def dubbok_aio_server(link: Link, workers: int) -> None:
    """Child target: the provider served by ``dubbok.aio.App``."""
    import dubbok.aio

    async def main() -> None:
        app = dubbok.aio.App("bench-provider")
        port = await app.serve(AsyncEchoService(), host=HOST, port=0)
        link.watch_stop(_sigterm_self)
        link.ready(port)
        await app.wait()

    asyncio.run(main())


# --------------------------------------------------------------------------- clients


def _check(reply: echo_pb2.EchoReply, payload: bytes) -> None:
    if reply.payload != payload:
        raise BenchError(f"the echo came back wrong: {reply.payload[:16]!r}...")


@contextmanager
def raw_sync_client(port: int, payload_size: int) -> Iterator[SyncCall]:
    """One channel, the generated stub, a blocking call with the same timeout as dubbok's."""
    payload = b"x" * payload_size
    request = echo_pb2.EchoRequest(payload=payload)
    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        call = functools.partial(_echo_stub(channel).Echo, request, timeout=CALL_TIMEOUT)
        _check(call(), payload)
        yield call


@asynccontextmanager
async def raw_aio_client(port: int, payload_size: int) -> AsyncIterator[AsyncCall]:
    """The asyncio twin of :func:`raw_sync_client`, on one ``grpc.aio`` channel."""
    payload = b"x" * payload_size
    request = echo_pb2.EchoRequest(payload=payload)
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        call = functools.partial(_echo_stub(channel).Echo, request, timeout=CALL_TIMEOUT)
        _check(await call(), payload)
        yield call


def _reference_options(port: int) -> dict[str, Any]:
    return {
        "discovery": f"static://{HOST}:{port}",
        "loadbalance": "roundrobin",
        "cluster": "failover",
        "retries": 2,
        "timeout": CALL_TIMEOUT,
    }


@contextmanager
def dubbok_sync_client(port: int, payload_size: int) -> Iterator[SyncCall]:
    """A ``dubbok.App`` consumer with a reference to the one provider."""
    import dubbok

    payload = b"x" * payload_size
    request = echo_pb2.EchoRequest(payload=payload)
    app = dubbok.App("bench-consumer")
    try:
        echo = app.reference(echo_pb2_grpc.EchoStub, SERVICE, **_reference_options(port))
        call = functools.partial(echo.Echo, request)
        _check(call(), payload)
        yield call
    finally:
        app.close()


@asynccontextmanager
async def dubbok_aio_client(port: int, payload_size: int) -> AsyncIterator[AsyncCall]:
    """The asyncio twin of :func:`dubbok_sync_client`, on ``dubbok.aio.App``."""
    import dubbok.aio

    payload = b"x" * payload_size
    request = echo_pb2.EchoRequest(payload=payload)
    app = dubbok.aio.App("bench-consumer")
    try:
        echo = app.reference(echo_pb2_grpc.EchoStub, SERVICE, **_reference_options(port))
        call = functools.partial(echo.Echo, request)
        _check(await call(), payload)
        yield call
    finally:
        await app.aclose()


SERVERS = {
    ("raw", "sync"): raw_sync_server,
    ("raw", "aio"): raw_aio_server,
    ("dubbok", "sync"): dubbok_sync_server,
    ("dubbok", "aio"): dubbok_aio_server,
}
CLIENTS: dict[tuple[str, str], SyncSetup | AsyncSetup] = {
    ("raw", "sync"): raw_sync_client,
    ("raw", "aio"): raw_aio_client,
    ("dubbok", "sync"): dubbok_sync_client,
    ("dubbok", "aio"): dubbok_aio_client,
}


# --------------------------------------------------------------------------- scenario


def _impl_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or set(values) - set(IMPLS):
        raise argparse.ArgumentTypeError(f"implementations are raw,dubbok, got {text!r}")
    return [impl for impl in IMPLS if impl in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Short windows, many repeats: more back-to-back pairs to take the median of. The
    # processes and channels live across phases, so a short warm-up is enough.
    add_load_arguments(parser, duration=2.0, warmup=0.5, repeat=5)
    parser.add_argument(
        "--impls", type=_impl_list, default=list(IMPLS), help="what to measure (raw,dubbok)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=16,
        help="server thread pool size in sync mode, same for both (%(default)s)",
    )
    parser.add_argument(
        "--payload", type=int, default=32, help="request payload bytes (%(default)s)"
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="client processes per implementation, sharing the concurrency out "
        "(%(default)s); one Python process tops out near one CPU",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )


Runs = dict[tuple[str, int, str], list[LoadResult]]


def measure_mode(mode: str, args: argparse.Namespace, runs: Runs) -> None:
    """Start a server and a client per implementation in ``mode``, run every phase,
    append the results to ``runs`` and stop every process, also on error or Ctrl-C."""
    servers: dict[str, Child] = {}
    clients: dict[str, list[Child]] = {}
    try:
        for impl in args.impls:
            servers[impl] = Child.spawn(f"{impl} {mode} server", SERVERS[impl, mode], args.workers)
        for impl, server in servers.items():
            port = server.wait_ready(READY_TIMEOUT)
            clients[impl] = [
                spawn_client(
                    f"{impl} {mode} client {i + 1}", mode, CLIENTS[impl, mode], port, args.payload
                )
                for i in range(args.client_processes)
            ]
        for client in (c for group in clients.values() for c in group):
            client.wait_ready(READY_TIMEOUT)
        for repeat in range(args.repeat):
            # Alternate who goes first so slow drift does not favour either side.
            order = args.impls if repeat % 2 == 0 else args.impls[::-1]
            for concurrency in args.concurrency:
                for impl in order:
                    spec = LoadSpec(concurrency, args.warmup, args.duration, CALL_TIMEOUT + 5.0)
                    result = run_load_split(clients[impl], spec)
                    runs[mode, concurrency, impl].append(result)
                    progress(
                        f"  {mode:<4} c={concurrency:<3} {impl:<6} #{repeat + 1}: "
                        f"{fmt_rate(result.qps)} qps, p50 {fmt_ms(result.p50)} ms, "
                        f"p99 {fmt_ms(result.p99)} ms"
                        + (f", {result.errors} errors" if result.errors else "")
                    )
    finally:
        try:
            stop_all((c for group in clients.values() for c in group), grace=2.0)
        finally:
            stop_all(servers.values(), grace=SERVER_GRACE)


@dataclass(frozen=True, slots=True)
class Row:
    """One cell of the report: both implementations' medians and the ratios dubbok/raw.

    ``qps_ratio`` and ``p99_ratio`` are the median, over repeats, of the ratio within each
    raw/dubbok pair — the two ran back to back, so load that drifts over the run (other
    processes on a small machine) cancels out; they decide the verdict. The
    ``*_of_medians`` ratios divide the medians shown in the table.
    """

    mode: str
    concurrency: int
    raw: LoadResult | None
    dubbok: LoadResult | None
    qps_ratio: float
    p99_ratio: float
    qps_ratio_of_medians: float
    p99_ratio_of_medians: float
    verdict: str


def build_rows(runs: Runs, modes: Sequence[str], concurrencies: Sequence[int]) -> list[Row]:
    rows = []
    for mode in modes:
        for concurrency in concurrencies:
            raw_runs = runs.get((mode, concurrency, "raw"), [])
            dubbok_runs = runs.get((mode, concurrency, "dubbok"), [])
            raw = median_result(raw_runs) if raw_runs else None
            dub = median_result(dubbok_runs) if dubbok_runs else None
            # One side is empty when --impls leaves it out: then there are no pairs.
            pairs = list(zip(raw_runs, dubbok_runs, strict=False))
            qps_ratio = paired_ratio([(d.qps, r.qps) for r, d in pairs])
            p99_ratio = paired_ratio([(d.p99, r.p99) for r, d in pairs])
            rows.append(
                Row(
                    mode=mode,
                    concurrency=concurrency,
                    raw=raw,
                    dubbok=dub,
                    qps_ratio=qps_ratio,
                    p99_ratio=p99_ratio,
                    qps_ratio_of_medians=ratio(dub.qps, raw.qps) if raw and dub else math.nan,
                    p99_ratio_of_medians=ratio(dub.p99, raw.p99) if raw and dub else math.nan,
                    verdict=TARGET.verdict(concurrency, qps_ratio, p99_ratio),
                )
            )
    return rows


def render_rows(rows: Sequence[Row]) -> str:
    header = [
        "mode", "conc",
        "raw qps", "dubbok qps", "qps x",
        "raw p50", "dubbok p50",
        "raw p99", "dubbok p99", "p99 x",
        "raw cpu", "dubbok cpu",
        "errors", "target",
    ]  # fmt: skip

    def cells(result: LoadResult | None) -> tuple[str, str, str, str]:
        if result is None:
            return "-", "-", "-", "-"
        return (
            fmt_rate(result.qps),
            fmt_ms(result.p50),
            fmt_ms(result.p99),
            fmt_us(result.cpu_per_call),
        )

    body = []
    for row in rows:
        r_qps, r_p50, r_p99, r_cpu = cells(row.raw)
        d_qps, d_p50, d_p99, d_cpu = cells(row.dubbok)
        errors = "/".join(str(res.errors) if res else "-" for res in (row.raw, row.dubbok))
        body.append([
            row.mode, str(row.concurrency),
            r_qps, d_qps, fmt_ratio(row.qps_ratio),
            r_p50, d_p50,
            r_p99, d_p99, fmt_ratio(row.p99_ratio),
            r_cpu, d_cpu,
            errors, row.verdict,
        ])  # fmt: skip
    return render_table(header, body, align="l" + "r" * (len(header) - 1))


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1 or args.workers < 1 or args.payload < 0 or args.client_processes < 1:
        raise BenchError(
            "--repeat, --workers and --client-processes must be at least 1, --payload at least 0"
        )
    if min(args.concurrency) < args.client_processes:
        raise BenchError(
            f"--client-processes {args.client_processes} is more than the lowest concurrency "
            f"({min(args.concurrency)}): each client process needs at least one caller"
        )
    LoadSpec(1, args.warmup, args.duration)  # validates the durations up front
    env = environment()
    phases = len(args.modes) * len(args.concurrency) * len(args.impls) * args.repeat
    print(
        f"dubbok overhead: unary {SERVICE}/Echo, {args.payload}-byte payload; "
        "raw grpcio vs dubbok (static discovery, roundrobin over 1 provider, "
        "failover retries=2, tracing off)"
    )
    print(
        f"python {env['python']}, grpcio {env['grpcio']}, {env['cpu_count']} CPUs "
        f"({env['cpus_usable']} usable), {env['platform']}, load average {env['load_average']}"
    )
    print(
        f"median of {args.repeat} x {args.duration:g} s windows after {args.warmup:g} s "
        f"warm-up; sync server pool {args.workers} threads; client and server in "
        f"separate processes ({args.client_processes} client process"
        f"{'es' if args.client_processes > 1 else ''} per implementation)",
        flush=True,
    )
    progress(f"{phases} phases, about {phases * (args.warmup + args.duration):.0f} s")

    runs: Runs = defaultdict(list)
    started = time.monotonic()
    for mode in args.modes:
        measure_mode(mode, args, runs)
    rows = build_rows(runs, args.modes, args.concurrency)

    print()
    print(render_rows(rows))
    print()
    print(
        "qps: calls/s; p50, p99: latency ms; cpu: client CPU us/call (medians of the "
        "repeats); x: dubbok/raw, median over back-to-back pairs; errors: raw/dubbok"
    )
    print(
        f"target at concurrency {', '.join(map(str, TARGET.concurrencies))}: "
        f"qps x >= {TARGET.min_qps_ratio:.2f} and p99 x <= {TARGET.max_p99_ratio:.2f}"
    )
    for row in rows:
        for impl, result in (("raw", row.raw), ("dubbok", row.dubbok)):
            if result is not None and result.first_error:
                print(f"{row.mode} c={row.concurrency} {impl}: first error: {result.first_error}")

    path = write_json(
        results_path("overhead", args.json),
        {
            "scenario": "overhead",
            "environment": env,
            "settings": {
                "modes": args.modes,
                "concurrency": args.concurrency,
                "impls": args.impls,
                "duration": args.duration,
                "warmup": args.warmup,
                "repeat": args.repeat,
                "workers": args.workers,
                "payload": args.payload,
                "client_processes": args.client_processes,
                "elapsed": round(time.monotonic() - started, 1),
            },
            "target": asdict(TARGET),
            "rows": [
                {
                    **asdict(row),
                    "raw": row.raw,
                    "dubbok": row.dubbok,
                    "runs": {
                        impl: runs.get((row.mode, row.concurrency, impl), []) for impl in IMPLS
                    },
                }
                for row in rows
            ],
        },
    )
    print(f"results: {path}")
    missed = any(row.verdict == "MISS" for row in rows)
    return 1 if missed and args.check else 0
