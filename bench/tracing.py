"""Scenario ``tracing``: what tracing costs a unary call, against raw grpcio in the same run.

``python -m bench tracing`` (or ``python -m bench.tracing``). The same workload as
``overhead`` — unary ``dubbok.testing.v1.Echo/Echo``, 32-byte payload — through:

==================  ==========================================================================
implementation      server process and client process
==================  ==========================================================================
``raw``             plain grpcio, no tracing: the baseline every ratio divides by
``raw-otel``        plain grpcio with opentelemetry-instrumentation-grpc interceptors on both
                    sides, every call sampled (BatchSpanProcessor + an exporter that drops)
``dubbok``          dubbok, no observer at all
``dubbok-noprov``   dubbok with ``OtelObserver()`` installed and no tracer/meter provider
``dubbok-all``      dubbok with ``OtelObserver``, every call sampled (BatchSpanProcessor +
                    an exporter that drops)
``dubbok-10pct``    the same, ``ParentBased(TraceIdRatioBased(0.1))``: 10% of calls traced
``dubbok-metrics``  ``dubbok-all`` plus RPC metrics (a MeterProvider with a reader); not run
                    unless named in ``--impls``
``dubbok-header``   dubbok with an observer that only adds one constant ``traceparent``
                    header to each call and makes no span: the floor any propagating tracer
                    pays here (grpc carrying one more header); only with ``--impls``
``raw-header``      raw grpcio sending that same constant header: grpc's own share of the
                    floor; only with ``--impls``
==================  ==========================================================================

Both sides of an implementation are configured alike (a sampled client span makes the
server sample too). Each server and client is its own process. The machine's speed drifts by
tens of percent over tens of seconds, so every phase of an implementation runs between two
``raw`` phases (``raw, A, raw, B, raw, ...``, the order of the others alternating per repeat)
and is divided by their mean; ``x raw`` is the median of those ratios over the repeats.
``x dubbok`` pairs each phase with the ``dubbok`` phase of the same repeat.

Before the load phases, the observer hooks are also timed alone, in this process, with no
network (``--hooks-only`` stops there): a figure that is stable from run to run on a shared
machine, where the QPS ratios move by several percent.

Targets at concurrency 16: ``dubbok-all`` ≥ 0.75x raw, ``dubbok-10pct`` ≥ 0.90x raw,
``dubbok-noprov`` within noise of ``dubbok`` (reported as ``vs dubbok``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import math
import os
import signal
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import grpc

from bench.harness import (
    AsyncCall,
    BenchError,
    Child,
    Link,
    LoadResult,
    LoadSpec,
    SyncCall,
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
    run_load,
    spawn_client,
    stop_all,
    write_json,
)
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

DESCRIPTION = "the cost of tracing: raw grpcio, OTel's grpc instrumentation, dubbok's observer"

SERVICE = "dubbok.testing.v1.Echo"
HOST = "127.0.0.1"
IMPLS = ("raw", "raw-otel", "dubbok", "dubbok-noprov", "dubbok-all", "dubbok-10pct")
EXTRA_IMPLS = ("dubbok-metrics", "dubbok-header", "raw-header")
TRACEPARENT = ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
CALL_TIMEOUT = 5.0
READY_TIMEOUT = 30.0
SERVER_GRACE = 10.0
TARGETS = {"dubbok-all": 0.75, "dubbok-10pct": 0.90}

_add_echo_servicer: Callable[[Any, Any], None] = echo_pb2_grpc.add_EchoServicer_to_server


def _instrumentation(name: str) -> Callable[..., Any]:
    """A function of opentelemetry-instrumentation-grpc (which carries no annotations)."""
    import importlib

    module, _, attr = name.rpartition(".")
    found: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return found


_echo_stub: Callable[[Any], Any] = echo_pb2_grpc.EchoStub


# --------------------------------------------------------------------------- telemetry set-up


def _tracer_provider(impl: str) -> Any:
    """The provider an implementation's processes use (None: none at all)."""
    if impl in ("raw", "dubbok", "dubbok-noprov"):
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    class DropExporter(SpanExporter):
        """Takes batches and throws them away: measures making spans, not shipping them."""

        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sampler = ParentBased(TraceIdRatioBased(0.1)) if impl == "dubbok-10pct" else ALWAYS_ON
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    return provider


