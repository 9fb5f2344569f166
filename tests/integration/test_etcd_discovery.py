"""EtcdDiscovery against a real etcd: pushes, shared watches, and every way etcd fails."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from dubbok.discovery import Discovery, DiscoveryOptions, Subscription, create_discovery
from dubbok.endpoint import Endpoint
from dubbok.errors import RegistryError
from dubbok.registry import RegistryOptions, create_registry
from dubbok.registry._client import ConnectionSettings, EtcdClient, RevisionCompactedError
from dubbok.registry.etcd import EtcdDiscovery, EtcdRegistry
from dubbok.registry.record import encode_provider, provider_key
from dubbok.testing.etcd import EtcdServer

pytestmark = pytest.mark.etcd

SERVICE = "helloworld.Greeter"
OTHER = "dubbok.testing.v1.Echo"
A = Endpoint("127.0.0.1", 50051)
B = Endpoint("127.0.0.1", 50052)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)
    return time.monotonic() - started


class Recorder:
    """A listener that keeps every set it was given (as sorted address lists)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sets: list[list[str]] = []
        self.endpoints: tuple[Endpoint, ...] = ()

    def __call__(self, endpoints: Sequence[Endpoint]) -> None:
        with self.lock:
            self.endpoints = tuple(endpoints)
            self.sets.append(sorted(e.address for e in endpoints))

    @property
    def last(self) -> list[str] | None:
        with self.lock:
            return self.sets[-1] if self.sets else None

    def saw(self, *addresses: str) -> Callable[[], bool]:
        return lambda: self.last == sorted(addresses)


@pytest.fixture
def registry(etcd_server: EtcdServer) -> Iterator[EtcdRegistry]:
    reg = create_registry(f"{etcd_server.url}/?lease_ttl=2", RegistryOptions(app="shop"))
    assert isinstance(reg, EtcdRegistry)
    yield reg
    reg.close()


@pytest.fixture
def open_discovery(etcd_server: EtcdServer) -> Iterator[Callable[..., EtcdDiscovery]]:
    opened: list[EtcdDiscovery] = []

    def factory(query: str = "", options: DiscoveryOptions | None = None) -> EtcdDiscovery:
        disc = create_discovery(f"{etcd_server.url}/?{query}", options)
        assert isinstance(disc, EtcdDiscovery)
        opened.append(disc)
        return disc

    yield factory
    for disc in opened:
        disc.close()


def test_subscribers_get_the_set_now_and_on_every_change(
    registry: EtcdRegistry, open_discovery: Callable[..., EtcdDiscovery]
) -> None:
    registry.register(
        SERVICE,
        Endpoint(
            "127.0.0.1",
            50051,
            weight=20,
            version="1.2",
            group="blue",
            tags={"zone": "a"},
            methods={"SayHello": {"idempotent": True}},
            started_at=1700000000.0,
        ),
    )
    seen = Recorder()
    disc = open_discovery()
    subscription = disc.subscribe(SERVICE, seen)
    assert isinstance(disc, Discovery)
    assert isinstance(subscription, Subscription)
    assert seen.sets == [["127.0.0.1:50051"]]  # delivered inside subscribe
    (ep,) = seen.endpoints
    assert (ep.weight, ep.version, ep.group, ep.app) == (20, "1.2", "blue", "shop")
    assert dict(ep.tags) == {"zone": "a"}
    assert dict(ep.methods["SayHello"]) == {"idempotent": True}
    assert ep.started_at == 1700000000.0

    registry.register(SERVICE, B)
    wait_until(seen.saw("127.0.0.1:50051", "127.0.0.1:50052"))
    registry.unregister(SERVICE, B)
    wait_until(seen.saw("127.0.0.1:50051"))


