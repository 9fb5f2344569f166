"""dubbok providers are plain gRPC servers, and dubbok consumers call plain gRPC servers."""

from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

import dubbok
import dubbok.aio
from dubbok.testing import AsyncEchoServicer, EchoServicer, serve_provider, serve_provider_async
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

SERVICE = "dubbok.testing.v1.Echo"


def test_plain_grpcio_client_calls_a_sync_provider() -> None:
    with serve_provider(EchoServicer("d")) as provider:
        with grpc.insecure_channel(provider.address) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            assert stub.Echo(echo_pb2.EchoRequest(text="hi")).served_by == "d"
            replies = stub.EchoStream(echo_pb2.EchoRequest(text="s", count=2))
            assert [r.text for r in replies] == ["s0", "s1"]


def test_plain_grpcio_aio_client_calls_an_async_provider() -> None:
    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("a")) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                assert (await stub.Echo(echo_pb2.EchoRequest())).served_by == "a"

    asyncio.run(main())


def test_health_and_reflection_clients_work_against_a_provider() -> None:
    with serve_provider(EchoServicer("d")) as provider:
        with grpc.insecure_channel(provider.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", SERVICE):
                status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
                assert status == health_pb2.HealthCheckResponse.SERVING
            db = ProtoReflectionDescriptorDatabase(channel)
            services = db.get_services()
            assert SERVICE in services
            assert "grpc.health.v1.Health" in services
            assert db.FindFileContainingSymbol(SERVICE).name == "echo.proto"


def test_health_and_reflection_against_an_async_provider() -> None:
    # The asyncio provider resolves every method (its own, health's, reflection's) through
    # one generic handler and registers none with the server: each must still answer.
    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("a")) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
                first = await watch.read()
                assert first.status == health_pb2.HealthCheckResponse.SERVING
                watch.cancel()
                stub = echo_pb2_grpc.EchoStub(channel)
                assert (await stub.Echo(echo_pb2.EchoRequest())).served_by == "a"
                chat = stub.EchoChat(iter([echo_pb2.EchoRequest(text="c")]))
                assert [r.text async for r in chat] == ["c"]
                missing = channel.unary_unary(f"/{SERVICE}/NoSuchMethod")
                try:
                    await missing(b"")
                except grpc.aio.AioRpcError as err:
                    assert err.code() is grpc.StatusCode.UNIMPLEMENTED
                else:
                    raise AssertionError("an unknown method answered")
            # The reflection client is sync-only; it talks to the aio server all the same.
            with grpc.insecure_channel(provider.address) as channel:
                db = ProtoReflectionDescriptorDatabase(channel)
                services = await asyncio.to_thread(db.get_services)
                assert SERVICE in services
                assert "grpc.health.v1.Health" in services
                assert "grpc.reflection.v1alpha.ServerReflection" in services
                found = await asyncio.to_thread(db.FindFileContainingSymbol, SERVICE)
                assert found.name == "echo.proto"

    asyncio.run(main())


class PlainEcho(echo_pb2_grpc.EchoServicer):
    def Echo(self, request, context):  # type: ignore[no-untyped-def]
        return echo_pb2.EchoReply(text=request.text, served_by="plain")


def _plain_server() -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    echo_pb2_grpc.add_EchoServicer_to_server(PlainEcho(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_sync_consumer_calls_a_plain_grpcio_server() -> None:
    server, port = _plain_server()
    try:
        with dubbok.App("consumer") as app:
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=f"static://127.0.0.1:{port}")
            assert echo.Echo(echo_pb2.EchoRequest(text="x")).served_by == "plain"
    finally:
        server.stop(None)


def test_async_consumer_calls_a_plain_grpcio_server() -> None:
    server, port = _plain_server()

    async def main() -> None:
        async with dubbok.aio.App("consumer") as app:
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=f"static://127.0.0.1:{port}")
            assert (await echo.Echo(echo_pb2.EchoRequest(text="x"))).served_by == "plain"

    try:
        asyncio.run(main())
    finally:
        server.stop(None)
