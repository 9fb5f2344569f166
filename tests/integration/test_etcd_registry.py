"""EtcdRegistry against a real etcd: records, the process lease, and etcd failures."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from dubbok.discovery import DiscoveryOptions, create_discovery
from dubbok.endpoint import Endpoint
from dubbok.errors import ConfigurationError, InvalidURLError, RegistryError
from dubbok.registry import ConsumerInfo, Registry, RegistryOptions, create_registry
from dubbok.registry._client import (
    ConnectionSettings,
    EtcdClient,
    compare_and_swap,
    get_one,
    list_keys,
)
from dubbok.registry.etcd import EtcdDiscovery, EtcdRegistry
from dubbok.testing.etcd import EtcdServer
from dubbok.url import parse_url

pytestmark = pytest.mark.etcd

SERVICE = "helloworld.Greeter"
PREFIX = f"/dubbok/default/services/{SERVICE}/providers/"
CHILD = "127.0.0.1:50099"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> float:
    """Poll ``predicate`` until true; return the seconds it took, fail after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)
    return time.monotonic() - started


def registry(server: EtcdServer, ttl: float = 1, query: str = "") -> EtcdRegistry:
    reg = create_registry(
        f"{server.url}/?lease_ttl={ttl}{query}", RegistryOptions(app="shop", lease_ttl=10)
    )
    assert isinstance(reg, EtcdRegistry)
    return reg


@pytest.fixture
def client(etcd_server: EtcdServer) -> Iterator[EtcdClient]:
    c = EtcdClient(ConnectionSettings((etcd_server.endpoint,)))
    yield c
    c.close()


class Recorder:
    """A discovery listener that keeps every set it was given."""

    def __init__(self) -> None:
        self.sets: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, endpoints: Sequence[Endpoint]) -> None:
        with self.lock:
            self.sets.append(sorted(e.address for e in endpoints))

    @property
    def last(self) -> list[str] | None:
        with self.lock:
            return self.sets[-1] if self.sets else None


def test_register_writes_every_record_on_one_lease(
    etcd_server: EtcdServer, client: EtcdClient
) -> None:
    reg = registry(etcd_server, ttl=5)
    assert isinstance(reg, Registry)
    try:
        reg.register(
            SERVICE,
            Endpoint("127.0.0.1", 50051, weight=20, version="1.2", tags={"zone": "a"}),
        )
        reg.register("dubbok.testing.v1.Echo", Endpoint("127.0.0.1", 50051))
        reg.register_consumer(SERVICE, ConsumerInfo(app="web", host="127.0.0.1", pid=7))

        record = json.loads(etcd_server.get_prefix(PREFIX)[f"{PREFIX}127.0.0.1:50051"])
        assert record["app"] == "shop"  # filled in from RegistryOptions
        assert (record["weight"], record["version"], record["tags"]) == (20, "1.2", {"zone": "a"})
        assert record["pid"] == os.getpid()
        assert record["started_at"] > 0
        consumers = etcd_server.get_prefix(f"/dubbok/default/services/{SERVICE}/consumers/")
        assert list(consumers) == [f"/dubbok/default/services/{SERVICE}/consumers/web@127.0.0.1:7"]

        kvs, _ = client.get_prefix("/dubbok/")
        assert len(kvs) == 3
        assert {kv.lease for kv in kvs} == {reg.lease_id}
        assert reg.keys == {kv.key for kv in kvs}
    finally:
        reg.close()


def test_unregister_then_close_remove_every_record(etcd_server: EtcdServer) -> None:
    reg = registry(etcd_server)
    reg.register(SERVICE, Endpoint("127.0.0.1", 50051))
    reg.register(SERVICE, Endpoint("127.0.0.1", 50052))
    reg.register_consumer(SERVICE, ConsumerInfo(app="web", host="127.0.0.1", pid=7))
    reg.unregister(SERVICE, Endpoint("127.0.0.1", 50051))
    assert list(etcd_server.get_prefix(PREFIX)) == [f"{PREFIX}127.0.0.1:50052"]
    reg.close()
    assert etcd_server.get_prefix("/dubbok/") == {}  # lease revoked at once, not after the TTL
    reg.close()
    with pytest.raises(RegistryError, match="closed"):
        reg.register(SERVICE, Endpoint("127.0.0.1", 50051))


_PROVIDER = """
import sys
from dubbok.endpoint import Endpoint
from dubbok.registry import RegistryOptions, create_registry

registry = create_registry(sys.argv[1], RegistryOptions(app="doomed"))
registry.register(sys.argv[2], Endpoint.parse(sys.argv[3]))
print("registered", flush=True)
sys.stdin.read()
"""


