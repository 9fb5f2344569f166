"""URLs, endpoints, outcome classification, stub reading and the public namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

import dubbok
from dubbok import aio
from dubbok.endpoint import Endpoint, split_address
from dubbok.errors import ConfigurationError, InvalidURLError
from dubbok.outcome import Verdict, classify, counts_as_failure, is_retryable
from dubbok.stub import MethodKind, read_stub
from dubbok.testing.pb import echo_pb2_grpc, helloworld_pb2_grpc
from dubbok.url import parse_url

ROOT = Path(__file__).resolve().parents[2]


def test_parse_etcd_url_with_many_hosts_and_credentials() -> None:
    u = parse_url("etcd://alice:s%40cret@h1:2379,h2:2379/?namespace=shop&ca=/x.pem")
    assert u.scheme == "etcd"
    assert u.hosts == ("h1:2379", "h2:2379")
    assert u.params == {"namespace": "shop", "ca": "/x.pem"}
    assert (u.username, u.password) == ("alice", "s@cret")
    assert u.redacted() == "etcd://alice:***@h1:2379,h2:2379/?namespace=shop&ca=/x.pem"


def test_parse_dns_urls() -> None:
    u = parse_url("dns:///greeter.shop.svc.cluster.local:50051?nameserver=127.0.0.1:5353")
    assert u.hosts == ()
    assert u.path == "greeter.shop.svc.cluster.local:50051"
    assert u.params["nameserver"] == "127.0.0.1:5353"
    assert parse_url("dns+srv:///_grpc._tcp.g.svc").scheme == "dns+srv"


@pytest.mark.parametrize("bad", ["nope", "://x", "static://h:1?a=1&&", "static://h:x"])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(InvalidURLError):
        parse_url(bad)


def test_addresses() -> None:
    assert split_address("[::1]:50051") == ("::1", 50051)
    assert Endpoint("::1", 1).address == "[::1]:1"
    assert Endpoint.parse("10.0.0.1:80", weight=5).weight == 5
    for bad in ("::1:50051", "host", "h:0"):
        with pytest.raises(ConfigurationError):
            split_address(bad)
    with pytest.raises(ConfigurationError):
        Endpoint("h", 1, weight=-1)


def test_endpoints_compare_by_everything_they_carry() -> None:
    a = Endpoint("h", 1, tags={"zone": "a"})
    assert a == Endpoint("h", 1, tags={"zone": "a"})
    assert a != Endpoint("h", 1, tags={"zone": "b"})
    assert hash(a) == hash(Endpoint("h", 1, tags={"zone": "b"}))


def test_classification_answers_retry_and_breaker_alike() -> None:
    assert classify(grpc.StatusCode.OK) is Verdict.OK
    assert classify(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses") is (
        Verdict.NOT_SENT
    )
    business = classify(grpc.StatusCode.INVALID_ARGUMENT)
    assert not counts_as_failure(business)
    assert not is_retryable(business, idempotent=True)
    timeout = classify(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert counts_as_failure(timeout)
    assert is_retryable(timeout, idempotent=True)
    assert not is_retryable(timeout, idempotent=False)


def test_read_stub_finds_every_method_and_kind() -> None:
    d = read_stub(helloworld_pb2_grpc.GreeterStub)
    assert d.name == "helloworld.Greeter"
    assert {n: m.kind for n, m in d.methods.items()} == {
        "SayHello": MethodKind.UNARY_UNARY,
        "SayHelloStream": MethodKind.UNARY_STREAM,
        "CollectHellos": MethodKind.STREAM_UNARY,
        "Chat": MethodKind.STREAM_STREAM,
    }
    assert read_stub(echo_pb2_grpc.EchoStub).methods["Echo"].path == (
        "/dubbok.testing.v1.Echo/Echo"
    )


def test_public_namespace_is_pinned() -> None:
    assert sorted(dubbok.__all__) == sorted(
        [
            "App",
            "BindError",
            "CircuitOpenError",
            "ConfigurationError",
            "DeadlineExceededError",
            "DubbokError",
            "Endpoint",
            "InvalidURLError",
            "MethodOptions",
            "NoProviderError",
            "RegistryError",
            "RpcError",
            "ServiceDefinitionError",
            "ServiceOptions",
            "UnknownExtensionError",
            "__version__",
            "degrade",
            "fallback",
            "method",
            "service",
        ]
    )
    for name in dubbok.__all__:
        assert hasattr(dubbok, name)
    assert {"App", "method", "service"} <= set(aio.__all__)


def test_every_error_is_a_dubbok_error_with_a_status() -> None:
    for name in dubbok.__all__:
        obj = getattr(dubbok, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, dubbok.DubbokError)
            assert isinstance(obj.code, grpc.StatusCode)


def test_import_stays_light() -> None:
    """`import dubbok` must not pull in etcd, dnspython or the OpenTelemetry SDK."""
    code = (
        "import sys, dubbok; "
        "bad = [m for m in ('etcd3', 'dns.resolver', 'opentelemetry.sdk') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_generated_code_is_current() -> None:
    """protos/ and dubbok/testing/pb/ agree; regenerate with `make protos` when this fails."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
