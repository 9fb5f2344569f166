"""DNS discovery against a real DNS server on loopback, and real gRPC servers behind it.

Every "pod" has its own loopback address (127.0.0.2, 127.0.0.3, ... all reach this host on
Linux), as pods behind a Kubernetes headless Service have their own IPs on one port.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import pytest

from dubbok.discovery import Subscription, create_discovery
from dubbok.discovery.dns import DnsDiscovery, DnsSubscription
from dubbok.endpoint import Endpoint
from dubbok.errors import DubbokError
from dubbok.testing.dns import DnsServer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

NAME = "greeter.shop.svc.cluster.local"
SRV_NAME = f"_grpc._tcp.{NAME}"
LOGGER = "dubbok.discovery.dns"


class Recorder:
    """A listener that keeps every set it receives and lets a test wait for one."""

    def __init__(self) -> None:
        self.sets: list[tuple[Endpoint, ...]] = []
        self._cond = threading.Condition()

    def __call__(self, endpoints: Sequence[Endpoint]) -> None:
        with self._cond:
            self.sets.append(tuple(endpoints))
            self._cond.notify_all()

    @property
    def latest(self) -> list[str]:
        with self._cond:
            return [e.address for e in self.sets[-1]] if self.sets else []

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 5.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: bool(self.sets) and predicate([e.address for e in self.sets[-1]]),
                timeout,
            )
            assert ok, f"no matching set within {timeout}s; got {self.sets}"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.005)


def stays(predicate: Callable[[], bool], seconds: float) -> bool:
    """Whether ``predicate`` holds throughout the next ``seconds`` (for "nothing else happens")."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
def open_discovery() -> Iterator[Callable[[str], DnsDiscovery]]:
    opened: list[DnsDiscovery] = []

    def open_(url: str) -> DnsDiscovery:
        discovery = create_discovery(url)
        assert isinstance(discovery, DnsDiscovery)
        opened.append(discovery)
        return discovery

    yield open_
    for discovery in opened:
        discovery.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("dubbok-dns:")]


def dns_logs(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and text in r.getMessage()
    ]


def pods(*last_octets: int, port: int = 50051) -> list[str]:
    return [f"127.0.0.{n}:{port}" for n in last_octets]


# --- A records ------------------------------------------------------------------------------


def test_pods_come_and_go_within_the_ttl(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    dns_server.set_a(NAME, ["127.0.0.3", "127.0.0.2"], ttl=1)
    discovery = open_discovery(dns_server.url(NAME, 50051, min_ttl=0.1, max_ttl=5))
    recorder = Recorder()
    discovery.subscribe("dubbok.testing.v1.Echo", recorder)
    assert recorder.latest == pods(2, 3)  # delivered before subscribe returned, sorted

    # Within one TTL (1 s), plus slack for a busy machine.
    dns_server.set_a(NAME, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], ttl=1)
    recorder.wait_for(lambda s: s == pods(2, 3, 4), timeout=2.5)
    dns_server.set_a(NAME, ["127.0.0.3", "127.0.0.4"], ttl=1)
    recorder.wait_for(lambda s: s == pods(3, 4), timeout=2.5)
    assert len(recorder.sets) == 3

    # Unchanged answers are not delivered again.
    asked = dns_server.query_count(NAME, "A")
    wait_until(lambda: dns_server.query_count(NAME, "A") > asked, 5, "another lookup")
    assert len(recorder.sets) == 3
    assert discovery.state == "ok"
    assert [e.address for e in discovery.endpoints] == pods(3, 4)