def test_one_watch_per_service_shared_by_subscribers(
    registry: EtcdRegistry, open_discovery: Callable[..., EtcdDiscovery]
) -> None:
    disc = open_discovery()
    first, second, other = Recorder(), Recorder(), Recorder()
    sub1 = disc.subscribe(SERVICE, first)
    sub2 = disc.subscribe(SERVICE, second)
    disc.subscribe(OTHER, other)
    assert disc.services == {SERVICE, OTHER}
    watch_threads = [t for t in threading.enumerate() if t.name == f"dubbok-etcd-watch-{SERVICE}"]
    assert len(watch_threads) == 1

    registry.register(SERVICE, A)
    wait_until(first.saw(A.address))
    wait_until(second.saw(A.address))
    assert other.sets == [[]]  # a service nobody changed is not disturbed

    sub1.cancel()
    registry.register(SERVICE, B)
    wait_until(second.saw(A.address, B.address))
    assert first.last == [A.address]
    sub2.cancel()
    sub2.cancel()
    assert disc.services == {OTHER}
    wait_until(lambda: not any(t is watch_threads[0] for t in threading.enumerate()))


def test_a_burst_of_changes_reaches_the_listener_in_few_calls(
    etcd_server: EtcdServer, open_discovery: Callable[..., EtcdDiscovery]
) -> None:
    seen = Recorder()
    open_discovery().subscribe(SERVICE, seen)
    client = EtcdClient(ConnectionSettings((etcd_server.endpoint,)))
    try:
        for port in range(40000, 40100):
            ep = Endpoint("127.0.0.1", port)
            client.put(
                provider_key("default", SERVICE, ep.address),
                encode_provider(ep, pid=1, started_at=0.0),
            )
    finally:
        client.close()
    wait_until(lambda: seen.last is not None and len(seen.last) == 100)
    assert len(seen.sets) - 1 < 25  # 100 single puts, coalesced


def test_the_watch_comes_back_after_an_etcd_restart(
    etcd_server: EtcdServer,
    registry: EtcdRegistry,
    open_discovery: Callable[..., EtcdDiscovery],
) -> None:
    registry.register(SERVICE, A)
    seen = Recorder()
    open_discovery().subscribe(SERVICE, seen)
    etcd_server.kill()
    etcd_server.start()
    registry.register(SERVICE, B)
    took = wait_until(seen.saw(A.address, B.address), what="the change after the restart")
    assert took < 5
    registry.unregister(SERVICE, B)
    wait_until(seen.saw(A.address))
    assert [] not in seen.sets


