"""Scenario ``instructions``: CPU instructions per unary call, counted by valgrind's callgrind.

``python -m bench instructions`` (needs ``valgrind`` on PATH). The other scenarios time calls,
and on a shared machine a run can drift by tens of percent from one minute to the next;
instruction counts do not drift: the same code, inputs and set-up count the same, whatever
else the machine is doing. They do not see cache misses, lock waits or the time a process
spends waiting for its peer, so they complement the timed scenarios rather than replace them.

For each implementation (as in the ``tracing`` scenario: ``raw``, ``dubbok``,
``dubbok-10pct``, ...) and each side, the side being counted runs under callgrind while the
other runs natively; each side is counted twice, at two call counts, and the difference
divided by the difference in calls is its cost per call (start-up, imports and shutdown
cancel out). ``x raw`` is client + server instructions of raw grpcio over the
implementation's: the share of raw's throughput a CPU-bound machine would keep.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from bench.harness import BenchError, fmt_ratio, progress, render_table, results_path, write_json

DESCRIPTION = "instructions per call (valgrind), client and server, raw grpcio vs dubbok"

IMPLS = ("raw", "dubbok", "dubbok-10pct", "dubbok-all")
# raw-generic: the raw asyncio server with Echo's methods behind a generic handler only (no
# registered method), as dubbok.aio does on grpc's own serving loop; raw-health: the raw
# server with health and reflection added the usual way (four more registered methods);
# raw-loops: the raw servicer on dubbok.aio's server with a serving loop per method;
# raw-fast (sync): the raw servicer on dubbok's sync serving (dubbok._serving).
KNOWN = (
    *IMPLS,
    "raw-header",
    "dubbok-header",
    "dubbok-noprov",
    "raw-otel",
    "raw-generic",
    "raw-health",
    "raw-loops",
    "raw-fast",
)
HOST = "127.0.0.1"
CONCURRENCY = 16
RUN_TIMEOUT = 900.0
_COLLECTED = re.compile(r"Collected : (\d+)")


# --------------------------------------------------------------------------- children


def serve(mode: str, impl: str) -> None:
    """Child: the server of ``impl`` (the ``tracing`` scenario's); prints its port, runs
    until SIGTERM."""
    from bench import tracing

    if mode == "sync":
        from concurrent import futures

        import grpc

        if impl.startswith("raw"):
            if impl == "raw-fast":
                from dubbok import _serving

                if not _serving.enabled():
                    raise BenchError("raw-fast needs dubbok's sync serving, not available here")
                server = grpc.server(_serving.HandlerPool(16))
            else:
                server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
            tracing._add_echo_servicer(tracing.EchoService(), server)
            port = server.add_insecure_port(f"{HOST}:0")
            if impl == "raw-fast":
                _serving.start(server)
            else:
                server.start()
            print(port, flush=True)
            signal.sigwait([signal.SIGTERM])
            server.stop(None)
            return
        import dubbok

        app = dubbok.App("bench-provider", max_workers=16, observer=tracing._observer(impl))
        print(app.serve(tracing.EchoService(), host=HOST, port=0), flush=True)
        app.wait()  # returns on SIGTERM
        return

    async def main() -> None:
        if impl.startswith("raw"):
            import grpc

            server = _raw_loops_server() if impl == "raw-loops" else grpc.aio.server()
            if impl != "raw-loops":
                _add_raw_services(impl, server)
            port = server.add_insecure_port(f"{HOST}:0")
            await server.start()
            print(port, flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
            await server.stop(None)
            return
        import dubbok.aio

        app = dubbok.aio.App("bench-provider", observer=tracing._observer(impl))
        print(await app.serve(tracing.AsyncEchoService(), host=HOST, port=0), flush=True)
        await app.wait()

    asyncio.run(main())


class _GenericOnly:
    """A server as a generated ``add_*_to_server`` sees it, keeping only generic handlers."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass


class _Collected:
    """A server as a generated ``add_*_to_server`` sees it, collecting the method handlers."""

    def __init__(self) -> None:
        self.methods: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers come again, by service

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.methods.update({f"/{service}/{name}": h for name, h in handlers.items()})


def _raw_loops_server() -> Any:
    """The raw servicer (no dubbok wrapper) on dubbok.aio's method-loop server."""
    from bench import tracing
    from dubbok.aio import _serving

    if not _serving.enabled():
        raise BenchError("raw-loops needs dubbok.aio's method-loop server, not available here")
    collected = _Collected()
    tracing._add_echo_servicer(tracing.AsyncEchoService(), collected)

    class Resolver:
        def service(self, details: Any) -> Any:
            return collected.methods.get(details.method)

    return _serving.new_server((), Resolver(), collected.methods)


def _add_raw_services(impl: str, server: Any) -> None:
    """The raw asyncio server's services: see ``KNOWN`` for the variants."""
    from bench import tracing

    if impl == "raw-generic":
        tracing._add_echo_servicer(tracing.AsyncEchoService(), _GenericOnly(server))
        return
    tracing._add_echo_servicer(tracing.AsyncEchoService(), server)
    if impl == "raw-health":
        from grpc_health.v1 import health, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        reflection.enable_server_reflection(
            ["dubbok.testing.v1.Echo", health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )


def drive(mode: str, impl: str, port: int, calls: int) -> None:
    """Child: make ``calls`` calls from ``CONCURRENCY`` callers through ``impl``'s client."""
    from bench import tracing

    each = calls // CONCURRENCY
    if mode == "sync":
        with tracing.sync_client(impl, port, 32) as call:

            def caller() -> None:
                for _ in range(each):
                    call()

            threads = [threading.Thread(target=caller) for _ in range(CONCURRENCY)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return

    async def main() -> None:
        async with tracing.aio_client(impl, port, 32) as call:

            async def caller() -> None:
                for _ in range(each):
                    await call()

            await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))

    asyncio.run(main())


# --------------------------------------------------------------------------- counting


def _valgrind() -> list[str]:
    return ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.instructions", *args]


def _collected(stderr: str, what: str) -> int:
    found = _COLLECTED.search(stderr)
    if found is None:
        raise BenchError(f"callgrind reported no count for {what}: {stderr[-600:]}")
    return int(found.group(1))


def count(mode: str, impl: str, side: str, calls: int) -> int:
    """Instructions the ``side`` process executed, start to exit, serving ``calls`` calls."""
    server_cmd = _child("--serve", mode, impl)
    if side == "server":
        server_cmd = [*_valgrind(), *server_cmd]
    server = subprocess.Popen(
        server_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=_root()
    )
    try:
        assert server.stdout is not None and server.stderr is not None
        port = server.stdout.readline().strip()
        if not port.isdigit():
            raise BenchError(f"{impl} {mode} server did not start: {server.stderr.read()[-600:]}")
        client_cmd = _child("--drive", mode, impl, port, str(calls))
        if side == "client":
            client_cmd = [*_valgrind(), *client_cmd]
        client = subprocess.run(
            client_cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=_root()
        )
        if client.returncode != 0:
            raise BenchError(f"{impl} {mode} client failed: {client.stderr[-600:]}")
        server.send_signal(signal.SIGTERM)
        _, server_err = server.communicate(timeout=RUN_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return _collected(client.stderr if side == "client" else server_err, f"{impl} {side}")


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def per_call(mode: str, impl: str, side: str, low: int, high: int) -> float:
    return (count(mode, impl, side, high) - count(mode, impl, side, low)) / (high - low)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modes", default="aio", help="sync and/or aio (aio)")
    parser.add_argument(
        "--impls",
        default=",".join(IMPLS),
        help=f"implementations, raw always included ({','.join(IMPLS)}; also "
        f"{','.join(k for k in KNOWN if k not in IMPLS)})",
    )
    parser.add_argument(
        "--calls", default="400,2000", help="the two call counts to difference (400,2000)"
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="where to write the JSON results")
    parser.add_argument("--serve", nargs=2, metavar=("MODE", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--drive", nargs=4, metavar="ARG", help=argparse.SUPPRESS)


def _list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise BenchError(f"{what} are {', '.join(allowed)} (comma separated), got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    if args.serve:
        serve(*args.serve)
        return 0
    if args.drive:
        mode, impl, port, calls = args.drive
        drive(mode, impl, int(port), int(calls))
        return 0
    if shutil.which("valgrind") is None:
        raise BenchError("this scenario counts with valgrind, which is not on PATH")
    modes = _list(args.modes, ("sync", "aio"), "modes")
    impls = ["raw", *(i for i in _list(args.impls, KNOWN, "implementations") if i != "raw")]
    try:
        low, high = (int(x) for x in args.calls.split(","))
    except ValueError:
        raise BenchError(
            f"--calls takes two call counts such as 400,2000, got {args.calls!r}"
        ) from None
    if not 0 < low < high:
        raise BenchError(f"--calls needs 0 < first < second, got {args.calls!r}")
    print(f"instructions per unary call (callgrind), concurrency {CONCURRENCY}, {high - low} calls")
    rows: list[dict[str, Any]] = []
    for mode in modes:
        raw_total = 0.0
        for impl in impls:
            progress(f"  {mode} {impl}: counting the client, then the server")
            client = per_call(mode, impl, "client", low, high)
            server = per_call(mode, impl, "server", low, high)
            if impl == "raw":
                raw_total = client + server
            rows.append(
                {
                    "mode": mode,
                    "impl": impl,
                    "client": client,
                    "server": server,
                    "x_raw": raw_total / (client + server),
                }
            )
    body = [
        [r["mode"], r["impl"], f"{r['client'] / 1000:.0f}k", f"{r['server'] / 1000:.0f}k",
         f"{(r['client'] + r['server']) / 1000:.0f}k", fmt_ratio(r["x_raw"])]
        for r in rows
    ]  # fmt: skip
    print()
    print(
        render_table(["mode", "impl", "client", "server", "total", "x raw"], body, align="llrrrr")
    )
    print()
    print("instructions per call; x raw: raw grpcio's total over this one's")
    path = results_path("instructions", args.json)
    write_json(path, {"scenario": "instructions", "calls": [low, high], "rows": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["instructions", *sys.argv[1:]]))
