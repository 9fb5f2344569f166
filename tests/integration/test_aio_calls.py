"""asyncio provider and consumer over real grpc.aio on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

import dubbok
import dubbok.aio
from dubbok.testing import AsyncEchoServicer, Provider, serve_provider_async
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc


def req(**kw: object) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def providers(n: int = 3) -> AsyncIterator[list[tuple[Provider, AsyncEchoServicer]]]:
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for i in range(n):
            s = AsyncEchoServicer(f"p{i}")
            out.append((await stack.enter_async_context(serve_provider_async(s)), s))
        yield out


def url(ps: list[tuple[Provider, AsyncEchoServicer]]) -> str:
    return "static://" + ",".join(p.address for p, _ in ps)


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_round_robin_and_all_method_kinds() -> None:
    async def main() -> None:
        async with providers() as ps, dubbok.aio.App("consumer") as app:
            echo = app.reference(
                echo_pb2_grpc.EchoStub, discovery=url(ps), loadbalance="roundrobin"
            )
            served = Counter([(await echo.Echo(req())).served_by for _ in range(9)])
            assert served == {"p0": 3, "p1": 3, "p2": 3}
            assert [r.text async for r in echo.EchoStream(req(text="s", count=2))] == ["s0", "s1"]

            async def gen() -> AsyncIterator[echo_pb2.EchoRequest]:
                for t in "xy":
                    yield req(text=t)

            assert (await echo.EchoCollect(gen())).text == "x,y"
            assert [r.text async for r in echo.EchoChat(gen())] == ["x", "y"]

    run(main())


def test_failover_and_metadata() -> None:
    async def main() -> None:
        async with providers() as ps, dubbok.aio.App("consumer") as app:
            await ps[0][0].app.stop(0)
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=url(ps))
            replies = [await echo.Echo(req(), metadata=[("x-k", "v")]) for _ in range(6)]
            assert {r.served_by for r in replies} == {"p1", "p2"}
            assert all(r.metadata["x-k"] == "v" for r in replies)

    run(main())


def test_errors_follow_the_tree() -> None:
    async def main() -> None:
        async with providers(1) as ps, dubbok.aio.App("consumer") as app:
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=url(ps), timeout=0.2)
            with pytest.raises(dubbok.DeadlineExceededError) as late:
                await echo.Echo(req(delay=1.0))
            assert isinstance(late.value.__cause__, grpc.RpcError)
            with pytest.raises(dubbok.RpcError) as bad:
                await echo.Echo(req(fail_code=grpc.StatusCode.NOT_FOUND.value[0]))
            assert bad.value.code is grpc.StatusCode.NOT_FOUND
            with pytest.raises(dubbok.RpcError) as streamed:
                async for _ in echo.EchoStream(req(fail_code=grpc.StatusCode.INTERNAL.value[0])):
                    pass
            assert streamed.value.code is grpc.StatusCode.INTERNAL

    run(main())


def test_graceful_stop_lets_an_in_flight_call_finish() -> None:
    async def main() -> None:
        servicer = AsyncEchoServicer("slow")
        async with serve_provider_async(servicer) as provider, dubbok.aio.App("c") as app:
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, timeout=5.0)
            call = asyncio.ensure_future(echo.Echo(req(text="done", delay=0.5)))
            while servicer.calls == 0:  # the handler has the call
                await asyncio.sleep(0.005)
            await provider.app.stop(grace=3.0)
            assert (await call).text == "done"

    run(main())


def test_incoming_deadline_bounds_outgoing_calls() -> None:
    """The backend sees the edge's deadline, not the middle reference's 10 s timeout."""

    async def main() -> None:
        seen: list[float] = []

        class Backend(AsyncEchoServicer):
            async def Echo(self, request, context):  # type: ignore[no-untyped-def]
                seen.append(context.time_remaining())
                return await super().Echo(request, context)

        async with serve_provider_async(Backend("backend")) as backend:
            async with dubbok.aio.App("middle") as middle_app:
                downstream = middle_app.reference(
                    echo_pb2_grpc.EchoStub, discovery=backend.url, timeout=10.0
                )

                class Middle(AsyncEchoServicer):
                    async def Echo(self, request, context):  # type: ignore[no-untyped-def]
                        return await downstream.Echo(req())

                async with serve_provider_async(Middle("m")) as middle:
                    async with dubbok.aio.App("edge") as edge:
                        front = edge.reference(echo_pb2_grpc.EchoStub, discovery=middle.url)
                        await front.Echo(req(), timeout=0.5)
        assert len(seen) == 1
        assert 0 < seen[0] <= 0.6  # 0.5 s plus clock skew; far below the 10 s timeout

    run(main())