def test_while_etcd_is_down_subscribers_keep_the_last_set(
    etcd_server: EtcdServer,
    registry: EtcdRegistry,
    open_discovery: Callable[..., EtcdDiscovery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.register(SERVICE, A)
    registry.register(SERVICE, B)
    seen = Recorder()
    open_discovery("timeout=0.2").subscribe(SERVICE, seen)
    with caplog.at_level(logging.DEBUG, logger="dubbok.registry"):
        etcd_server.stop()
        # Several failed re-lists, then etcd comes back.
        wait_until(lambda: caplog.text.count("cannot re-list") >= 1, what="a failed re-list")
    assert seen.sets == [[A.address, B.address]]  # nothing delivered because of the outage
    etcd_server.start()
    # The registry's lease survived the short outage, so its records are still there.
    registry.unregister(SERVICE, B)
    wait_until(seen.saw(A.address), what="convergence after the outage")
    assert [] not in seen.sets


def test_compacted_history_does_not_stop_convergence(
    etcd_server: EtcdServer,
    registry: EtcdRegistry,
    open_discovery: Callable[..., EtcdDiscovery],
) -> None:
    registry.register(SERVICE, A)
    seen = Recorder()
    open_discovery().subscribe(SERVICE, seen)
    stale_revision = etcd_server.revision
    etcd_server.kill()
    etcd_server.start()
    for port in range(50060, 50070):
        registry.register(SERVICE, Endpoint("127.0.0.1", port))
    registry.unregister(SERVICE, A)
    etcd_server.compact()
    wait_until(lambda: seen.last is not None and len(seen.last) == 10, what="convergence")

    # A watch from before the compaction is ended at once with a clear error.
    client = EtcdClient(ConnectionSettings((etcd_server.endpoint,)))
    ended: list[object] = []
    try:
        handle = client.watch_prefix(
            "/dubbok/", ended.append, start_revision=stale_revision, name="test-watch"
        )
        wait_until(lambda: bool(ended), what="the compaction error")
        handle.cancel()
    finally:
        client.close()
    (error,) = ended
    assert isinstance(error, RevisionCompactedError)
    assert "is compacted" in error.message
    assert error.compact_revision > stale_revision


def test_corrupt_records_are_skipped_with_a_warning_naming_the_key(
    etcd_server: EtcdServer,
    registry: EtcdRegistry,
    open_discovery: Callable[..., EtcdDiscovery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"/dubbok/default/services/{SERVICE}/providers/"
    registry.register(SERVICE, A)
    etcd_server.put(f"{prefix}127.0.0.1:1", "not json")
    etcd_server.put(f"{prefix}127.0.0.1:2", json.dumps({"host": "127.0.0.1"}))
    etcd_server.put(f"{prefix}127.0.0.1:99999", json.dumps({"host": "127.0.0.1", "port": 99999}))
    seen = Recorder()
    with caplog.at_level(logging.WARNING, logger="dubbok.registry"):
        open_discovery().subscribe(SERVICE, seen)
    assert seen.sets == [[A.address]]
    for key, problem in [
        ("127.0.0.1:1", "value is not JSON"),
        ("127.0.0.1:2", "missing field 'port'"),
        ("127.0.0.1:99999", "port 99999 is not in 1..65535"),
    ]:
        assert f"corrupt registry record at '{prefix}{key}': {problem}" in caplog.text

    # A corrupt update of a good record keeps the good one.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dubbok.registry"):
        etcd_server.put(f"{prefix}{A.address}", "{broken")
        registry.register(SERVICE, B)
        wait_until(seen.saw(A.address, B.address))
    assert f"'{prefix}{A.address}'" in caplog.text
    registry.register(SERVICE, Endpoint("127.0.0.1", 50051, weight=7))
    wait_until(lambda: any(e.weight == 7 for e in seen.endpoints), what="the repaired record")


def test_namespaces_are_isolated(
    etcd_server: EtcdServer, open_discovery: Callable[..., EtcdDiscovery]
) -> None:
    shop = create_registry(f"{etcd_server.url}/?namespace=shop&lease_ttl=2")
    try:
        shop.register(SERVICE, A)
        in_shop, in_default, by_option = Recorder(), Recorder(), Recorder()
        open_discovery("namespace=shop").subscribe(SERVICE, in_shop)
        open_discovery().subscribe(SERVICE, in_default)
        open_discovery(options=DiscoveryOptions(namespace="shop")).subscribe(SERVICE, by_option)
        assert in_shop.sets == [[A.address]]
        assert by_option.sets == [[A.address]]
        assert in_default.sets == [[]]
        shop.register(SERVICE, B)
        wait_until(in_shop.saw(A.address, B.address))
        assert in_default.sets == [[]]
        assert set(etcd_server.get_prefix("/dubbok/")) == {
            f"/dubbok/shop/services/{SERVICE}/providers/{A.address}",
            f"/dubbok/shop/services/{SERVICE}/providers/{B.address}",
        }
    finally:
        shop.close()


def test_an_update_that_empties_a_service_is_held_then_released(
    registry: EtcdRegistry,
    open_discovery: Callable[..., EtcdDiscovery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.register(SERVICE, A)
    disc = open_discovery("empty_protection_seconds=1")
    seen = Recorder()
    disc.subscribe(SERVICE, seen)
    with caplog.at_level(logging.WARNING, logger="dubbok.registry"):
        registry.unregister(SERVICE, A)
        wait_until(lambda: SERVICE in disc.held_services, what="the hold")
        assert seen.last == [A.address]
        assert "empty-push protection" in caplog.text
        released = wait_until(seen.saw(), what="the release")
    assert released < 2.5
    assert disc.held_services == {}

    # Providers coming back during a hold lift it at once.
    registry.register(SERVICE, B)
    wait_until(seen.saw(B.address))
    held = open_discovery("empty_protection_seconds=60")
    seen_held = Recorder()
    held.subscribe(SERVICE, seen_held)
    registry.unregister(SERVICE, B)
    wait_until(lambda: SERVICE in held.held_services)
    registry.register(SERVICE, A)
    wait_until(seen_held.saw(A.address))
    assert held.held_services == {}
    assert [] not in seen_held.sets


def test_empty_protection_can_be_switched_off(
    registry: EtcdRegistry, open_discovery: Callable[..., EtcdDiscovery]
) -> None:
    registry.register(SERVICE, A)
    disc = open_discovery("empty_protection=off")
    seen = Recorder()
    disc.subscribe(SERVICE, seen)
    registry.unregister(SERVICE, A)
    wait_until(seen.saw())
    assert disc.held_services == {}


def test_snapshot_is_written_and_used_when_etcd_is_down_at_start(
    etcd_server: EtcdServer,
    registry: EtcdRegistry,
    open_discovery: Callable[..., EtcdDiscovery],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.register(SERVICE, Endpoint("127.0.0.1", 50051, weight=30, tags={"zone": "a"}))
    first = open_discovery(f"snapshot_dir={tmp_path}")
    first.subscribe(SERVICE, Recorder())
    path = tmp_path / "default" / f"{SERVICE}.json"
    document = json.loads(path.read_text())
    assert list(document["providers"]) == [A.address]
    registry.register(SERVICE, B)
    wait_until(lambda: B.address in json.loads(path.read_text())["providers"], what="rewrite")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left
    first.close()

    etcd_server.stop()
    seen = Recorder()
    with caplog.at_level(logging.WARNING, logger="dubbok.registry"):
        later = open_discovery("timeout=0.2", options=DiscoveryOptions(snapshot_dir=tmp_path))
        later.subscribe(SERVICE, seen)
    assert seen.sets == [[A.address, B.address]]
    assert {e.address: e.weight for e in seen.endpoints}[A.address] == 30
    assert "starting helloworld.Greeter from the snapshot" in caplog.text
    assert "s ago" in caplog.text

    etcd_server.start()
    registry.unregister(SERVICE, B)
    wait_until(seen.saw(A.address), what="etcd taking over from the snapshot")


def test_no_etcd_and_no_snapshot_is_a_clear_error(
    etcd_server: EtcdServer, open_discovery: Callable[..., EtcdDiscovery], tmp_path: Path
) -> None:
    etcd_server.stop()
    disc = open_discovery(f"timeout=0.2&snapshot_dir={tmp_path}")
    with pytest.raises(RegistryError) as info:
        disc.subscribe(SERVICE, Recorder())
    message = str(info.value)
    assert f"cannot discover {SERVICE} in namespace 'default'" in message
    assert etcd_server.endpoint in message
    assert "no snapshot at" in message
    assert disc.services == frozenset()
    with pytest.raises(RegistryError, match="no snapshot_dir is configured"):
        open_discovery("timeout=0.2").subscribe(SERVICE, Recorder())


def test_every_endpoint_of_the_url_is_used(etcd_server: EtcdServer, registry: EtcdRegistry) -> None:
    with EtcdServer() as dead:
        dead_endpoint = dead.endpoint
    registry.register(SERVICE, A)
    for hosts in (
        f"{dead_endpoint},{etcd_server.endpoint}",
        f"{etcd_server.endpoint},{dead_endpoint}",
    ):
        disc = create_discovery(f"etcd://{hosts}/?timeout=1")
        try:
            seen = Recorder()
            disc.subscribe(SERVICE, seen)
            assert seen.sets == [[A.address]]
            registry.register(SERVICE, B)
            wait_until(seen.saw(A.address, B.address))
            registry.unregister(SERVICE, B)
            wait_until(seen.saw(A.address))
        finally:
            disc.close()


def test_a_listener_that_raises_does_not_stop_the_others(
    registry: EtcdRegistry,
    open_discovery: Callable[..., EtcdDiscovery],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(endpoints: Sequence[Endpoint]) -> None:
        raise RuntimeError("listener bug")

    disc = open_discovery()
    seen = Recorder()
    with caplog.at_level(logging.ERROR, logger="dubbok.registry"):
        disc.subscribe(SERVICE, broken)
        disc.subscribe(SERVICE, seen)
        registry.register(SERVICE, A)
        wait_until(seen.saw(A.address))
    assert "a listener of helloworld.Greeter raised" in caplog.text
    subscription = disc.subscribe(SERVICE, Recorder())
    subscription.refresh()  # a hint only; must not raise or block
