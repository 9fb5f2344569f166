"""The asyncio provider's server: a serving loop per method (dubbok.aio._serving), and grpc's
own serving loop (DUBBOK_SERVING=grpc) behave the same to every caller: all four call
kinds, health, reflection, unknown methods, errors, cancellation, concurrency and a graceful
stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dubbok.aio import _serving
from dubbok.aio.server import PathHandlers, new_async_server
from dubbok.testing import AsyncEchoServicer, serve_provider_async
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc, helloworld_pb2, helloworld_pb2_grpc

SERVICE = "dubbok.testing.v1.Echo"


@pytest.fixture(params=["loops", "grpc"])
def serving(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "grpc":
        monkeypatch.setenv(_serving.ENV, "grpc")
    else:
        monkeypatch.delenv(_serving.ENV, raising=False)
    yield request.param


class _Raising(AsyncEchoServicer):
    async def Echo(self, request: Any, context: Any) -> Any:
        if request.text == "raise":
            raise RuntimeError("the handler broke")
        return await super().Echo(request, context)


class _Watched(AsyncEchoServicer):
    def __init__(self) -> None:
        super().__init__("w")
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def Echo(self, request: Any, context: Any) -> Any:
        self.started.set()
        try:
            return await super().Echo(request, context)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def test_this_grpcio_has_what_the_method_loops_need() -> None:
    # A grpcio upgrade that removes or changes the internals shows up here first (the
    # provider would then quietly run on grpc's own loop).
    assert _serving.SUPPORTED


def test_the_server_is_the_one_asked_for(serving: str) -> None:
    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("p")) as provider:
            core = provider.app._server._server
            if serving == "loops":
                assert type(core) is _serving.MethodLoopServer
                assert f"/{SERVICE}/Echo" in core._dubbok_methods
                assert "/grpc.health.v1.Health/Check" in core._dubbok_methods
            else:
                assert type(core).__name__ == "AioServer"

    asyncio.run(main())


def test_every_call_kind_health_reflection_and_errors(serving: str) -> None:
    async def main() -> None:
        async with serve_provider_async(_Raising("p")) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                reply = await stub.Echo(echo_pb2.EchoRequest(text="hi", payload=b"\x01"))
                assert (reply.text, reply.payload, reply.served_by) == ("hi", b"\x01", "p")
                stream = stub.EchoStream(echo_pb2.EchoRequest(text="s", count=3))
                assert [r.text async for r in stream] == ["s0", "s1", "s2"]

                async def texts() -> Any:
                    for t in "abc":
                        yield echo_pb2.EchoRequest(text=t)

                assert (await stub.EchoCollect(texts())).text == "a,b,c"
                chat = stub.EchoChat(texts())
                assert [r.text async for r in chat] == ["a", "b", "c"]

                with pytest.raises(grpc.aio.AioRpcError) as aborted:
                    await stub.Echo(echo_pb2.EchoRequest(fail_code=5))
                assert aborted.value.code() is grpc.StatusCode.NOT_FOUND
                assert aborted.value.details() == "asked to fail by p"
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.Echo(echo_pb2.EchoRequest(text="raise"))
                assert raised.value.code() is grpc.StatusCode.UNKNOWN

                # a method nobody serves, on a service that exists and one that does not
                for path in (f"/{SERVICE}/Nope", "/no.Such/Method"):
                    unknown = channel.unary_unary(path)
                    with pytest.raises(grpc.aio.AioRpcError) as missing:
                        await unknown(b"")
                    assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED

                health = health_pb2_grpc.HealthStub(channel)
                checked = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
                assert checked.status == health_pb2.HealthCheckResponse.SERVING

                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

                async def ask() -> Any:
                    yield reflection_pb2.ServerReflectionRequest(list_services="")

                answers = [a async for a in reflection.ServerReflectionInfo(ask())]
                names = {s.name for s in answers[0].list_services_response.service}
                assert {SERVICE, "grpc.health.v1.Health"} <= names

    asyncio.run(main())


def test_a_caller_cancelling_cancels_the_handler(serving: str) -> None:
    async def main() -> None:
        servicer = _Watched()
        async with serve_provider_async(servicer) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                call = asyncio.ensure_future(stub.Echo(echo_pb2.EchoRequest(delay=30)))
                await asyncio.wait_for(servicer.started.wait(), 10)
                call.cancel()
                await asyncio.wait_for(servicer.cancelled.wait(), 10)
                # and the method is still served
                assert (await stub.Echo(echo_pb2.EchoRequest(text="after"))).text == "after"

    asyncio.run(main())


def test_many_calls_at_once_across_methods(serving: str) -> None:
    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("p")) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)

                async def one(i: int) -> None:
                    request = echo_pb2.EchoRequest(text=str(i), delay=0.001 * (i % 5))
                    if i % 2:
                        assert (await stub.Echo(request)).text == str(i)
                    else:
                        replies = [r.text async for r in stub.EchoStream(request)]
                        assert replies == [f"{i}0"]

                await asyncio.gather(*(one(i) for i in range(300)))

    asyncio.run(main())


def test_a_graceful_stop_finishes_calls_in_flight_and_leaves_no_task(serving: str) -> None:
    async def main() -> None:
        servicer = _Watched()
        async with serve_provider_async(servicer) as provider:
            app = provider.app
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                slow = asyncio.ensure_future(stub.Echo(echo_pb2.EchoRequest(delay=0.5)))
                await asyncio.wait_for(servicer.started.wait(), 10)
                await app.stop(grace=10)
                assert (await slow).served_by == "w"  # finished within the grace
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Echo(echo_pb2.EchoRequest(), timeout=5)
                assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        # nothing of the server's is left running on the loop
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, left

    asyncio.run(main())


def test_a_stop_without_grace_cancels_calls_in_flight(serving: str) -> None:
    async def main() -> None:
        servicer = _Watched()
        async with serve_provider_async(servicer) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                slow = asyncio.ensure_future(stub.Echo(echo_pb2.EchoRequest(delay=30)))
                await asyncio.wait_for(servicer.started.wait(), 10)
                await provider.app.stop(grace=0)
                with pytest.raises(grpc.aio.AioRpcError):
                    await asyncio.wait_for(slow, 10)
                await asyncio.wait_for(servicer.cancelled.wait(), 10)

    asyncio.run(main())


def _echo_server() -> tuple[Any, int]:
    handlers = PathHandlers()
    handlers.add(SERVICE, _echo_handlers(AsyncEchoServicer("own")))
    server = new_async_server(handlers)
    return server, server.add_insecure_port("127.0.0.1:0")


def _echo_handlers(servicer: Any) -> dict[str, grpc.RpcMethodHandler]:
    recorder = _Recorder()
    echo_pb2_grpc.add_EchoServicer_to_server(servicer, recorder)
    return recorder.handlers


class _Recorder:
    """A server as a generated ``add_*_to_server`` sees it; keeps the handlers it is given."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers.update(handlers)


