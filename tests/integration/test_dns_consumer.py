"""References discovering pods through headless-service DNS (a real DNS server on loopback).

Every 127.x.y.z address is loopback on Linux, so each "pod" gets its own IP on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator

import dubbok
import dubbok.aio
from dubbok.testing import (
    AsyncEchoServicer,
    EchoServicer,
    Provider,
    serve_provider,
    serve_provider_async,
    wait_until,
)
from dubbok.testing.dns import DnsServer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

NAME = "greeter.shop.svc.cluster.local"


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    return wait_until(predicate, timeout)


@contextlib.contextmanager
def pods(*ips: str) -> Iterator[tuple[int, dict[str, Provider]]]:
    """Providers on the given loopback IPs, all on one port."""
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(serve_provider(EchoServicer(ips[0]), host=ips[0]))
        out = {ips[0]: first}
        for ip in ips[1:]:
            out[ip] = stack.enter_context(
                serve_provider(EchoServicer(ip), host=ip, port=first.port)
            )
        yield first.port, out


def test_new_pods_are_called_without_any_reconnect() -> None:
    with pods("127.0.0.2", "127.0.0.3", "127.0.0.4") as (port, _), DnsServer() as dns:
        dns.set_a(NAME, ["127.0.0.2", "127.0.0.3"], ttl=1)
        with dubbok.App("c") as app:
            echo = app.reference(
                echo_pb2_grpc.EchoStub,
                discovery=dns.url(NAME, port, min_ttl=0.2),
                loadbalance="roundrobin",
            )
            served = Counter(echo.Echo(echo_pb2.EchoRequest()).served_by for _ in range(10))
            assert served == {"127.0.0.2": 5, "127.0.0.3": 5}
            # A pod scales in: it appears in DNS and takes traffic within about a TTL.
            dns.set_a(NAME, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], ttl=1)
            assert poll(lambda: echo.Echo(echo_pb2.EchoRequest()).served_by == "127.0.0.4")
            # A pod leaves DNS: no more calls to it.
            dns.set_a(NAME, ["127.0.0.3", "127.0.0.4"], ttl=1)
            assert poll(lambda: len(echo.endpoints) == 2)  # type: ignore[attr-defined]
            served = Counter(echo.Echo(echo_pb2.EchoRequest()).served_by for _ in range(10))
            assert set(served) == {"127.0.0.3", "127.0.0.4"}


def test_nxdomain_keeps_the_last_good_set_and_calls_go_on() -> None:
    with pods("127.0.0.2") as (port, _), DnsServer() as dns:
        dns.set_a(NAME, ["127.0.0.2"], ttl=1)
        with dubbok.App("c") as app:
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=dns.url(NAME, port, min_ttl=0.2))
            assert echo.Echo(echo_pb2.EchoRequest()).served_by == "127.0.0.2"
            dns.fail(NAME, "nxdomain")
            queries = dns.query_count(NAME)
            assert poll(lambda: dns.query_count(NAME) >= queries + 2)
            assert echo.Echo(echo_pb2.EchoRequest()).served_by == "127.0.0.2"


def test_every_endpoint_failing_asks_dns_again_at_once() -> None:
    """With a 30 s TTL, only the consumer's refresh hint can find the replacement pod soon."""
    with pods("127.0.0.5") as (port, live), DnsServer() as dns:
        dns.set_a(NAME, ["127.0.0.6"], ttl=30)  # a pod that is gone: nothing listens there
        with dubbok.App("c") as app:
            echo = app.reference(
                echo_pb2_grpc.EchoStub,
                discovery=dns.url(NAME, port, min_ttl=0.2, max_ttl=30),
                breaker=False,
                fallbacks={"Echo": lambda r, e: echo_pb2.EchoReply(served_by="nobody")},
            )
            assert echo.Echo(echo_pb2.EchoRequest()).served_by == "nobody"
            dns.set_a(NAME, ["127.0.0.5"], ttl=30)
            assert poll(
                lambda: echo.Echo(echo_pb2.EchoRequest()).served_by == "127.0.0.5", timeout=5
            )
            assert "127.0.0.5" in live


def test_async_reference_follows_dns_changes() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                serve_provider_async(AsyncEchoServicer("a"), host="127.0.0.7")
            )
            await stack.enter_async_context(
                serve_provider_async(AsyncEchoServicer("b"), host="127.0.0.8", port=a.port)
            )
            dns = stack.enter_context(DnsServer())
            dns.set_a(NAME, ["127.0.0.7"], ttl=1)
            app = await stack.enter_async_context(dubbok.aio.App("c"))
            echo = app.reference(
                echo_pb2_grpc.EchoStub, discovery=dns.url(NAME, a.port, min_ttl=0.2)
            )
            assert (await echo.Echo(echo_pb2.EchoRequest())).served_by == "a"
            dns.set_a(NAME, ["127.0.0.8"], ttl=1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if (await echo.Echo(echo_pb2.EchoRequest())).served_by == "b":
                    break
                await asyncio.sleep(0.02)
            assert (await echo.Echo(echo_pb2.EchoRequest())).served_by == "b"

    asyncio.run(main())