def test_a_killed_provider_disappears_within_its_ttl(etcd_server: EtcdServer) -> None:
    survivor = registry(etcd_server, ttl=2)
    survivor.register(SERVICE, Endpoint("127.0.0.1", 50051))
    discovery = EtcdDiscovery.from_url(parse_url(etcd_server.url), DiscoveryOptions())
    seen = Recorder()
    discovery.subscribe(SERVICE, seen)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _PROVIDER,
            f"{etcd_server.url}/?lease_ttl=2",
            SERVICE,
            "127.0.0.1:50099",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"registered\n"
        wait_until(lambda: seen.last == ["127.0.0.1:50051", "127.0.0.1:50099"], what="child seen")
        child.kill()  # SIGKILL: no unregister, no revoke
        child.wait()
        gone = wait_until(lambda: seen.last == ["127.0.0.1:50051"], timeout=10, what="expiry")
        assert gone <= 2 + 1.5  # the TTL, plus etcd's expiry tick and our coalescing
        assert list(etcd_server.get_prefix(PREFIX)) == [f"{PREFIX}127.0.0.1:50051"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
        discovery.close()
        survivor.close()


def test_registrations_outlive_an_etcd_restart(etcd_server: EtcdServer) -> None:
    reg = registry(etcd_server, ttl=1)
    try:
        reg.register(SERVICE, Endpoint("127.0.0.1", 50051))
        lease = reg.lease_id
        etcd_server.kill()
        etcd_server.start()
        # Several TTLs after the restart the record is still there: the keep-alive
        # reconnected, and the lease was kept rather than re-granted.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert f"{PREFIX}127.0.0.1:50051" in etcd_server.get_prefix(PREFIX)
            time.sleep(0.1)
        assert (reg.lease_id, reg.lease_regrants) == (lease, 0)
        reg.register(SERVICE, Endpoint("127.0.0.1", 50052))
        assert len(etcd_server.get_prefix(PREFIX)) == 2
    finally:
        reg.close()


def test_a_wiped_etcd_gets_every_registration_back(etcd_server: EtcdServer) -> None:
    reg = registry(etcd_server, ttl=1)
    discovery = EtcdDiscovery.from_url(parse_url(etcd_server.url), DiscoveryOptions())
    seen = Recorder()
    try:
        endpoints = [Endpoint("127.0.0.1", 40000 + i) for i in range(250)]
        for ep in endpoints:
            reg.register(SERVICE, ep)
        reg.register_consumer(SERVICE, ConsumerInfo(app="web", host="127.0.0.1", pid=7))
        discovery.subscribe(SERVICE, seen)
        assert seen.last is not None and len(seen.last) == 250

        etcd_server.restart(wipe=True)
        recovered = wait_until(
            lambda: len(etcd_server.get_prefix("/dubbok/")) == 251, what="re-registration"
        )
        assert recovered < 3 * 1 + 2  # a few TTLs
        assert reg.lease_regrants == 1
        wait_until(lambda: seen.last is not None and len(seen.last) == 250, what="subscriber")
        # The subscriber never saw the providers vanish while etcd was empty (it may see
        # the re-registration arrive in its batches of 100).
        assert [] not in seen.sets
    finally:
        discovery.close()
        reg.close()


def test_register_while_etcd_is_down_says_what_to_check(etcd_server: EtcdServer) -> None:
    reg = registry(etcd_server, query="&timeout=0.3")
    try:
        etcd_server.stop()
        with pytest.raises(RegistryError) as info:
            reg.register(SERVICE, Endpoint("127.0.0.1", 50051))
        message = str(info.value)
        assert "register 127.0.0.1:50051 as a provider of helloworld.Greeter" in message
        assert etcd_server.endpoint in message
        assert "Check that etcd is running" in message
    finally:
        reg.close()


def test_an_unregister_that_failed_is_finished_when_etcd_returns(
    etcd_server: EtcdServer,
) -> None:
    reg = registry(etcd_server, ttl=5, query="&timeout=0.3")
    try:
        reg.register(SERVICE, Endpoint("127.0.0.1", 50051))
        reg.register(SERVICE, Endpoint("127.0.0.1", 50052))
        etcd_server.stop()
        with pytest.raises(RegistryError, match=r"cannot unregister 127\.0\.0\.1:50051"):
            reg.unregister(SERVICE, Endpoint("127.0.0.1", 50051))
        etcd_server.start()
        wait_until(
            lambda: list(etcd_server.get_prefix(PREFIX)) == [f"{PREFIX}127.0.0.1:50052"],
            what="the delayed delete",
        )
    finally:
        reg.close()


def test_authenticated_etcd_and_an_invalidated_token(
    etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    etcd_server.enable_auth("root", "s3cret")
    reg = create_registry(f"etcd://root:s3cret@{etcd_server.endpoint}/?lease_ttl=60")
    try:
        reg.register(SERVICE, Endpoint("127.0.0.1", 50051))
        # Turning auth off and on drops every token, as expiry would: the registry logs in
        # again on its own.
        etcd_server.disable_auth()
        etcd_server.enable_auth("root", "s3cret")
        with caplog.at_level(logging.INFO, logger="dubbok.registry"):
            reg.register(SERVICE, Endpoint("127.0.0.1", 50052))
        assert "rejected the auth token; logging in again" in caplog.text
        assert len(etcd_server.get_prefix(PREFIX)) == 2
    finally:
        reg.close()
    wrong = create_registry(f"etcd://root:nope@{etcd_server.endpoint}/")
    try:
        with pytest.raises(RegistryError, match="authentication failed"):
            wrong.register(SERVICE, Endpoint("127.0.0.1", 50051))
    finally:
        wrong.close()


def test_client_reads_and_compare_and_swap(etcd_server: EtcdServer, client: EtcdClient) -> None:
    assert get_one(client, "/c/a") == (None, 1)
    applied, revision, current = compare_and_swap(client, "/c/a", 0, [("/c/a", b"1")])
    assert (applied, current) == (True, None)
    kv, read_at = get_one(client, "/c/a")
    assert kv is not None and (kv.value, kv.mod_revision, read_at) == (b"1", revision, revision)
    # A stale expectation is refused and says what is there now.
    applied, _, current = compare_and_swap(client, "/c/a", 0, [("/c/a", b"2")])
    assert not applied and current is not None and current.value == b"1"
    applied, deleted_at, _ = compare_and_swap(
        client, "/c/a", revision, [("/c/h", b"old")], deletes=["/c/a"]
    )
    assert applied and deleted_at > revision
    assert list_keys(client, "/c/") == ([("/c/h", deleted_at)], deleted_at)
    with pytest.raises(ConfigurationError, match="at most 128"):
        compare_and_swap(client, "/c/a", 0, [(f"/c/{i}", b"") for i in range(200)])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to issue certs")
def test_tls_with_client_certificates() -> None:
    with EtcdServer(tls=True) as server:
        reg = create_registry(f"{server.url}/?lease_ttl=1&{server.tls_query}")
        discovery = create_discovery(f"{server.url}/?{server.tls_query}")
        try:
            seen = Recorder()
            discovery.subscribe(SERVICE, seen)
            reg.register(SERVICE, Endpoint("127.0.0.1", 50051))
            wait_until(lambda: seen.last == ["127.0.0.1:50051"], what="a TLS watch event")
        finally:
            discovery.close()
            reg.close()
        plaintext = create_registry(f"{server.url}/?timeout=0.3")
        try:
            with pytest.raises(RegistryError, match="UNAVAILABLE"):
                plaintext.register(SERVICE, Endpoint("127.0.0.1", 50051))
        finally:
            plaintext.close()


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("lease_ttl=abc", "lease_ttl='abc' is not a number"),
        ("lease_ttl=0.5", "lease_ttl must be at least 1"),
        ("timeout=0", "timeout must be at least"),
        ("namespace=a/b", "invalid namespace"),
        ("cert=/c.pem", "needs both 'cert' and 'key'"),
        ("user=root", "needs both a user and a password"),
    ],
)
def test_bad_url_parameters_are_refused(query: str, problem: str) -> None:
    with pytest.raises(InvalidURLError, match=problem):
        create_registry(f"etcd://127.0.0.1:2379/?{query}")


def test_passwords_stay_out_of_error_messages() -> None:
    for url in (
        "etcd://root:hunter2@127.0.0.1:2379/?lease_ttl=x",
        "etcd://127.0.0.1:2379/?user=root&password=hunter2&lease_ttl=x",
    ):
        with pytest.raises(InvalidURLError) as info:
            create_registry(url)
        assert "hunter2" not in str(info.value)
        assert "***" in str(info.value)


def test_a_missing_tls_file_is_named() -> None:
    with pytest.raises(ConfigurationError, match="cannot read etcd TLS CA file '/nonexistent"):
        create_registry("etcd://127.0.0.1:2379/?ca=/nonexistent/ca.pem")


def test_a_path_is_not_a_namespace() -> None:
    with pytest.raises(InvalidURLError, match=r"\?namespace=NAME"):
        create_registry("etcd://127.0.0.1:2379/shop")
