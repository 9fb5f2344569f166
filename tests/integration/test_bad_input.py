"""Bad input gets a DubbokError subclass that says what was wrong and what to do."""

from __future__ import annotations

import asyncio

import pytest

import dubbok
import dubbok.aio
from dubbok.testing import AsyncEchoServicer, EchoServicer, serve_provider
from dubbok.testing.pb import echo_pb2_grpc, helloworld_pb2_grpc


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("static//127.0.0.1:1", "missing '://'"),
        ("static://", "at least one host:port"),
        ("static://127.0.0.1", "expected 'host:port'"),
        ("static://127.0.0.1:notaport", "is not a number"),
        ("static://127.0.0.1:70000", "not in 1..65535"),
        ("carrier-pigeon://a:1", "unknown scheme 'carrier-pigeon'"),
        ("", "empty URL"),
    ],
)
def test_malformed_discovery_url(url: str, fragment: str) -> None:
    with dubbok.App("c") as app, pytest.raises(dubbok.InvalidURLError) as info:
        app.reference(echo_pb2_grpc.EchoStub, discovery=url)
    assert fragment in str(info.value)
    assert "Expected one of" in str(info.value)
    assert isinstance(info.value, dubbok.ConfigurationError)


def test_malformed_url_given_to_the_app() -> None:
    with pytest.raises(dubbok.InvalidURLError):
        dubbok.App("c", discovery="static:/x")


def test_unknown_load_balancer_names_the_known_ones() -> None:
    with dubbok.App("c") as app, pytest.raises(dubbok.UnknownExtensionError) as info:
        app.reference(echo_pb2_grpc.EchoStub, discovery="static://127.0.0.1:1", loadbalance="rr")
    text = str(info.value)
    assert "unknown balancer 'rr'" in text
    assert "roundrobin" in text
    assert "dubbok.balancer" in text


def test_unknown_cluster_strategy() -> None:
    with dubbok.App("c") as app, pytest.raises(dubbok.UnknownExtensionError) as info:
        app.reference(echo_pb2_grpc.EchoStub, discovery="static://127.0.0.1:1", cluster="nope")
    assert "failover" in str(info.value)


def test_service_name_the_stub_does_not_have() -> None:
    with dubbok.App("c") as app, pytest.raises(dubbok.ServiceDefinitionError) as info:
        app.reference(echo_pb2_grpc.EchoStub, "helloworld.Greeter", discovery="static://a:1")
    assert "has no service 'helloworld.Greeter'" in str(info.value)
    assert "dubbok.testing.v1.Echo" in str(info.value)


def test_method_options_for_a_method_the_stub_does_not_have() -> None:
    with dubbok.App("c") as app, pytest.raises(dubbok.ServiceDefinitionError) as info:
        app.reference(
            echo_pb2_grpc.EchoStub, discovery="static://a:1", methods={"Ecco": {"timeout": 1}}
        )
    assert "no method 'Ecco'" in str(info.value)


def test_not_a_stub() -> None:
    with dubbok.App("c") as app, pytest.raises(dubbok.ServiceDefinitionError):
        app.reference(dict, discovery="static://a:1")  # type: ignore[arg-type]


def test_servicer_name_mismatch() -> None:
    @dubbok.service("helloworld.Greeter")
    class Wrong(EchoServicer):
        pass

    app = dubbok.App("p")
    with pytest.raises(dubbok.ServiceDefinitionError) as info:
        app.serve(Wrong(), host="127.0.0.1", port=0)
    assert "implements 'dubbok.testing.v1.Echo'" in str(info.value)


def test_not_a_servicer() -> None:
    with pytest.raises(dubbok.ServiceDefinitionError) as info:
        dubbok.App("p").serve(object(), host="127.0.0.1", port=0)
    assert "generated *Servicer" in str(info.value)


def test_port_already_in_use() -> None:
    with serve_provider(EchoServicer("first")) as first:
        app = dubbok.App("second")
        with pytest.raises(dubbok.BindError) as info:
            app.serve(EchoServicer("second"), host="127.0.0.1", port=first.port)
        app.stop(0)
    assert f"127.0.0.1:{first.port}" in str(info.value)
    assert "port=0" in str(info.value)


def test_port_already_in_use_async() -> None:
    async def main() -> None:
        with serve_provider(EchoServicer("first")) as first:
            app = dubbok.aio.App("second")
            with pytest.raises(dubbok.BindError):
                await app.serve(AsyncEchoServicer("second"), host="127.0.0.1", port=first.port)
            await app.stop(0)

    asyncio.run(main())


def test_no_discovery_at_all() -> None:
    with dubbok.App("c") as app, pytest.raises(dubbok.ConfigurationError) as info:
        app.reference(helloworld_pb2_grpc.GreeterStub)
    assert "discovery=" in str(info.value)


def test_bad_option_values() -> None:
    with dubbok.App("c") as app:
        with pytest.raises(dubbok.ConfigurationError, match="retries"):
            app.reference(echo_pb2_grpc.EchoStub, discovery="static://a:1", retries=-1)
        with pytest.raises(dubbok.ConfigurationError, match="timeout"):
            app.reference(echo_pb2_grpc.EchoStub, discovery="static://a:1", timeout=0)
        with pytest.raises(dubbok.ConfigurationError, match="allowed keys"):
            app.reference(
                echo_pb2_grpc.EchoStub, discovery="static://a:1", methods={"Echo": {"tmo": 1}}
            )


def test_no_provider_error_says_what_to_check() -> None:
    from dubbok.core import Route

    # An empty directory (e.g. a registry with nothing registered yet).
    with dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery="static://127.0.0.1:1")
        route: Route = echo._route  # type: ignore[attr-defined]
        echo._route = route.__class__(  # type: ignore[attr-defined]
            service=route.service,
            endpoints=(),
            picker=route.balancer.build(()),
            balancer=route.balancer,
            policies=route.policies,
            connections={},
            discovered=0,
            origin="etcd://127.0.0.1:2379/?namespace=default",
        )
        with pytest.raises(dubbok.NoProviderError) as info:
            echo.Echo(__import__("dubbok.testing.pb.echo_pb2").testing.pb.echo_pb2.EchoRequest())
    text = str(info.value)
    assert "no provider of dubbok.testing.v1.Echo" in text
    assert "registered: 0" in text
    assert info.value.service == "dubbok.testing.v1.Echo"
