"""Directory updates are diffs: new endpoints connect, removed ones drain, others stay."""

from __future__ import annotations

import asyncio
import threading

import dubbok
import dubbok.aio
from dubbok.testing import (
    AsyncEchoServicer,
    EchoServicer,
    ManualDiscovery,
    serve_provider,
    serve_provider_async,
)
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

SERVICE = "dubbok.testing.v1.Echo"


def test_removed_endpoint_drains_then_closes_and_unchanged_ones_are_kept() -> None:
    a_servicer = EchoServicer("a")
    with (
        serve_provider(a_servicer) as a,
        serve_provider(EchoServicer("b")) as b,
        serve_provider(EchoServicer("c")) as c,
        dubbok.App("consumer") as app,
    ):
        disc = ManualDiscovery()
        echo = app.reference(
            echo_pb2_grpc.EchoStub, discovery=disc, timeout=5.0, loadbalance="roundrobin"
        )
        disc.set(SERVICE, [a.address])
        assert echo.Echo(echo_pb2.EchoRequest()).served_by == "a"

        # A slow call is in flight on `a` when `a` leaves the directory.
        result: dict[str, object] = {}
        t = threading.Thread(
            target=lambda: result.update(reply=echo.Echo(echo_pb2.EchoRequest(delay=0.5)))
        )
        t.start()
        deadline = threading.Event()
        while a_servicer.calls < 2 and not deadline.wait(0.005):
            pass
        disc.set(SERVICE, [b.address])
        assert echo.Echo(echo_pb2.EchoRequest()).served_by == "b"
        t.join(5.0)
        assert result["reply"].served_by == "a"  # type: ignore[attr-defined]

        conn_b = echo._route.connections[b.address]  # type: ignore[attr-defined]
        disc.set(SERVICE, [b.address, c.address])
        assert echo._route.connections[b.address] is conn_b  # type: ignore[attr-defined]
        assert {echo.Echo(echo_pb2.EchoRequest()).served_by for _ in range(4)} == {"b", "c"}
        assert len(app._pool) == 2  # `a`'s channel is gone from the pool


def test_async_directory_update_from_another_thread() -> None:
    async def main() -> None:
        async with (
            serve_provider_async(AsyncEchoServicer("a")) as a,
            serve_provider_async(AsyncEchoServicer("b")) as b,
            dubbok.aio.App("consumer") as app,
        ):
            disc = ManualDiscovery()
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=disc, timeout=5.0)
            disc.set(SERVICE, [a.address])
            assert (await echo.Echo(echo_pb2.EchoRequest())).served_by == "a"
            # Discovery threads deliver off the loop; the App hops onto it.
            await asyncio.to_thread(disc.set, SERVICE, [b.address])
            for _ in range(100):
                if echo.endpoints and echo.endpoints[0].address == b.address:
                    break
                await asyncio.sleep(0.01)
            assert (await echo.Echo(echo_pb2.EchoRequest())).served_by == "b"

    asyncio.run(main())