def _meter_provider(impl: str) -> Any:
    if impl != "dubbok-metrics":
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return MeterProvider(metric_readers=[InMemoryMetricReader()])


class _HeaderCall:
    """Adds a fixed trace header and nothing else: what carrying context alone costs."""

    __slots__ = ()

    def attempt(self, endpoint: Any, number: int, metadata: Any) -> Any:
        return [*metadata, TRACEPARENT]

    def attempt_done(self, code: Any, details: str, endpoint: Any = None) -> None:
        pass

    def event(self, name: str, attributes: Any) -> None:
        pass

    def done(self, code: Any, details: str) -> None:
        pass


class HeaderOnlyObserver:
    def call(self, invocation: Any, loadbalance: str, cluster: str) -> _HeaderCall:
        return _HeaderCall()

    def handle(self, service: str, method: str, context: Any) -> None:
        return None


def _observer(impl: str) -> Any:
    if impl == "dubbok":
        return None
    if impl == "dubbok-header":
        return HeaderOnlyObserver()
    from dubbok.tracing import OtelObserver

    tracer_provider, meter_provider = _tracer_provider(impl), _meter_provider(impl)
    return OtelObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)


# --------------------------------------------------------------------------- servers


class EchoService(echo_pb2_grpc.EchoServicer):
    def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(payload=request.payload)


class AsyncEchoService(echo_pb2_grpc.EchoServicer):
    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoReply:
        return echo_pb2.EchoReply(payload=request.payload)


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # dubbok's App.wait() returns on SIGTERM


def sync_server(link: Link, impl: str, workers: int) -> None:
    """Child target: the sync server of ``impl``."""
    if impl.startswith("raw"):
        interceptors = []
        if impl == "raw-otel":
            server_interceptor = _instrumentation(
                "opentelemetry.instrumentation.grpc.server_interceptor"
            )
            interceptors = [server_interceptor(tracer_provider=_tracer_provider(impl))]
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers), interceptors=interceptors
        )
        _add_echo_servicer(EchoService(), server)
        port = server.add_insecure_port(f"{HOST}:0")
        server.start()
        link.watch_stop(lambda: server.stop(grace=1.0))
        link.ready(port)
        server.wait_for_termination()
        return
    import dubbok

    app = dubbok.App("bench-provider", max_workers=workers, observer=_observer(impl))
    port = app.serve(EchoService(), host=HOST, port=0)
    link.watch_stop(_sigterm_self)
    link.ready(port)
    app.wait()


def aio_server(link: Link, impl: str, workers: int) -> None:
    """Child target: the asyncio server of ``impl`` (``workers`` unused)."""

    async def main() -> None:
        if impl.startswith("raw"):
            interceptors = []
            if impl == "raw-otel":
                aio_server_interceptor = _instrumentation(
                    "opentelemetry.instrumentation.grpc.aio_server_interceptor"
                )
                interceptors = [aio_server_interceptor(tracer_provider=_tracer_provider(impl))]
            server = grpc.aio.server(interceptors=interceptors)
            _add_echo_servicer(AsyncEchoService(), server)
            port = server.add_insecure_port(f"{HOST}:0")
            await server.start()
            loop = asyncio.get_running_loop()
            stopping = asyncio.Event()
            link.watch_stop(lambda: loop.call_soon_threadsafe(stopping.set))
            link.ready(port)
            await stopping.wait()
            await server.stop(1.0)
            return
        import dubbok.aio

        app = dubbok.aio.App("bench-provider", observer=_observer(impl))
        port = await app.serve(AsyncEchoService(), host=HOST, port=0)
        link.watch_stop(_sigterm_self)
        link.ready(port)
        await app.wait()

    asyncio.run(main())