def test_a_service_registered_on_the_server_directly_is_served(serving: str) -> None:
    # A plain grpc servicer added with its generated add_*_to_server function (which
    # registers its methods on the grpc.aio.Server) is served beside the provider's own.
    async def main() -> None:
        server, port = _echo_server()
        helloworld_pb2_grpc.add_GreeterServicer_to_server(_Greeter(), server)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                greeter = helloworld_pb2_grpc.GreeterStub(channel)
                reply = await greeter.SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
                assert reply.message == "hello x"
                echo = echo_pb2_grpc.EchoStub(channel)
                echoed = await echo.Echo(echo_pb2.EchoRequest(text="y"), timeout=10)
                assert echoed.text == "y"
        finally:
            await server.stop(None)

    asyncio.run(main())


def test_a_registration_after_start_is_refused_and_the_server_keeps_serving(
    serving: str, caplog: pytest.LogCaptureFixture
) -> None:
    # grpc refuses (with a warning) a method registered once the server has started; the
    # method loops must not try to serve it either.
    async def main() -> None:
        server, port = _echo_server()
        await server.start()
        try:
            helloworld_pb2_grpc.add_GreeterServicer_to_server(_Greeter(), server)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                echo = echo_pb2_grpc.EchoStub(channel)
                for _ in range(3):
                    echoed = await echo.Echo(echo_pb2.EchoRequest(text="y"), timeout=10)
                    assert echoed.text == "y"
            # still running: no serving loop crashed
            assert await server.wait_for_termination(0.05) is True
        finally:
            await server.stop(None)

    with caplog.at_level("WARNING"):
        asyncio.run(main())
    assert "Cannot register method handlers once server has started" in caplog.text


class _Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request: Any, context: Any) -> Any:
        return helloworld_pb2.HelloReply(message=f"hello {request.name}")
