"""Scenario ``registry``: the etcd registry at scale, against one real etcd on loopback.

Four parts, each runnable alone (``--parts``):

``first``
    A service with ``--endpoints`` (1,000) providers, written beforehand in transactions of
    100 on one lease. Timed ``--repeat`` times, each with a fresh connection: (a)
    ``EtcdDiscovery.subscribe`` until its listener holds every endpoint; (b)
    ``dubbok.App("c", registry=url).reference(EchoStub)`` from constructing the App until
    ``ref.endpoints`` holds every endpoint (the App's discovery, the directory's diff, one
    channel per endpoint, the picker build and the consumer record the App writes are all
    inside). Target: < 1 s for each.

``spread``
    ``--references`` (100) subscribed references spread over ``--processes`` (4) consumer
    processes. Each reference is its own ``dubbok.App`` with its own ``EtcdDiscovery`` — its
    own etcd connection and watch — as 100 consumer processes would have; here 25 share an
    interpreter (and its GIL), which can only make the tail worse. The orchestrator adds or
    removes one endpoint with ``EtcdRegistry.register`` / ``unregister`` ``--events`` (50)
    times, each time reading the clock just before the etcd write; each reference records
    the clock right after its directory has applied the new set (the discovery listener —
    the directory's ``update`` — has returned, so ``ref.endpoints`` shows the change). The
    clock is ``time.monotonic_ns()`` (Linux ``CLOCK_MONOTONIC``: one system-wide clock, so
    readings compare across processes; ``time.time_ns()`` elsewhere). Also shown: the CPU
    the consumer processes and etcd spent per event — on a small machine the tail is the
    queue for its cores. Target: p99 < 100 ms.

``lease``
    ``--services`` (1,000) services registered through one ``EtcdRegistry``. Checked in etcd:
    ``etcdctl lease list`` shows one new lease, ``etcdctl lease timetolive --keys`` shows every
    record on it, and etcd's own counters show one LeaseGrant for all the writes. Then, with
    a 3 s lease (so the window is short), etcd's counters over 4 s show only keep-alives:
    one per TTL/3, however many services.

``idle``
    ``--idle-providers`` (20) provider processes, each an ``EtcdRegistry`` holding
    ``--idle-services`` (3) registrations with the default 10 s lease, left idle for
    ``--idle-seconds`` (30). etcd's gRPC counters (``grpc_server_msg_received_total`` from
    its ``/metrics``) over that window give requests per second by method; expected: only
    ``LeaseKeepAlive``, about providers / (TTL/3) ≈ 6 per second.

Every count comes from etcd's own Prometheus endpoint, read over HTTP (which is not itself
a gRPC request). python3-etcd3 opens a short ``LeaseKeepAlive`` stream for each refresh, so
etcd counts one stream and one message per keep-alive.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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

DESCRIPTION = "etcd registry at scale: 1,000-endpoint snapshot, change fan-out, lease, idle load"

PARTS: tuple[str, ...] = ("first", "spread", "lease", "idle")
NAMESPACE = "bench"
SERVICE = "dubbok.testing.v1.Echo"  # the service EchoStub calls
TARGET_FIRST = 1.0
TARGET_SPREAD_P99 = 0.100
LEASE_CHECK_TTL = 3.0
LEASE_CHECK_WINDOW = 4.0
KEEPALIVE = "LeaseKeepAlive"
RECEIVED = "grpc_server_msg_received_total"
STARTED = "grpc_server_started_total"

# One clock for every process of the run: CLOCK_MONOTONIC is system-wide on Linux, immune to
# wall-clock steps; elsewhere only the wall clock is shared between processes.
CLOCK_NAME = "time.monotonic_ns" if sys.platform.startswith("linux") else "time.time_ns"
now_ns: Callable[[], int] = time.monotonic_ns if CLOCK_NAME == "time.monotonic_ns" else time.time_ns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parts",
        type=part_list,
        default=list(PARTS),
        help=f"which parts to run, comma separated ({','.join(PARTS)})",
    )
    parser.add_argument(
        "--endpoints", type=int, default=1000, help="first: endpoints of the service (1000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="first: timed subscriptions; median shown (5)"
    )
    parser.add_argument(
        "--references", type=int, default=100, help="spread: subscribed references (100)"
    )
    parser.add_argument(
        "--processes", type=int, default=4, help="spread: consumer processes sharing them (4)"
    )
    parser.add_argument("--events", type=int, default=50, help="spread: measured adds/removes (50)")
    parser.add_argument(
        "--base-endpoints",
        type=int,
        default=3,
        help="spread: endpoints that stay registered throughout (3)",
    )
    parser.add_argument(
        "--services", type=int, default=1000, help="lease: services in one registry (1000)"
    )
    parser.add_argument(
        "--idle-providers", type=int, default=20, help="idle: provider processes (20)"
    )
    parser.add_argument(
        "--idle-services", type=int, default=3, help="idle: services each registers (3)"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="idle: measured window (30)"
    )
    parser.add_argument(
        "--lease-ttl", type=float, default=10.0, help="idle: the providers' lease TTL (10)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the JSON results (default bench/results/registry-<time>.json)",
    )


# --------------------------------------------------------------------------- pure helpers


def part_list(text: str) -> list[str]:
    """argparse type for "first,idle": parts of this scenario, in the order they run."""
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(chosen - set(PARTS))
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(
            f"parts are {', '.join(PARTS)} (comma separated), got {text!r}"
        )
    return [part for part in PARTS if part in chosen]


def split(total: int, parts: int) -> list[int]:
    """``total`` items over at most ``parts`` groups, as evenly as possible, larger first;
    never an empty group."""
    if total < 1 or parts < 1:
        raise ValueError(f"need at least one item and one group, got {total} over {parts}")
    parts = min(parts, total)
    size, extra = divmod(total, parts)
    return [size + (1 if i < extra else 0) for i in range(parts)]


def fake_address(index: int, block: int = 1) -> tuple[str, int]:
    """A distinct loopback address per index (``127.<block>.x.y:50051``); never dialled —
    channels connect lazily and no call is made."""
    if not 0 <= index < 250 * 250:
        raise ValueError(f"index must be in 0..62499, got {index}")
    return f"127.{block}.{index // 250}.{index % 250 + 1}", 50051


MetricKey = tuple[str, tuple[tuple[str, str], ...]]

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[MetricKey, float]:
    """Samples of a Prometheus text exposition: ``(name, sorted labels) → value``."""
    samples: dict[MetricKey, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        samples[(name, pairs)] = number
    return samples


def by_method(samples: Mapping[MetricKey, float], name: str) -> dict[str, float]:
    """``name``'s samples summed per ``grpc_method`` label (codes and types folded)."""
    out: dict[str, float] = {}
    for (metric, labels), value in samples.items():
        if metric != name:
            continue
        method = dict(labels).get("grpc_method", "?")
        out[method] = out.get(method, 0.0) + value
    return out


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Per key, ``after - before`` where it grew (a key absent before counts from 0)."""
    delta = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: value for key, value in sorted(delta.items()) if value > 0}


def expected_keepalives(providers: int, window: float, ttl: float) -> float:
    """Keep-alives ``providers`` leases of ``ttl`` seconds send in ``window`` seconds:
    each refreshes every TTL/3 (etcd rounds the TTL up to whole seconds)."""
    return providers * window / (math.ceil(ttl) / 3)


def keepalives_ok(keepalives: float, other: float, providers: int, expected: float) -> bool:
    """Idle traffic is "just keep-alives": no other request, and the count within one
    refresh per provider of the expectation (a window cuts each provider's refresh cycle
    at an arbitrary point, so each may send one more or one fewer)."""
    return other == 0 and abs(keepalives - expected) <= providers


@dataclass(slots=True)
class AppliedLog:
    """When one reference first showed each address appear and disappear.

    Written by the reference's discovery thread, read by the child's request loop, both
    under the process's condition (the caller holds it).
    """

    current: frozenset[str] = frozenset()
    seen: dict[tuple[str, bool], int] = field(default_factory=dict)

    def observe(self, addresses: Iterable[str], at: int) -> None:
        """Record a newly applied set at clock reading ``at`` (ns)."""
        new = frozenset(addresses)
        for address in new - self.current:
            self.seen.setdefault((address, True), at)
        for address in self.current - new:
            self.seen.setdefault((address, False), at)
        self.current = new

    def when(self, address: str, present: bool) -> int | None:
        """The clock reading at which ``address`` was first applied as present (or absent)."""
        return self.seen.get((address, present))


def latency_row(label: str, samples: Sequence[float]) -> list[str]:
    """``label, n, p50, p90, p99, max`` in ms (``-`` when there is no sample)."""
    if not samples:
        return [label, "0", "-", "-", "-", "-"]
    p50, p90, p99 = percentiles(samples, (50, 90, 99))
    return [label, str(len(samples)), fmt_ms(p50), fmt_ms(p90), fmt_ms(p99), fmt_ms(max(samples))]


def spread_text(sizes: Sequence[int]) -> str:
    """How references sit in processes: ``4 processes × 25 Apps``, or the sizes when uneven."""
    count = len(sizes)
    processes = f"{count} process{'es' if count != 1 else ''}"
    if len(set(sizes)) == 1:
        return f"{processes} × {sizes[0]} App{'s' if sizes[0] != 1 else ''}"
    return f"{processes} with {'+'.join(map(str, sizes))} Apps"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


# --------------------------------------------------------------------------- etcd access


def _connect(url: str) -> Any:
    from dubbok.registry._client import EtcdClient
    from dubbok.registry.etcd import connection_settings
    from dubbok.url import parse_url

    return EtcdClient(connection_settings(parse_url(url)))


def _registry(url: str, app: str, ttl: float = 10.0) -> Any:
    from dubbok.registry import RegistryOptions
    from dubbok.registry.etcd import EtcdRegistry
    from dubbok.url import parse_url

    return EtcdRegistry.from_url(parse_url(url), RegistryOptions(app=app, lease_ttl=ttl))


def _discovery(url: str, app: str) -> Any:
    from dubbok.discovery import DiscoveryOptions
    from dubbok.registry.etcd import EtcdDiscovery
    from dubbok.url import parse_url

    return EtcdDiscovery.from_url(parse_url(url), DiscoveryOptions(app=app))


def scrape(endpoint: str) -> dict[MetricKey, float]:
    """etcd's ``/metrics`` (plain HTTP; not counted among its gRPC requests)."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as response:
            return parse_metrics(response.read().decode())
    except OSError as exc:
        raise BenchError(f"cannot read etcd metrics at http://{endpoint}/metrics: {exc}") from exc