def test_aaaa_records_join_the_set(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    dns_server.set_a(NAME, ["127.0.0.2"])
    dns_server.set_aaaa(NAME, ["::1"])
    recorder = Recorder()
    open_discovery(dns_server.url(NAME, 50051)).subscribe("svc", recorder)
    assert recorder.latest == ["127.0.0.2:50051", "[::1]:50051"]

    only_v4 = Recorder()
    open_discovery(dns_server.url(NAME, 50051, family="ipv4")).subscribe("svc", only_v4)
    assert only_v4.latest == ["127.0.0.2:50051"]


def test_many_pods_arrive_over_tcp_when_udp_is_too_small(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    ips = [f"127.0.{i // 250}.{i % 250 + 2}" for i in range(300)]
    dns_server.set_a(NAME, ips)
    recorder = Recorder()
    open_discovery(dns_server.url(NAME, 50051)).subscribe("svc", recorder)
    recorder.wait_for(lambda s: len(s) == 300)


def test_subscriptions_share_one_lookup_thread(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    dns_server.set_a(NAME, ["127.0.0.2"], ttl=60)
    discovery = open_discovery(dns_server.url(NAME, 50051))
    first, second = Recorder(), Recorder()
    sub1 = discovery.subscribe("helloworld.Greeter", first)
    assert isinstance(sub1, Subscription)
    sub2 = discovery.subscribe("grpc.health.v1.Health", second)
    assert first.latest == second.latest == pods(2)
    assert dns_server.query_count(NAME, "A") == 1  # the second subscription asked nothing
    threads = [t for t in threading.enumerate() if t.name.startswith("dubbok-dns:")]
    assert [t.name for t in threads] == [f"dubbok-dns:{NAME}:50051"]
    assert threads[0].daemon

    sub1.cancel()
    sub1.cancel()  # idempotent
    assert threads[0].is_alive()  # still serving sub2
    sub2.cancel()
    wait_until(lambda: not threads[0].is_alive(), 2, "the lookup thread to stop")

    again = Recorder()
    discovery.subscribe("helloworld.Greeter", again)  # starts a fresh lookup
    assert again.latest == pods(2)
    assert dns_server.query_count(NAME, "A") == 2


# --- SRV records ----------------------------------------------------------------------------


@pytest.mark.parametrize("additional", [True, False], ids=["glue", "no-glue"])
def test_srv_records_give_ports_and_weights(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery], additional: bool
) -> None:
    dns_server.additional = additional
    dns_server.set_srv(
        SRV_NAME,
        [
            (0, 60, 50051, f"pod-a.{NAME}"),
            (0, 0, 50052, f"pod-b.{NAME}"),
            (10, 30, 50053, f"pod-c.{NAME}"),
            (0, 10, 50054, f"gone.{NAME}"),  # no address record: skipped
        ],
    )
    dns_server.set_a(f"pod-a.{NAME}", ["127.0.0.2"])
    dns_server.set_a(f"pod-b.{NAME}", ["127.0.0.3"])
    dns_server.set_a(f"pod-c.{NAME}", ["127.0.0.4"])
    recorder = Recorder()
    open_discovery(dns_server.url(SRV_NAME)).subscribe("svc", recorder)

    (endpoints,) = recorder.sets
    assert [(e.address, e.weight, e.tags["dns.priority"]) for e in endpoints] == [
        ("127.0.0.2:50051", 60, "0"),
        ("127.0.0.3:50052", 1, "0"),  # SRV weight 0 → 1: rarely picked, never starved
        ("127.0.0.4:50053", 30, "10"),
    ]
    assert endpoints[0].tags["dns.target"] == f"pod-a.{NAME}"
    asked_for_targets = dns_server.query_count(f"pod-a.{NAME}")
    assert asked_for_targets == (0 if additional else 2)  # glue saves the A/AAAA questions


def test_srv_port_changes_are_picked_up(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    dns_server.set_srv(SRV_NAME, [(0, 10, 50051, f"pod-a.{NAME}")], ttl=0)
    dns_server.set_a(f"pod-a.{NAME}", ["127.0.0.2"], ttl=0)
    recorder = Recorder()
    open_discovery(dns_server.url(SRV_NAME, min_ttl=0.1)).subscribe("svc", recorder)
    assert recorder.latest == pods(2)
    dns_server.set_srv(SRV_NAME, [(0, 10, 50061, f"pod-a.{NAME}")], ttl=0)
    recorder.wait_for(lambda s: s == pods(2, port=50061), timeout=2)


# --- failures -------------------------------------------------------------------------------


def test_failures_keep_the_last_set_and_log_once_per_change_of_state(
    dns_server: DnsServer,
    open_discovery: Callable[[str], DnsDiscovery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    dns_server.set_a(NAME, ["127.0.0.2", "127.0.0.3"], ttl=0)
    discovery = open_discovery(dns_server.url(NAME, 50051, min_ttl=0.05, max_ttl=0.1, timeout=1))
    recorder = Recorder()
    discovery.subscribe("svc", recorder)
    good = recorder.latest
    assert good == pods(2, 3)

    def several_lookups() -> None:
        asked = dns_server.query_count(NAME, "A")
        wait_until(lambda: dns_server.query_count(NAME, "A") >= asked + 3, 5, "3 lookups")

    transitions: list[tuple[str, Callable[[], None]]] = [
        ("nxdomain", lambda: dns_server.fail(NAME, "nxdomain")),  # no ready pod
        ("ok", lambda: dns_server.heal(NAME)),
        ("servfail", lambda: dns_server.fail(NAME, "servfail")),
        ("timeout", lambda: dns_server.fail(NAME, "timeout")),
        ("ok", lambda: dns_server.heal(NAME)),
        ("empty", lambda: dns_server.set_a(NAME, [], ttl=0)),  # name exists, no address
        ("nxdomain", lambda: dns_server.remove(NAME)),
    ]
    previous = "ok"
    for state, make_it_so in transitions:
        make_it_so()
        arrow = f"({previous} → {state})"
        level = logging.INFO if state == "ok" else logging.WARNING
        wait_until(lambda a=arrow, lv=level: bool(dns_logs(caplog, lv, a)), 5, arrow)  # type: ignore[misc]
        several_lookups()
        assert discovery.state == state
        assert len(dns_logs(caplog, level, arrow)) == 1, caplog.text
        assert recorder.sets[-1] == recorder.sets[0]  # the last good set stands
        assert [e.address for e in discovery.endpoints] == good
        previous = state

    assert len(recorder.sets) == 1  # never an empty set, never a repeat
    (warning,) = dns_logs(caplog, logging.WARNING, "(ok → nxdomain)")
    assert "does not exist (NXDOMAIN)" in warning
    assert "keeping the last 2 endpoints" in warning

    dns_server.set_a(NAME, ["127.0.0.4"], ttl=0)
    recorder.wait_for(lambda s: s == pods(4), timeout=2)


def test_first_lookup_failing_delivers_nothing_and_retries_in_the_background(
    dns_server: DnsServer,
    open_discovery: Callable[[str], DnsDiscovery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    dns_server.fail(NAME, "timeout")
    discovery = open_discovery(dns_server.url(NAME, 50051, min_ttl=0.1, max_ttl=0.4, timeout=0.2))
    recorder = Recorder()
    started = time.monotonic()
    discovery.subscribe("svc", recorder)  # must not raise
    assert time.monotonic() - started < 1.0  # bounded by the timeout
    assert recorder.sets == []
    # subscribe waits a bounded time for the first answer; on a loaded machine the lookup
    # may still be timing out when it returns.
    wait_until(lambda: discovery.state == "timeout", 5, "state timeout")
    wait_until(lambda: bool(dns_logs(caplog, logging.WARNING, "(start → timeout)")), 5, "log")
    (warning,) = dns_logs(caplog, logging.WARNING, "(start → timeout)")
    assert "no endpoints known yet" in warning

    # Background retries back off from min_ttl to max_ttl, then find the pods once DNS heals.
    wait_until(lambda: dns_server.query_count(NAME, "A") >= 4, 5, "retries")
    times = dns_server.query_times(NAME, "A")
    assert times[-1] - times[0] >= 0.3  # backing off, not hammering
    dns_server.set_a(NAME, ["127.0.0.2"], ttl=1)
    dns_server.heal(NAME)
    recorder.wait_for(lambda s: s == pods(2), timeout=2)
    assert len(dns_logs(caplog, logging.INFO, "(timeout → ok)")) == 1


def test_an_unreachable_nameserver_is_not_an_error_at_subscribe(
    open_discovery: Callable[[str], DnsDiscovery],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"dns:///{NAME}:50051?nameserver=127.0.0.1:{port}&timeout=0.2&min_ttl=0.1"
    discovery = open_discovery(url)
    recorder = Recorder()
    discovery.subscribe("svc", recorder)
    assert recorder.sets == []
    assert discovery.state in ("timeout", "error")


# --- schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "min_ttl", "max_ttl", "period"),
    [
        (1, 0.1, 5, 1.0),  # the TTL, inside the bounds
        (0, 0.3, 5, 0.3),  # TTL 0: the floor
        (3600, 0.1, 0.4, 0.4),  # an hour: the ceiling
    ],
    ids=["ttl", "floor", "ceiling"],
)
def test_re_resolution_follows_the_ttl_clamped_by_floor_and_ceiling(
    dns_server: DnsServer,
    open_discovery: Callable[[str], DnsDiscovery],
    ttl: int,
    min_ttl: float,
    max_ttl: float,
    period: float,
) -> None:
    dns_server.set_a(NAME, ["127.0.0.2"], ttl=ttl)
    url = dns_server.url(NAME, 50051, min_ttl=min_ttl, max_ttl=max_ttl)
    open_discovery(url).subscribe("svc", Recorder())
    wait_until(lambda: dns_server.query_count(NAME, "A") >= 4, period * 3 + 2, "4 lookups")
    times = dns_server.query_times(NAME, "A")[:4]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # The lower bound is the point (floor, TTL, ceiling honoured); the upper one allows for a
    # busy machine.
    assert all(period - 0.02 <= gap <= period + 0.4 for gap in gaps), gaps


def test_refresh_looks_again_at_once_but_at_most_once_per_min_ttl(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    dns_server.set_a(NAME, ["127.0.0.2"], ttl=60)
    min_ttl = 0.5
    discovery = open_discovery(dns_server.url(NAME, 50051, min_ttl=min_ttl, max_ttl=60))
    recorder = Recorder()
    sub = discovery.subscribe("svc", recorder)

    def count() -> int:
        return dns_server.query_count(NAME, "A")

    assert count() == 1
    # Right after a lookup: the refresh waits out min_ttl, and a storm of them costs one lookup.
    for _ in range(50):
        sub.refresh()
    wait_until(lambda: count() == 2, 2, "the refreshed lookup")
    first, second = dns_server.query_times(NAME, "A")
    assert min_ttl - 0.02 <= second - first <= min_ttl + 0.4
    assert stays(lambda: count() == 2, min_ttl + 0.1)  # TTL 60: nothing else is due

    # Long enough after the last lookup: the refresh is immediate.
    asked = time.monotonic()
    dns_server.set_a(NAME, ["127.0.0.2", "127.0.0.5"], ttl=60)
    sub.refresh()
    recorder.wait_for(lambda s: s == pods(2, 5), timeout=2)
    assert time.monotonic() - asked < min_ttl  # not deferred: the last lookup is old enough
    assert count() == 3

    sub.cancel()
    sub.refresh()  # harmless after cancel


# --- lifecycle ------------------------------------------------------------------------------


def test_close_stops_the_thread_promptly(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    dns_server.set_a(NAME, ["127.0.0.2"], ttl=60)
    discovery = open_discovery(dns_server.url(NAME, 50051))
    discovery.subscribe("svc", Recorder())
    (thread,) = [t for t in threading.enumerate() if t.name.startswith("dubbok-dns:")]
    started = time.monotonic()
    discovery.close()
    assert time.monotonic() - started < 0.5  # woken by an event, not a 60 s sleep
    assert not thread.is_alive()
    discovery.close()  # idempotent
    with pytest.raises(DubbokError, match="is closed"):
        discovery.subscribe("svc", Recorder())


def test_close_from_inside_a_listener_does_not_deadlock(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    dns_server.set_a(NAME, ["127.0.0.2"], ttl=0)
    discovery = open_discovery(dns_server.url(NAME, 50051, min_ttl=0.05))
    closed = threading.Event()
    subscriptions: list[DnsSubscription] = []

    def listener(endpoints: Sequence[Endpoint]) -> None:
        if len(endpoints) == 2:
            subscriptions[0].cancel()  # the last subscription, from the lookup thread
            closed.set()

    subscriptions.append(discovery.subscribe("svc", listener))
    dns_server.set_a(NAME, ["127.0.0.2", "127.0.0.3"], ttl=0)
    assert closed.wait(2)
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("dubbok-dns:")],
        2,
        "the lookup thread to end",
    )


def test_a_listener_that_raises_is_logged_and_the_thread_carries_on(
    dns_server: DnsServer,
    open_discovery: Callable[[str], DnsDiscovery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns_server.set_a(NAME, ["127.0.0.2"], ttl=0)
    discovery = open_discovery(dns_server.url(NAME, 50051, min_ttl=0.05))
    recorder = Recorder()
    calls = 0

    def flaky(endpoints: Sequence[Endpoint]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("listener bug")

    discovery.subscribe("helloworld.Greeter", flaky)
    discovery.subscribe("other", recorder)
    dns_server.set_a(NAME, ["127.0.0.2", "127.0.0.3"], ttl=0)
    recorder.wait_for(lambda s: s == pods(2, 3), timeout=2)
    assert calls == 2
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "helloworld.Greeter raised" in errors[0].getMessage()
    assert errors[0].exc_info is not None


# --- real traffic ---------------------------------------------------------------------------


class _Echo(echo_pb2_grpc.EchoServicer):
    def __init__(self) -> None:
        self.name = ""

    def Echo(self, request: Any, context: Any) -> Any:
        return echo_pb2.EchoReply(text=request.text, served_by=self.name)


def _serve(address: str) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = _Echo()
    echo_pb2_grpc.add_EchoServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(address)
    servicer.name = f"{address.rpartition(':')[0]}:{port}"
    server.start()
    return server, port


def test_calls_reach_every_pod_including_new_ones(
    dns_server: DnsServer, open_discovery: Callable[[str], DnsDiscovery]
) -> None:
    servers: list[grpc.Server] = []
    try:
        first, port = _serve("127.0.0.2:0")
        servers.append(first)
        for ip in ("127.0.0.3", "127.0.0.4"):
            server, bound = _serve(f"{ip}:{port}")
            assert bound == port, f"{ip}:{port} is taken"
            servers.append(server)

        dns_server.set_a(NAME, ["127.0.0.2", "127.0.0.3"], ttl=1)
        discovery = open_discovery(dns_server.url(NAME, port, min_ttl=0.1, max_ttl=5))
        recorder = Recorder()
        discovery.subscribe("dubbok.testing.v1.Echo", recorder)
        assert recorder.latest == pods(2, 3, port=port)
        assert _served_by(recorder.latest) == recorder.latest

        dns_server.set_a(NAME, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], ttl=1)  # scale up
        recorder.wait_for(lambda s: len(s) == 3, timeout=3)
        assert _served_by(recorder.latest) == pods(2, 3, 4, port=port)
    finally:
        for server in servers:
            server.stop(None)


def _served_by(addresses: list[str]) -> list[str]:
    replies = []
    for address in addresses:
        with grpc.insecure_channel(address) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)  # type: ignore[no-untyped-call]
            reply = stub.Echo(echo_pb2.EchoRequest(text="hi"), timeout=5)
            replies.append(reply.served_by)
    return replies
