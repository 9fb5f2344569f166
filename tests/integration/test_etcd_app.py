"""Providers and consumers through the etcd registry, end to end, with etcd's outages."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import dubbok
from dubbok.testing import EchoServicer, Provider, serve_provider, wait_until
from dubbok.testing.etcd import EtcdServer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

SERVICE = "dubbok.testing.v1.Echo"


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    return wait_until(predicate, timeout)


def url(etcd: EtcdServer, namespace: str = "shop") -> str:
    return f"{etcd.url}/?namespace={namespace}"


@contextlib.contextmanager
def provider(etcd: EtcdServer, name: str, namespace: str = "shop") -> Iterator[Provider]:
    with serve_provider(
        EchoServicer(name), name=name, registry=url(etcd, namespace), drain=0.3, lease_ttl=2
    ) as p:
        yield p


class Load:
    """Calls in a loop on a thread until stopped; counts successes and failures."""

    def __init__(self, echo: Any) -> None:
        self.echo = echo
        self.ok: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.ok[self.echo.Echo(echo_pb2.EchoRequest()).served_by] += 1
            except dubbok.DubbokError as exc:
                self.errors.append(exc)
            threading.Event().wait(0.002)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_consumers_find_providers_through_etcd_and_see_them_come_and_go(
    etcd_server: EtcdServer,
) -> None:
    with provider(etcd_server, "p1"), dubbok.App("consumer", registry=url(etcd_server)) as app:
        echo = app.reference(echo_pb2_grpc.EchoStub)
        assert echo.Echo(echo_pb2.EchoRequest()).served_by == "p1"
        consumers = etcd_server.get_prefix(f"/dubbok/shop/services/{SERVICE}/consumers/")
        assert any("consumer@" in key for key in consumers)
        with Load(echo) as load:
            with provider(etcd_server, "p2"):
                assert poll(lambda: load.ok["p2"] > 0)
            # p2 stopped gracefully: unregistered first, then drained. No call failed.
            seen = load.ok["p2"]
            assert poll(lambda: load.ok["p1"] > 20)
        assert load.errors == []
        assert load.ok["p2"] == seen


def test_calls_keep_succeeding_while_etcd_is_down(etcd_server: EtcdServer) -> None:
    with provider(etcd_server, "p1"), dubbok.App("consumer", registry=url(etcd_server)) as app:
        echo = app.reference(echo_pb2_grpc.EchoStub)
        assert echo.Echo(echo_pb2.EchoRequest()).served_by == "p1"
        with Load(echo) as load:
            etcd_server.stop()
            before = sum(load.ok.values())
            assert poll(lambda: sum(load.ok.values()) > before + 100)
            etcd_server.start()
            with provider(etcd_server, "p2"):  # registered after etcd came back
                assert poll(lambda: load.ok["p2"] > 0, timeout=15)
        assert load.errors == []


def test_a_consumer_starts_from_its_snapshot_when_etcd_is_down(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    snapshots = tmp_path / "snap"
    with provider(etcd_server, "p1"):
        with dubbok.App("c1", registry=url(etcd_server), snapshot_dir=snapshots) as app:
            assert app.reference(echo_pb2_grpc.EchoStub).Echo(echo_pb2.EchoRequest())
        etcd_server.stop()
        with dubbok.App("c2", registry=url(etcd_server), snapshot_dir=snapshots) as app:
            echo = app.reference(echo_pb2_grpc.EchoStub)
            assert echo.Echo(echo_pb2.EchoRequest()).served_by == "p1"
        with (
            dubbok.App("c3", registry=url(etcd_server), snapshot_dir=tmp_path / "none") as app,
            pytest.raises(dubbok.RegistryError) as info,
        ):
            app.reference(echo_pb2_grpc.EchoStub)
        assert etcd_server.endpoint in str(info.value)
        etcd_server.start()


def test_namespaces_isolate_tenants(etcd_server: EtcdServer) -> None:
    with (
        provider(etcd_server, "shop-p", namespace="shop"),
        provider(etcd_server, "bank-p", namespace="bank"),
        dubbok.App("c", registry=url(etcd_server, "bank")) as app,
    ):
        echo = app.reference(echo_pb2_grpc.EchoStub)
        assert {echo.Echo(echo_pb2.EchoRequest()).served_by for _ in range(10)} == {"bank-p"}


def test_registrations_come_back_after_etcd_is_wiped(etcd_server: EtcdServer) -> None:
    with provider(etcd_server, "p1") as p, dubbok.App("c", registry=url(etcd_server)) as app:
        echo = app.reference(echo_pb2_grpc.EchoStub)
        assert echo.Echo(echo_pb2.EchoRequest()).served_by == "p1"
        etcd_server.restart(wipe=True)
        key = f"/dubbok/shop/services/{SERVICE}/providers/{p.address}"
        assert poll(lambda: key in etcd_server.get_prefix("/dubbok/shop/"), timeout=15)
        assert echo.Echo(echo_pb2.EchoRequest()).served_by == "p1"