def received(endpoint: str) -> dict[str, float]:
    return by_method(scrape(endpoint), RECEIVED)


def _etcdctl(etcd: Any, *args: str) -> dict[str, Any]:
    binary = Path(etcd.binary).with_name("etcdctl")
    found = str(binary) if binary.is_file() else shutil.which("etcdctl")
    if found is None:
        raise BenchError(
            f"the lease part needs etcdctl (next to {etcd.binary} or on PATH); "
            "skip it with --parts first,spread,idle"
        )
    done = subprocess.run(
        [found, f"--endpoints={etcd.endpoint}", *args, "-w", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        raise BenchError(f"etcdctl {' '.join(args)} failed: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def lease_ids(etcd: Any) -> set[int]:
    """Every live lease, as ``etcdctl lease list`` sees it."""
    return {int(lease["id"]) for lease in _etcdctl(etcd, "lease", "list").get("leases") or []}


def keys_on_lease(etcd: Any, lease_id: int) -> list[str]:
    """The keys attached to ``lease_id``, as ``etcdctl lease timetolive --keys`` sees them."""
    info = _etcdctl(etcd, "lease", "timetolive", f"{lease_id:x}", "--keys")
    return [base64.b64decode(key).decode() for key in info.get("keys") or []]


# --------------------------------------------------------------------------- part: first


def part_first(args: argparse.Namespace, etcd: Any, url: str) -> dict[str, Any]:
    """Write ``--endpoints`` providers, then time the first snapshot ``--repeat`` times."""
    import dubbok
    from dubbok.endpoint import Endpoint
    from dubbok.registry.record import encode_provider, provider_key
    from dubbok.testing.pb import echo_pb2_grpc

    n = args.endpoints
    client = _connect(url)
    lease_id = None
    try:
        lease_id, _ = client.grant_lease(600)
        items = []
        started_at = time.time()
        for i in range(n):
            host, port = fake_address(i)
            endpoint = Endpoint(host, port, app="bench-provider")
            items.append(
                (
                    provider_key(NAMESPACE, SERVICE, endpoint.address),
                    encode_provider(endpoint, pid=0, started_at=started_at),
                )
            )
        begin = time.perf_counter()
        client.put_many(items, lease=lease_id)
        written = time.perf_counter() - begin
        progress(f"first: {n} provider records written in {written * 1e3:.0f} ms")

        subscribe: list[float] = []
        reference: list[float] = []
        with tempfile.TemporaryDirectory(prefix="dubbok-bench-") as snapshots:
            for run_number in range(args.repeat):
                subscribe.append(_time_subscribe(url, n))
                reference.append(_time_reference(dubbok, echo_pb2_grpc, url, n, snapshots))
                progress(
                    f"first: run {run_number + 1}/{args.repeat}: subscribe "
                    f"{subscribe[-1] * 1e3:.1f} ms, reference {reference[-1] * 1e3:.1f} ms"
                )
    finally:
        if lease_id is not None:
            client.revoke_lease(lease_id)
        client.close()
    return {
        "endpoints": n,
        "write_seconds": written,
        "subscribe": subscribe,
        "reference": reference,
    }


def _time_subscribe(url: str, n: int) -> float:
    """Fresh discovery (new connection): ``subscribe`` → listener holding ``n`` endpoints."""
    done = threading.Event()
    at: list[float] = []

    def listener(endpoints: Sequence[Any]) -> None:
        if len(endpoints) >= n and not done.is_set():
            at.append(time.perf_counter())
            done.set()

    discovery = _discovery(url, "bench-consumer")
    try:
        begin = time.perf_counter()
        subscription = discovery.subscribe(SERVICE, listener)
        if not done.wait(30):
            raise BenchError(
                f"the discovery listener never held {n} endpoints "
                f"(last had {len(subscription.endpoints)})"
            )
        return at[0] - begin
    finally:
        discovery.close()


def _time_reference(dubbok: Any, echo_pb2_grpc: Any, url: str, n: int, snapshots: str) -> float:
    """``App(registry=url).reference(EchoStub)`` from the App's construction until
    ``ref.endpoints`` holds ``n`` endpoints."""
    begin = time.perf_counter()
    app = dubbok.App("bench-consumer", registry=url, snapshot_dir=snapshots)
    try:
        ref = app.reference(echo_pb2_grpc.EchoStub)
        deadline = begin + 30
        # The first set is applied inside reference(); the loop only guards that claim.
        while len(ref.endpoints) < n:
            if time.perf_counter() > deadline:
                raise BenchError(f"the reference never held {n} endpoints ({len(ref.endpoints)})")
            time.sleep(0.0005)
        return time.perf_counter() - begin
    finally:
        app.close()


# --------------------------------------------------------------------------- part: spread


class _TimedDiscovery:
    """A :class:`~dubbok.discovery.Discovery` that reads the clock after each set its
    listener (a reference's directory) has applied. Called on the watch thread."""

    def __init__(self, inner: Any, on_applied: Callable[[Sequence[Any], int], None]) -> None:
        self._inner = inner
        self._on_applied = on_applied

    def subscribe(self, service: str, listener: Callable[[Sequence[Any]], None]) -> Any:
        def applied(endpoints: Sequence[Any]) -> None:
            listener(endpoints)
            self._on_applied(endpoints, now_ns())

        return self._inner.subscribe(service, applied)

    def close(self) -> None:
        self._inner.close()


def consumer_main(link: Link, url: str, index: int, count: int, snapshots: str) -> None:
    """A consumer process with ``count`` Apps, one reference each, each with its own etcd
    discovery. Answers ``{"address", "present", "timeout"}`` with ``times``: per reference,
    the clock reading (ns) at which its directory applied that change, or ``None``; and
    ``cpu``: this process's CPU seconds since its previous answer."""
    import dubbok
    from dubbok.testing.pb import echo_pb2_grpc

    changed = threading.Condition()
    logs = [AppliedLog() for _ in range(count)]

    def recorder(slot: int) -> Callable[[Sequence[Any], int], None]:
        def on_applied(endpoints: Sequence[Any], at: int) -> None:
            with changed:
                logs[slot].observe((e.address for e in endpoints), at)
                changed.notify_all()

        return on_applied

    apps: list[Any] = []
    discoveries: list[Any] = []
    refs: list[Any] = []
    try:
        for slot in range(count):
            name = f"bench-consumer-{index}-{slot}"
            discovery = _TimedDiscovery(_discovery(url, name), recorder(slot))
            discoveries.append(discovery)
            app = dubbok.App(name, snapshot_dir=snapshots)
            apps.append(app)
            refs.append(app.reference(echo_pb2_grpc.EchoStub, discovery=discovery))
        link.ready(count)
        cpu_mark = time.process_time()
        while (request := link.next_request()) is not None:
            assert isinstance(request, dict)
            address, present = str(request["address"]), bool(request["present"])
            deadline = time.monotonic() + float(request["timeout"])
            with changed:
                while not all(log.when(address, present) is not None for log in logs):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    changed.wait(remaining)
                times = [log.when(address, present) for log in logs]
            wrong = sum(
                1 for ref in refs if any(e.address == address for e in ref.endpoints) != present
            )
            if wrong:
                raise BenchError(
                    f"{wrong} reference(s) disagree with their directory about {address}"
                )
            cpu = time.process_time()
            link.reply({"times": times, "cpu": cpu - cpu_mark})
            cpu_mark = cpu
    finally:
        for app in apps:
            app.close()
        for discovery in discoveries:
            discovery.close()


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used; NaN where /proc is missing."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def part_spread(args: argparse.Namespace, etcd: Any, url: str, snapshots: str) -> dict[str, Any]:
    from dubbok.endpoint import Endpoint

    sizes = split(args.references, args.processes)
    registry = _registry(url, "bench-provider")
    children: list[Child] = []
    try:
        for i in range(args.base_endpoints):
            registry.register(SERVICE, Endpoint(*fake_address(i, block=2)))
        progress(f"spread: starting {len(sizes)} consumer processes ({'+'.join(map(str, sizes))})")
        for index, size in enumerate(sizes):
            children.append(
                Child.spawn(f"consumer-{index}", consumer_main, url, index, size, snapshots)
            )
        for child in children:
            child.wait_ready(120)
        warmup = 2
        samples: dict[bool, list[float]] = {True: [], False: []}
        last: dict[bool, list[float]] = {True: [], False: []}
        write: list[float] = []
        consumer_cpu: list[float] = []  # per event, every consumer process together
        etcd_cpu: list[float] = []
        for event in range(warmup + args.events):
            present = event % 2 == 0
            endpoint = Endpoint(*fake_address(event // 2, block=3))
            etcd_before = process_cpu(etcd.pid)
            before = now_ns()
            if present:
                registry.register(SERVICE, endpoint)
            else:
                registry.unregister(SERVICE, endpoint)
            returned = now_ns()
            times: list[int | None] = []
            cpu = 0.0
            request = {"address": endpoint.address, "present": present, "timeout": 10.0}
            for child in children:
                answer = child.request(request, timeout=30)
                assert isinstance(answer, dict)
                times.extend(answer["times"])
                cpu += float(answer["cpu"])
            etcd_after = process_cpu(etcd.pid)
            missing = sum(1 for t in times if t is None)
            if missing:
                what = "add" if present else "removal"
                raise BenchError(
                    f"event {event}: {missing} reference(s) never applied the {what} of "
                    f"{endpoint.address} within 10 s"
                )
            if event < warmup:
                continue
            delays = [(t - before) / 1e9 for t in times if t is not None]
            samples[present].extend(delays)
            last[present].append(max(delays))
            write.append((returned - before) / 1e9)
            consumer_cpu.append(cpu)
            etcd_cpu.append(etcd_after - etcd_before)
            if (event + 1 - warmup) % 10 == 0:
                progress(f"spread: event {event + 1 - warmup}/{args.events}")
    finally:
        stop_all(children)
        registry.close()
    return {
        "references": args.references,
        "processes": sizes,
        "events": args.events,
        "base_endpoints": args.base_endpoints,
        "clock": CLOCK_NAME,
        "add": samples[True],
        "remove": samples[False],
        "last_add": last[True],
        "last_remove": last[False],
        "write": write,
        "consumer_cpu": consumer_cpu,
        "etcd_cpu": etcd_cpu,
    }


# --------------------------------------------------------------------------- part: lease


def part_lease(args: argparse.Namespace, etcd: Any, url: str) -> dict[str, Any]:
    from dubbok.endpoint import Endpoint

    n = args.services
    leases_before = lease_ids(etcd)
    registry = _registry(url, "bench-big", ttl=LEASE_CHECK_TTL)
    try:
        counts_before = received(etcd.endpoint)
        begin = time.perf_counter()
        for i in range(n):
            registry.register(f"bench.Service{i:04d}", Endpoint("127.0.0.1", 50051))
        took = time.perf_counter() - begin
        counts_after = received(etcd.endpoint)
        progress(f"lease: {n} services registered in {took * 1e3:.0f} ms")
        new_leases = lease_ids(etcd) - leases_before
        attached = keys_on_lease(etcd, registry.lease_id) if registry.lease_id else []
        ours = set(registry.keys)
        while_registering = counter_delta(counts_before, counts_after)

        # Only this registry is connected now; what etcd hears is its keep-alive.
        progress(f"lease: watching etcd's counters for {LEASE_CHECK_WINDOW:g} s")
        quiet_before = received(etcd.endpoint)
        time.sleep(LEASE_CHECK_WINDOW)  # the measured window itself; nothing is awaited
        quiet = counter_delta(quiet_before, received(etcd.endpoint))
    finally:
        registry.close()
    return {
        "services": n,
        "register_seconds": took,
        "new_leases": len(new_leases),
        "keys_on_lease": len(attached),
        "all_keys_on_lease": set(attached) == ours and len(ours) == n,
        "while_registering": while_registering,
        "ttl": LEASE_CHECK_TTL,
        "window": LEASE_CHECK_WINDOW,
        "idle_requests": quiet,
        "expected_keepalives": expected_keepalives(1, LEASE_CHECK_WINDOW, LEASE_CHECK_TTL),
    }


# --------------------------------------------------------------------------- part: idle


def provider_main(link: Link, url: str, index: int, services: int, ttl: float) -> None:
    """An idle provider process: one ``EtcdRegistry``, ``services`` registrations, nothing
    else, until the parent says stop."""
    from dubbok.endpoint import Endpoint

    registry = _registry(url, f"bench-idle-{index}", ttl)
    stop = threading.Event()
    try:
        endpoint = Endpoint(*fake_address(index, block=4))
        for s in range(services):
            registry.register(f"bench.Idle{s}", endpoint)
        link.watch_stop(stop.set)
        link.ready(registry.lease_id)
        stop.wait()
    finally:
        registry.close()


def part_idle(args: argparse.Namespace, etcd: Any, url: str) -> dict[str, Any]:
    providers = args.idle_providers
    children: list[Child] = []
    try:
        progress(f"idle: starting {providers} provider processes")
        for index in range(providers):
            children.append(
                Child.spawn(
                    f"provider-{index}",
                    provider_main,
                    url,
                    index,
                    args.idle_services,
                    args.lease_ttl,
                )
            )
        leases = {child.wait_ready(120) for child in children}
        progress(f"idle: measuring {args.idle_seconds:g} s of idle traffic")
        before = scrape(etcd.endpoint)
        begin = time.monotonic()
        time.sleep(args.idle_seconds)  # the measured window itself; nothing is awaited
        window = time.monotonic() - begin
        after = scrape(etcd.endpoint)
    finally:
        stop_all(children)
    return {
        "providers": providers,
        "services_each": args.idle_services,
        "distinct_leases": len(leases),
        "ttl": args.lease_ttl,
        "window": window,
        "messages": counter_delta(by_method(before, RECEIVED), by_method(after, RECEIVED)),
        "streams": counter_delta(by_method(before, STARTED), by_method(after, STARTED)),
        "expected_keepalives": expected_keepalives(providers, window, args.lease_ttl),
    }


# --------------------------------------------------------------------------- run & report


def run(args: argparse.Namespace) -> int:
    from dubbok.testing.etcd import EtcdServer

    for name in ("endpoints", "repeat", "references", "processes", "events", "services"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.idle_providers < 1 or args.idle_services < 1 or args.idle_seconds <= 0:
        raise BenchError("--idle-providers, --idle-services and --idle-seconds must be positive")
    if args.base_endpoints < 1:
        raise BenchError("--base-endpoints must be at least 1 (an empty set is held back)")
    if args.lease_ttl < 1:
        raise BenchError(f"--lease-ttl must be at least 1 second, got {args.lease_ttl}")

    env = environment()
    results: dict[str, Any] = {}
    with EtcdServer() as etcd, tempfile.TemporaryDirectory(prefix="dubbok-bench-") as snapshots:
        url = f"{etcd.url}/?namespace={NAMESPACE}"
        version = subprocess.run(
            [etcd.binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[:1]
        env["etcd"] = version[0].replace("etcd Version:", "etcd").strip() if version else "etcd"
        progress(f"etcd at {etcd.endpoint} ({env['etcd']})")
        for part in args.parts:
            if part == "first":
                results[part] = part_first(args, etcd, url)
            elif part == "spread":
                results[part] = part_spread(args, etcd, url, snapshots)
            elif part == "lease":
                results[part] = part_lease(args, etcd, url)
            else:
                results[part] = part_idle(args, etcd, url)
    checks = report(env, results)
    document = {
        "scenario": "registry",
        "environment": env,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "check")},
        "results": results,
        "checks": [{"check": c, "result": r, "target": t, "ok": ok} for c, r, t, ok in checks],
    }
    path = write_json(results_path("registry", args.json), document)
    progress(f"results written to {path}")
    missed = [c for c, _, _, ok in checks if not ok]
    return 1 if args.check and missed else 0


Check = tuple[str, str, str, bool]


def report(env: Mapping[str, Any], results: Mapping[str, Any]) -> list[Check]:
    """Print every part's table and the targets; return the checks."""
    print(
        f"registry scale: {env.get('etcd')} on loopback; {env['cpus_usable']} CPUs, "
        f"load average {env['load_average']}; Python {env['python']}, grpcio {env['grpcio']}"
    )
    checks: list[Check] = []
    for part, render in (
        ("first", _report_first),
        ("spread", _report_spread),
        ("lease", _report_lease),
        ("idle", _report_idle),
    ):
        if part in results:
            print()
            checks.extend(render(results[part]))
    print()
    print("targets")
    rows = [[c, r, t, verdict(ok)] for c, r, t, ok in checks]
    print(render_table(["check", "result", "target", "ok"], rows, align="lrrl"))
    return checks


def _report_first(r: Mapping[str, Any]) -> list[Check]:
    n = r["endpoints"]
    runs = len(r["subscribe"])
    print(
        f"1. first snapshot of a service with {n} endpoints ({runs} runs, each a new "
        f"connection; records written beforehand in {r['write_seconds'] * 1e3:.0f} ms)"
    )
    rows = []
    checks: list[Check] = []
    for label, key in (
        ("EtcdDiscovery.subscribe → listener has all", "subscribe"),
        ("App(registry=url).reference → ref.endpoints has all", "reference"),
    ):
        values = r[key]
        median = statistics.median(values)
        rows.append([label, fmt_ms(median), fmt_ms(min(values)), fmt_ms(max(values))])
        checks.append(
            (
                f"{key} with {n} endpoints (median)",
                f"{median * 1e3:.1f} ms",
                f"< {TARGET_FIRST * 1e3:.0f} ms",
                median < TARGET_FIRST,
            )
        )
    print(render_table(["ms", "median", "min", "max"], rows))
    return checks


def _report_spread(r: Mapping[str, Any]) -> list[Check]:
    sizes = r["processes"]
    both = r["add"] + r["remove"]
    last = r["last_add"] + r["last_remove"]
    print(
        f"2. one endpoint added or removed → {r['references']} references "
        f"({spread_text(sizes)}, each its own etcd watch); "
        f"{r['events']} events over {r['base_endpoints']} steady endpoints"
    )
    print(f"   etcd write started → directory applied, every reference; clock {r['clock']}")
    header = ["ms", "samples", "p50", "p90", "p99", "max"]
    rows = [
        latency_row("add → each reference", r["add"]),
        latency_row("remove → each reference", r["remove"]),
        latency_row("either → each reference", both),
        latency_row("either → last of all (per event)", last),
        latency_row("etcd write returned (per event)", r["write"]),
    ]
    print(render_table(header, rows))
    # /proc counts etcd's CPU in 10 ms ticks: only the mean over every event means much.
    cpu = statistics.fmean(r["consumer_cpu"]) if r["consumer_cpu"] else math.nan
    etcd_cpu = statistics.fmean(r["etcd_cpu"]) if r["etcd_cpu"] else math.nan
    print(
        f"   CPU per event (mean): consumer processes {fmt_ms(cpu)} ms in all, "
        f"{fmt_ms(cpu / r['references'])} ms per reference; etcd {fmt_ms(etcd_cpu)} ms"
    )
    p99 = percentiles(both, [99])[0] if both else math.nan
    return [
        (
            f"change → {r['references']} references, p99",
            f"{p99 * 1e3:.1f} ms",
            f"< {TARGET_SPREAD_P99 * 1e3:.0f} ms",
            p99 < TARGET_SPREAD_P99,
        )
    ]


def _report_lease(r: Mapping[str, Any]) -> list[Check]:
    n = r["services"]
    writes = r["while_registering"]
    print(
        f"3a. {n} services through one EtcdRegistry: registered in "
        f"{r['register_seconds'] * 1e3:.0f} ms"
    )
    rows = [
        ["new leases (etcdctl lease list)", str(r["new_leases"])],
        ["keys on the lease (etcdctl lease timetolive --keys)", str(r["keys_on_lease"])],
        ["LeaseGrant requests while registering", f"{writes.get('LeaseGrant', 0):.0f}"],
        ["Put requests while registering", f"{writes.get('Put', 0):.0f}"],
    ]
    idle = r["idle_requests"]
    window, ttl = r["window"], r["ttl"]
    keepalives = idle.get(KEEPALIVE, 0.0)
    other = sum(v for k, v in idle.items() if k != KEEPALIVE)
    rows.append(
        [
            f"keep-alives in {window:g} s with a {ttl:g} s lease "
            f"(expected ≈{r['expected_keepalives']:.1f})",
            f"{keepalives:.0f}",
        ]
    )
    rows.append([f"other requests in those {window:g} s", f"{other:.0f}"])
    print(render_table(["", "count"], rows))
    one = (
        r["new_leases"] == 1
        and r["all_keys_on_lease"]
        and writes.get("LeaseGrant", 0) == 1
        and writes.get("Put", 0) == n
    )
    return [
        (
            f"{n} services → leases / keys on it",
            f"{r['new_leases']} / {r['keys_on_lease']}",
            f"1 / {n}",
            one,
        ),
        (
            f"{n} services → requests in {window:g} s (TTL {ttl:g} s)",
            f"{keepalives:.0f} keep-alive, {other:.0f} other",
            f"≈{r['expected_keepalives']:.0f} keep-alive, 0 other",
            keepalives_ok(keepalives, other, 1, r["expected_keepalives"]),
        ),
    ]


def _report_idle(r: Mapping[str, Any]) -> list[Check]:
    window = r["window"]
    messages, streams = r["messages"], r["streams"]
    providers = r["providers"]
    print(
        f"3b. {providers} idle provider processes × {r['services_each']} services, "
        f"lease TTL {r['ttl']:g} s, {r['distinct_leases']} distinct leases; "
        f"etcd gRPC traffic over {window:.1f} s"
    )
    rows = [
        [
            method,
            f"{messages.get(method, 0):.0f}",
            f"{streams.get(method, 0):.0f}",
            f"{messages.get(method, 0) / window:.2f}",
        ]
        for method in sorted(set(messages) | set(streams))
    ]
    total = sum(messages.values())
    rows.append(["total", f"{total:.0f}", f"{sum(streams.values()):.0f}", f"{total / window:.2f}"])
    print(render_table(["method", "requests", "RPCs opened", "per second"], rows))
    keepalives = messages.get(KEEPALIVE, 0.0)
    other = total - keepalives
    expected = r["expected_keepalives"]
    print(
        f"   expected keep-alives: {providers} × {window:.1f} s / (TTL/3) = {expected:.1f} "
        f"({expected / window:.2f}/s)"
    )
    return [
        (
            f"{providers} idle providers → etcd requests/s",
            f"{total / window:.2f}/s ({other:.0f} not keep-alive)",
            f"≈{expected / window:.2f}/s, keep-alives only",
            keepalives_ok(keepalives, other, providers, expected),
        )
    ]