# --------------------------------------------------------------------------- clients


def _request(payload_size: int) -> tuple[bytes, echo_pb2.EchoRequest]:
    payload = b"x" * payload_size
    return payload, echo_pb2.EchoRequest(payload=payload)


def _check(reply: echo_pb2.EchoReply, payload: bytes) -> None:
    if reply.payload != payload:
        raise BenchError(f"the echo came back wrong: {reply.payload[:16]!r}...")


def _reference_options(port: int) -> dict[str, Any]:
    return {
        "discovery": f"static://{HOST}:{port}",
        "loadbalance": "roundrobin",
        "cluster": "failover",
        "retries": 2,
        "timeout": CALL_TIMEOUT,
    }


@contextmanager
def sync_client(impl: str, port: int, payload_size: int) -> Iterator[SyncCall]:
    """The sync client of ``impl``: a stub on one channel, or a dubbok reference."""
    payload, request = _request(payload_size)
    if impl.startswith("raw"):
        with grpc.insecure_channel(f"{HOST}:{port}") as channel:
            target: Any = channel
            if impl == "raw-otel":
                # grpc.intercept_channel refuses this interceptor; the package's own works.
                client_interceptor = _instrumentation(
                    "opentelemetry.instrumentation.grpc.client_interceptor"
                )
                intercept_channel = _instrumentation(
                    "opentelemetry.instrumentation.grpc.grpcext.intercept_channel"
                )
                interceptor = client_interceptor(tracer_provider=_tracer_provider(impl))
                target = intercept_channel(channel, interceptor)
            extra = {"metadata": (TRACEPARENT,)} if impl == "raw-header" else {}
            call = functools.partial(
                _echo_stub(target).Echo, request, timeout=CALL_TIMEOUT, **extra
            )
            _check(call(), payload)
            yield call
        return
    import dubbok

    app = dubbok.App("bench-consumer", observer=_observer(impl))
    try:
        echo = app.reference(echo_pb2_grpc.EchoStub, SERVICE, **_reference_options(port))
        call = functools.partial(echo.Echo, request)
        _check(call(), payload)
        yield call
    finally:
        app.close()


@asynccontextmanager
async def aio_client(impl: str, port: int, payload_size: int) -> AsyncIterator[AsyncCall]:
    """The asyncio client of ``impl``."""
    payload, request = _request(payload_size)
    if impl.startswith("raw"):
        interceptors = None
        if impl == "raw-otel":
            aio_client_interceptors = _instrumentation(
                "opentelemetry.instrumentation.grpc.aio_client_interceptors"
            )
            interceptors = aio_client_interceptors(tracer_provider=_tracer_provider(impl))
        async with grpc.aio.insecure_channel(
            f"{HOST}:{port}", interceptors=interceptors
        ) as channel:
            extra = {"metadata": (TRACEPARENT,)} if impl == "raw-header" else {}
            call = functools.partial(
                _echo_stub(channel).Echo, request, timeout=CALL_TIMEOUT, **extra
            )
            _check(await call(), payload)
            yield call
        return
    import dubbok.aio

    app = dubbok.aio.App("bench-consumer", observer=_observer(impl))
    try:
        echo = app.reference(echo_pb2_grpc.EchoStub, SERVICE, **_reference_options(port))
        call = functools.partial(echo.Echo, request)
        _check(await call(), payload)
        yield call
    finally:
        await app.aclose()


# --------------------------------------------------------------------------- hook cost


HOOK_CONFIGS = ("noprov", "unsampled", "10pct", "all", "all+metrics")


