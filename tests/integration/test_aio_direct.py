"""Unary-unary calls on grpc's Cython call object (dubbok.aio.transport.DirectUnary) behave as
the grpc.aio multicallable's do: replies, errors, metadata, deadlines, cancellation, and
channels that drain and close around calls in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from dubbok.aio.transport import AsyncChannelPool, AsyncConnection, DirectUnary
from dubbok.stub import read_stub
from dubbok.testing import AsyncEchoServicer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

DEFINITION = read_stub(echo_pb2_grpc.EchoStub)
ECHO = DEFINITION.methods["Echo"]
STREAM = DEFINITION.methods["EchoStream"]


class _Watched(AsyncEchoServicer):
    """Records calls that the client cancelled while the handler ran."""

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


@asynccontextmanager
async def _server(servicer: Any) -> AsyncIterator[str]:
    server = grpc.aio.server()
    echo_pb2_grpc.add_EchoServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _both(channel: Any) -> tuple[Any, DirectUnary]:
    conn = AsyncConnection("x", channel)
    direct = conn.multicallable(ECHO)
    assert isinstance(direct, DirectUnary)
    return direct._multicallable, direct


def test_unary_unary_is_direct_and_streams_are_not() -> None:
    async def main() -> None:
        async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
            conn = AsyncConnection("127.0.0.1:1", channel)
            assert isinstance(conn.multicallable(ECHO), DirectUnary)
            assert conn.multicallable(ECHO) is conn.multicallable(ECHO)
            assert not isinstance(conn.multicallable(STREAM), DirectUnary)

    asyncio.run(main())


def test_replies_errors_and_metadata_match_the_multicallable() -> None:
    async def main() -> None:
        async with _server(AsyncEchoServicer("a")) as address:
            async with grpc.aio.insecure_channel(address) as channel:
                plain, direct = _both(channel)
                request = echo_pb2.EchoRequest(text="hi", payload=b"\x00\x01")
                metadata = (("x-k", "v"), ("x-bin-bin", b"\x00\xff"))
                expected = await plain(request, timeout=5, metadata=metadata)
                got = await direct(request, timeout=5, metadata=metadata)
                assert got == expected
                assert got.metadata["x-k"] == "v"
                # grpc.aio.Metadata is accepted as the multicallable accepts it
                got = await direct(request, metadata=grpc.aio.Metadata(("x-k", "w")))
                assert got.metadata["x-k"] == "w"

                failing = echo_pb2.EchoRequest(fail_code=grpc.StatusCode.NOT_FOUND.value[0])
                errors = []
                for call in (plain, direct):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await call(failing, timeout=5)
                    errors.append(caught.value)
                a, b = errors
                assert b.code() is a.code() is grpc.StatusCode.NOT_FOUND
                assert b.details() == a.details() == "asked to fail by a"
                assert b.trailing_metadata() == a.trailing_metadata()
                assert b.initial_metadata() == a.initial_metadata()
                assert isinstance(b, grpc.RpcError)

    asyncio.run(main())


def test_deadline_and_unreachable_peer() -> None:
    async def main() -> None:
        async with _server(AsyncEchoServicer("a")) as address:
            async with grpc.aio.insecure_channel(address) as channel:
                _plain, direct = _both(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await direct(echo_pb2.EchoRequest(delay=5), timeout=0.2)
                assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # Nothing listens on port 1: without wait_for_ready the call fails at once.
        async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
            _plain, direct = _both(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await direct(echo_pb2.EchoRequest(), timeout=5, wait_for_ready=False)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            # wait_for_ready waits for the peer instead, here until the deadline.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await direct(echo_pb2.EchoRequest(), timeout=0.3, wait_for_ready=True)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    asyncio.run(main())


def test_cancelling_the_caller_cancels_the_rpc() -> None:
    async def main() -> None:
        servicer = _Watched()
        async with _server(servicer) as address:
            async with grpc.aio.insecure_channel(address) as channel:
                _plain, direct = _both(channel)
                task = asyncio.create_task(direct(echo_pb2.EchoRequest(delay=30), timeout=60))
                await asyncio.wait_for(servicer.started.wait(), 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                # The server hears of it: its handler is cancelled, long before its 30 s.
                await asyncio.wait_for(servicer.cancelled.wait(), 10)
                assert not direct.calls

    asyncio.run(main())


def test_compression_goes_through_the_multicallable() -> None:
    async def main() -> None:
        async with _server(AsyncEchoServicer("a")) as address:
            async with grpc.aio.insecure_channel(address) as channel:
                _plain, direct = _both(channel)
                reply = await direct(
                    echo_pb2.EchoRequest(text="z"), compression=grpc.Compression.Gzip
                )
                assert reply.text == "z"

    asyncio.run(main())


def test_a_released_channel_lets_a_call_in_flight_finish() -> None:
    async def main() -> None:
        async with _server(AsyncEchoServicer("a")) as address:
            pool = AsyncChannelPool(drain_timeout=10)
            conn = pool.acquire(address)
            call = asyncio.create_task(conn.multicallable(ECHO)(echo_pb2.EchoRequest(delay=1)))
            await asyncio.sleep(0)  # the call starts
            pool.release(conn)
            reply = await asyncio.wait_for(call, 10)
            assert reply.served_by == "a"
            await pool.aclose()

    asyncio.run(main())


def test_a_call_outliving_the_drain_is_cancelled() -> None:
    async def main() -> None:
        servicer = _Watched()
        async with _server(servicer) as address:
            pool = AsyncChannelPool(drain_timeout=0.2)
            conn = pool.acquire(address)
            started = time.monotonic()
            call = asyncio.create_task(conn.multicallable(ECHO)(echo_pb2.EchoRequest(delay=30)))
            await asyncio.wait_for(servicer.started.wait(), 10)
            pool.release(conn)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(call, 10)
            assert caught.value.code() is grpc.StatusCode.CANCELLED
            assert time.monotonic() - started < 10
            await asyncio.wait_for(servicer.cancelled.wait(), 10)
            await pool.aclose()

    asyncio.run(main())


def test_closing_the_pool_cancels_calls_in_flight() -> None:
    async def main() -> None:
        servicer = _Watched()
        async with _server(servicer) as address:
            pool = AsyncChannelPool()
            conn = pool.acquire(address)
            call = asyncio.create_task(conn.multicallable(ECHO)(echo_pb2.EchoRequest(delay=30)))
            await asyncio.wait_for(servicer.started.wait(), 10)
            await pool.aclose()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(call, 10)
            assert caught.value.code() is grpc.StatusCode.CANCELLED

    asyncio.run(main())


class _Attached(AsyncEchoServicer):
    """Answers with the attachment and tag lane its handler sees (dubbok reads both from the
    metadata the server resolved the call with)."""

    async def Echo(self, request: Any, context: Any) -> Any:
        from dubbok import attachments
        from dubbok.routing.tag import current_tag

        await asyncio.sleep(request.delay)
        tag = current_tag()
        return echo_pb2.EchoReply(
            text=f"{attachments.get('k')}|{tag.value if tag else ''}", served_by=self.name
        )

    async def EchoStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        from dubbok import attachments

        for _ in range(2):
            await asyncio.sleep(0)
            yield echo_pb2.EchoReply(text=str(attachments.get("k")))


def test_concurrent_handlers_each_see_their_own_calls_metadata() -> None:
    # The provider hands each handler the metadata grpc resolved its call with; with many
    # calls interleaved on one loop, every handler must still see its own.
    import dubbok.aio
    from dubbok import attachments
    from dubbok.attachments import PREFIX
    from dubbok.routing.tag import TAG_HEADER
    from dubbok.testing import serve_provider_async

    async def main() -> None:
        async with serve_provider_async(_Attached("p")) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)

                async def one(i: int) -> None:
                    metadata = ((f"{PREFIX}k", f"v{i}"), (TAG_HEADER, f"t{i}"))
                    reply = await stub.Echo(
                        echo_pb2.EchoRequest(delay=0.001 * (i % 7)), metadata=metadata
                    )
                    assert reply.text == f"v{i}|t{i}"
                    stream = stub.EchoStream(echo_pb2.EchoRequest(), metadata=metadata)
                    assert [r.text async for r in stream] == [f"v{i}", f"v{i}"]

                await asyncio.gather(*(one(i) for i in range(200)))
            # and through a dubbok consumer, whose attachments travel the same way
            async with dubbok.aio.App("c") as app:
                echo = app.reference(
                    echo_pb2_grpc.EchoStub, discovery=f"static://{provider.address}"
                )

                async def two(i: int) -> None:
                    with attachments.attached({"k": f"w{i}"}):
                        reply = await echo.Echo(echo_pb2.EchoRequest())
                    assert reply.text.startswith(f"w{i}|")

                await asyncio.gather(*(two(i) for i in range(100)))

    asyncio.run(main())


def test_a_handler_without_resolved_metadata_reads_its_context() -> None:
    # A ServedCall made outside the server's resolution (another task) reads the context.
    from dubbok.aio.server import PathHandlers, _resolved_metadata

    class Details:
        method = "/s/M"
        invocation_metadata = (("a", "1"),)

    async def main() -> None:
        handlers = PathHandlers()
        handlers.add("s", {"M": object()})  # type: ignore[dict-item]
        assert handlers.service(Details()) is not None
        assert _resolved_metadata("/s/M") == (("a", "1"),)
        assert _resolved_metadata("/s/Other") is None
        # another task (a copy of this context) gets nothing
        assert await asyncio.create_task(_async(_resolved_metadata, "/s/M")) is None
        assert handlers.service(type("D", (), {"method": "/x/Y"})()) is None

    async def _async(fn: Any, *args: Any) -> Any:
        return fn(*args)

    asyncio.run(main())


def test_the_provider_hands_handlers_the_resolved_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dubbok.server
    from dubbok.testing import serve_provider_async

    handed: list[bool] = []
    init = dubbok.server.ServedCall.__init__

    def spy(self: Any, context: Any, service: str, method: str, *rest: Any) -> None:
        handed.append(bool(rest) and rest[-1] is not None)
        init(self, context, service, method, *rest)

    monkeypatch.setattr(dubbok.server.ServedCall, "__init__", spy)

    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("p")) as provider:
            async with grpc.aio.insecure_channel(provider.address) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                await asyncio.gather(*(stub.Echo(echo_pb2.EchoRequest()) for _ in range(10)))
                assert len([r async for r in stub.EchoStream(echo_pb2.EchoRequest())]) == 1

    asyncio.run(main())
    assert handed == [True] * 11


def test_a_channel_with_client_interceptors_is_not_called_directly() -> None:
    # grpc runs a channel's client interceptors in its own call objects; a direct call would
    # skip them (an instrumentation that adds interceptors to every channel, for one).
    seen: list[str] = []

    class Interceptor(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(details.method)
            return await continuation(details, request)

    async def main() -> None:
        async with _server(AsyncEchoServicer("a")) as address:
            async with grpc.aio.insecure_channel(address, interceptors=[Interceptor()]) as channel:
                mc = AsyncConnection(address, channel).multicallable(ECHO)
                assert not isinstance(mc, DirectUnary)
                assert (await mc(echo_pb2.EchoRequest(text="i"), timeout=5)).text == "i"

    asyncio.run(main())
    assert seen == [ECHO.path.encode()]  # grpc.aio hands interceptors the method as bytes
