"""The control plane's gauges as a running App feeds them, read through an in-memory metric
reader: directory size, breaker state, ejected endpoints, and the health of the registry and
config watches across an etcd restart."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import dubbok
from dubbok.testing import EchoServicer, serve_provider, wait_until
from dubbok.testing.etcd import EtcdServer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing.testing import Recorder

pytestmark = pytest.mark.etcd

SERVICE = "dubbok.testing.v1.Echo"
INTERNAL = grpc.StatusCode.INTERNAL.value[0]
_namespaces = itertools.count()


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


def gauge(rec: Recorder, name: str, **attributes: Any) -> float | None:
    """The value of the series of ``name`` with exactly ``attributes``; None if absent."""
    for point in rec.points(name):
        if dict(point.attributes) == attributes:
            return float(point.value)
    return None


def test_a_running_app_feeds_every_gauge(etcd: EtcdServer, rec: Recorder) -> None:
    namespace = f"gauges{next(_namespaces)}"
    url = f"{etcd.url}/?namespace={namespace}"
    registry = {"dubbok.watch": f"registry:{namespace}/{SERVICE}"}
    config = {"dubbok.watch": f"config:{namespace}/c"}
    with (
        serve_provider(EchoServicer("p"), registry=url),
        dubbok.App("c", registry=url, observer=rec.observer) as app,
    ):
        method = app.reference(
            echo_pb2_grpc.EchoStub,
            retries=0,
            breaker={
                "method": {"consecutive_failures": 2, "error_ratio": None, "reset_timeout": 60},
                "instance": None,
            },
        )
        assert method.Echo(echo_pb2.EchoRequest(text="x")).text == "x"
        assert gauge(rec, "dubbok.directory.size", **{"rpc.service": SERVICE}) == 1.0
        assert gauge(rec, "dubbok.watch.healthy", **registry) == 1.0
        assert gauge(rec, "dubbok.watch.healthy", **config) == 1.0
        for _ in range(2):
            with pytest.raises(dubbok.RpcError):
                method.Echo(echo_pb2.EchoRequest(fail_code=INTERNAL))
        breaker = {"rpc.service": SERVICE, "rpc.method": "Echo"}
        assert gauge(rec, "dubbok.breaker.state", **breaker) == 2.0  # open

        ejecting = app.reference(
            echo_pb2_grpc.EchoStub,
            retries=0,
            breaker={
                "instance": {"consecutive_failures": 2, "max_ejection_percent": 100},
                "method": None,
            },
        )
        for _ in range(2):
            with pytest.raises(dubbok.RpcError):
                ejecting.Echo(echo_pb2.EchoRequest(fail_code=INTERNAL))
        assert gauge(rec, "dubbok.endpoints.ejected", **{"rpc.service": SERVICE}) == 1.0

        etcd.kill()
        assert wait_until(lambda: gauge(rec, "dubbok.watch.healthy", **registry) == 0.0, 10)
        assert wait_until(lambda: gauge(rec, "dubbok.watch.healthy", **config) == 0.0, 10)
        etcd.start()
        assert wait_until(lambda: gauge(rec, "dubbok.watch.healthy", **registry) == 1.0, 15)
        assert wait_until(lambda: gauge(rec, "dubbok.watch.healthy", **config) == 1.0, 15)
    # closed: the watches' series are no longer reported
    assert gauge(rec, "dubbok.watch.healthy", **registry) is None
    assert gauge(rec, "dubbok.watch.healthy", **config) is None