def hook_costs(calls: int = 20000, repeat: int = 5) -> dict[str, tuple[float, float]]:
    """Microseconds per call spent in the observer hooks alone, client and server side.

    Drives ``OtelObserver`` exactly as the drivers do (call → attempt → attempt_done → done;
    handle → done, with the metadata the client produced), in this process, with no
    network: the cost of the code itself, best of ``repeat`` runs. Inside a loaded server
    the same code costs more (caches are cold after grpc's own work), but this number is
    stable from run to run, and moves only when the code does.
    """
    import timeit

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    from dubbok.endpoint import Endpoint
    from dubbok.invocation import Invocation
    from dubbok.tracing import OtelObserver

    class DropExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class Context:
        def __init__(self, metadata: Any) -> None:
            self.metadata = (*metadata, ("user-agent", "grpc-python"))

        def invocation_metadata(self) -> Any:
            return self.metadata

        def peer(self) -> str:
            return "ipv4:127.0.0.1:43210"

    def observer(config: str) -> OtelObserver:
        if config == "noprov":
            from opentelemetry.metrics import NoOpMeterProvider
            from opentelemetry.trace import NoOpTracerProvider

            return OtelObserver(NoOpTracerProvider(), NoOpMeterProvider())
        ratio = {"unsampled": 0.0, "10pct": 0.1}.get(config)
        provider = TracerProvider(
            sampler=ALWAYS_ON if ratio is None else ParentBased(TraceIdRatioBased(ratio))
        )
        provider.add_span_processor(BatchSpanProcessor(DropExporter()))
        meters = (
            MeterProvider(metric_readers=[InMemoryMetricReader()])
            if config == "all+metrics"
            else None
        )
        if meters is None:
            from opentelemetry.metrics import NoOpMeterProvider

            return OtelObserver(provider, NoOpMeterProvider())
        return OtelObserver(provider, meters)

    invocation = Invocation(SERVICE, "Echo", None, (), None)
    endpoint = Endpoint.parse("127.0.0.1:50051")
    ok = grpc.StatusCode.OK
    out: dict[str, tuple[float, float]] = {}
    for config in HOOK_CONFIGS:
        obs = observer(config)

        def client(obs: OtelObserver = obs) -> Any:
            call = obs.call(invocation, "roundrobin", "failover")
            if call is None:
                return ()
            metadata = call.attempt(endpoint, 1, ())
            call.attempt_done(ok, "")
            call.done(ok, "")
            return metadata

        contexts = itertools.cycle([Context(client()) for _ in range(64)])

        def server(obs: OtelObserver = obs, contexts: Iterator[Context] = contexts) -> None:
            handled = obs.handle(SERVICE, "Echo", next(contexts))
            if handled is not None:
                handled.done(ok, "")

        per_call = []
        for fn in (client, server):
            fn()
            best = min(timeit.repeat(fn, number=calls, repeat=repeat))
            per_call.append(best / calls * 1e6)
        out[config] = (per_call[0], per_call[1])
    return out


def render_hooks(costs: dict[str, tuple[float, float]]) -> str:
    rows = [[config, f"{c:.1f}", f"{s:.1f}", f"{c + s:.1f}"] for config, (c, s) in costs.items()]
    return render_table(["observer", "client us", "server us", "both us"], rows)


# --------------------------------------------------------------------------- scenario


def _impl_list(text: str) -> list[str]:
    known = IMPLS + EXTRA_IMPLS
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or set(values) - set(known):
        raise argparse.ArgumentTypeError(f"implementations are {','.join(known)}; got {text!r}")
    if "raw" not in values:
        values.insert(0, "raw")  # every ratio divides by it
    return [impl for impl in known if impl in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Short phases, many of them: the machine drifts within seconds, and a phase bracketed
    # by raw phases half a second away drifts less than one bracketed 2.5 s away.
    add_load_arguments(parser, concurrency="16", duration=0.4, warmup=0.1, repeat=25)
    parser.add_argument(
        "--impls",
        type=_impl_list,
        default=list(IMPLS),
        help=f"what to measure, raw always included ({','.join(IMPLS)}; also "
        f"{','.join(EXTRA_IMPLS)})",
    )
    parser.add_argument(
        "--workers", type=int, default=16, help="sync server thread pool size (%(default)s)"
    )
    parser.add_argument("--payload", type=int, default=32, help="request bytes (%(default)s)")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--hooks-only",
        action="store_true",
        help="only measure the in-process cost of the observer hooks (a few seconds)",
    )


Runs = dict[tuple[str, int, str], list[LoadResult]]
Ratios = dict[tuple[str, int, str], list[float]]


def _phase(
    clients: dict[str, Child],
    runs: Runs,
    key: tuple[str, int],
    impl: str,
    spec: LoadSpec,
    repeat: int,
) -> float:
    """Run one measured phase of ``impl``, keep its result, and return its QPS."""
    mode, concurrency = key
    result = run_load(clients[impl], spec)
    runs[mode, concurrency, impl].append(result)
    progress(
        f"  {mode:<4} c={concurrency:<3} {impl:<14} #{repeat + 1}: "
        f"{fmt_rate(result.qps)} qps, p99 {fmt_ms(result.p99)} ms"
        + (f", {result.errors} errors" if result.errors else "")
    )
    return result.qps


def measure_mode(mode: str, args: argparse.Namespace, runs: Runs, brackets: Ratios) -> None:
    """Start every implementation's server and client in ``mode``, run the phases, and
    stop every process, also on error or Ctrl-C."""
    server_target = sync_server if mode == "sync" else aio_server
    client_setup = sync_client if mode == "sync" else aio_client
    servers: dict[str, Child] = {}
    clients: dict[str, Child] = {}
    try:
        for impl in args.impls:
            servers[impl] = Child.spawn(f"{impl} {mode} server", server_target, impl, args.workers)
        for impl, server in servers.items():
            port = server.wait_ready(READY_TIMEOUT)
            clients[impl] = spawn_client(
                f"{impl} {mode} client", mode, client_setup, impl, port, args.payload
            )
        for client in clients.values():
            client.wait_ready(READY_TIMEOUT)
        others = [impl for impl in args.impls if impl != "raw"]
        for repeat in range(args.repeat):
            order = others if repeat % 2 == 0 else others[::-1]
            for concurrency in args.concurrency:
                spec = LoadSpec(concurrency, args.warmup, args.duration, CALL_TIMEOUT + 5.0)
                key = (mode, concurrency)
                before = _phase(clients, runs, key, "raw", spec, repeat)
                for impl in order:
                    qps = _phase(clients, runs, key, impl, spec, repeat)
                    after = _phase(clients, runs, key, "raw", spec, repeat)
                    brackets[mode, concurrency, impl].append(ratio(qps, (before + after) / 2))
                    before = after
    finally:
        stop_all(clients.values(), grace=2.0)
        stop_all(servers.values(), grace=SERVER_GRACE)


def _paired(runs: Runs, mode: str, concurrency: int, impl: str, base: str) -> float:
    pairs = zip(runs[mode, concurrency, base], runs[mode, concurrency, impl], strict=False)
    return paired_ratio([(x.qps, b.qps) for b, x in pairs])


def _bracketed(brackets: Ratios, mode: str, concurrency: int, impl: str) -> float:
    if impl == "raw":
        return 1.0
    found = [x for x in brackets[mode, concurrency, impl] if not math.isnan(x)]
    return statistics.median(found) if found else math.nan


def build_rows(runs: Runs, args: argparse.Namespace, brackets: Ratios) -> list[dict[str, Any]]:
    rows = []
    for mode in args.modes:
        for concurrency in args.concurrency:
            for impl in args.impls:
                results = runs[mode, concurrency, impl]
                if not results:
                    continue
                median = median_result(results)
                vs_raw = _bracketed(brackets, mode, concurrency, impl)
                vs_dubbok = (
                    _paired(runs, mode, concurrency, impl, "dubbok")
                    if impl.startswith("dubbok") and runs[mode, concurrency, "dubbok"]
                    else math.nan
                )
                floor = TARGETS.get(impl)
                verdict = "-"
                if floor is not None and concurrency == 16 and not math.isnan(vs_raw):
                    verdict = "ok" if vs_raw >= floor else "MISS"
                rows.append(
                    {
                        "mode": mode,
                        "concurrency": concurrency,
                        "impl": impl,
                        "median": median,
                        "qps_vs_raw": vs_raw,
                        "qps_vs_dubbok": vs_dubbok,
                        "target": floor,
                        "verdict": verdict,
                        "runs": results,
                    }
                )
    return rows


def render_rows(rows: Sequence[dict[str, Any]]) -> str:
    header = ["mode", "conc", "impl", "qps", "x raw", "x dubbok", "p50", "p99", "cpu us", "errors",
              "target"]  # fmt: skip
    body = []
    for row in rows:
        m: LoadResult = row["median"]
        target = f">={row['target']:.2f} {row['verdict']}" if row["target"] else "-"
        body.append([
            row["mode"], str(row["concurrency"]), row["impl"],
            fmt_rate(m.qps), fmt_ratio(row["qps_vs_raw"]), fmt_ratio(row["qps_vs_dubbok"]),
            fmt_ms(m.p50), fmt_ms(m.p99), fmt_us(m.cpu_per_call), str(m.errors), target,
        ])  # fmt: skip
    return render_table(header, body, align="lrl" + "r" * (len(header) - 3))


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1 or args.workers < 1 or args.payload < 0:
        raise BenchError("--repeat and --workers must be at least 1, --payload at least 0")
    LoadSpec(1, args.warmup, args.duration)
    env = environment()
    others = len([impl for impl in args.impls if impl != "raw"])
    phases = len(args.modes) * len(args.concurrency) * (2 * others + 1) * args.repeat
    print(f"dubbok tracing cost: unary {SERVICE}/Echo, {args.payload}-byte payload")
    print(
        f"python {env['python']}, grpcio {env['grpcio']}, {env['cpu_count']} CPUs "
        f"({env['cpus_usable']} usable), {env['platform']}"
    )
    print(
        f"median of {args.repeat} x {args.duration:g} s windows after {args.warmup:g} s "
        "warm-up; client and server in separate processes; spans to a BatchSpanProcessor "
        "whose exporter drops them",
        flush=True,
    )
    progress("measuring the observer hooks in-process")
    hooks = hook_costs()
    print()
    print("Observer hooks alone, per call, in-process (no network; best of 5 x 20,000):")
    print(render_hooks(hooks))
    if args.hooks_only:
        return 0
    progress(f"{phases} phases, about {phases * (args.warmup + args.duration):.0f} s")
    runs: Runs = defaultdict(list)
    brackets: Ratios = defaultdict(list)
    started = time.monotonic()
    for mode in args.modes:
        measure_mode(mode, args, runs, brackets)
    rows = build_rows(runs, args, brackets)
    print()
    print(render_rows(rows))
    print()
    print(
        "qps: calls/s (median of repeats); x raw: QPS over the mean of the raw phases just "
        "before and after, median over repeats; x dubbok: over the dubbok phase of the same "
        "repeat, median; p50, p99: ms; cpu: "
        "client CPU us per call"
    )
    for row in rows:
        first = row["median"].first_error
        if first:
            print(f"{row['mode']} c={row['concurrency']} {row['impl']}: first error: {first}")
    path = write_json(
        results_path("tracing", args.json),
        {
            "scenario": "tracing",
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
                "elapsed": round(time.monotonic() - started, 1),
            },
            "targets": TARGETS,
            "hooks_us_per_call": {k: {"client": c, "server": s} for k, (c, s) in hooks.items()},
            "rows": rows,
        },
    )
    print(f"results: {path}")
    missed = any(row["verdict"] == "MISS" for row in rows)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    # Run through the scenario runner, so spawned children find this module by its name.
    from bench.__main__ import main

    sys.exit(main(["tracing", *sys.argv[1:]]))
