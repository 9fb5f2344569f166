"""Attachments through real providers and consumers with no observer anywhere (sync and
asyncio, unary and server-streaming, two hops, fan-out, retries and failback), and between
an observed App and one that is not."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

import dubbok
import dubbok.aio
from dubbok import attachments
from dubbok.testing import (
    AsyncEchoServicer,
    EchoServicer,
    serve_provider,
    serve_provider_async,
    wait_until,
)
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing.testing import Recorder

SERVICE = "dubbok.testing.v1.Echo"
ATT = attachments.PREFIX
_LOCK = threading.Lock()


def req(**kw: Any) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)


@pytest.fixture(autouse=True)
def no_attachments() -> Iterator[None]:
    # Attachments live in a contextvar of the test's thread: start and end empty.
    attachments.clear()
    yield
    attachments.clear()


# -- sync -------------------------------------------------------------------------------------


class Backend(EchoServicer):
    """Echo that records the attachments each of its handlers saw."""

    def __init__(self, name: str = "backend", failures: list[int] | None = None) -> None:
        super().__init__(name)
        self.seen: list[dict[str, str]] = []
        # This many calls fail (INTERNAL) first; a list so that backends can share it.
        self.failures = failures if failures is not None else [0]

    def _record(self, context: Any) -> None:
        with _LOCK:
            self.seen.append(dict(attachments.current()))
            fail = self.failures[0] > 0
            if fail:
                self.failures[0] -= 1
        if fail:
            context.abort(grpc.StatusCode.INTERNAL, f"{self.name} fails this call")

    def Echo(self, request: Any, context: Any) -> Any:
        self._record(context)
        return super().Echo(request, context)

    def EchoStream(self, request: Any, context: Any) -> Iterator[Any]:
        self._record(context)
        yield from super().EchoStream(request, context)


class Front(echo_pb2_grpc.EchoServicer):
    """Answers by calling the backend, unary or streaming; records what it saw."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seen: list[dict[str, str]] = []

    def Echo(self, request: Any, context: Any) -> Any:
        self.seen.append(dict(attachments.current()))
        attachments.set("hop", "front")
        reply = self.backend.Echo(req(text=request.text))
        return echo_pb2.EchoReply(text=reply.text, served_by="front", metadata=reply.metadata)

    def EchoStream(self, request: Any, context: Any) -> Iterator[Any]:
        self.seen.append(dict(attachments.current()))
        attachments.set("hop", "front")
        for reply in self.backend.EchoStream(req(text=request.text, count=request.count)):
            yield echo_pb2.EchoReply(text=reply.text, served_by="front")


@contextlib.contextmanager
def consumer(discovery: Any, observer: Any = None, **options: Any) -> Iterator[Any]:
    with dubbok.App("consumer", observer=observer) as app:
        assert app.observer is observer
        yield app.reference(echo_pb2_grpc.EchoStub, SERVICE, discovery=discovery, **options)


@contextlib.contextmanager
def two_tiers(observer: Any = None) -> Iterator[tuple[Any, Front, Backend]]:
    """consumer → front provider → (its handler calls) → backend provider."""
    backend = Backend()
    with serve_provider(backend, observer=observer, name="backend") as back:
        with consumer(back.url, observer) as to_backend:
            front = Front(to_backend)
            with serve_provider(front, observer=observer, name="front") as edge:
                with consumer(edge.url, observer) as echo:
                    yield echo, front, backend


def test_unary_calls_carry_them_two_hops_with_no_observer() -> None:
    with two_tiers() as (echo, front, backend):
        attachments.set("tenant", "acme")
        reply = echo.Echo(req())
        attachments.remove("tenant")
        echo.Echo(req())
    assert front.seen == [{"tenant": "acme"}, {}]
    assert backend.seen == [{"tenant": "acme", "hop": "front"}, {"hop": "front"}]
    assert reply.metadata[ATT + "tenant"] == "acme"
    assert "traceparent" not in reply.metadata


def test_server_streams_carry_them_two_hops_with_no_observer() -> None:
    with two_tiers() as (echo, front, backend):
        with attachments.attached({"tenant": "acme"}):
            stream = echo.EchoStream(req(text="s", count=3))
        # Read after the block: the stream carries what was current when it started.
        assert [r.text for r in stream] == ["s0", "s1", "s2"]
    assert front.seen == [{"tenant": "acme"}]
    assert backend.seen == [{"tenant": "acme", "hop": "front"}]


def test_every_attempt_of_a_retried_call_carries_them() -> None:
    failures = [1]  # the first attempt fails, wherever it goes
    first, second = Backend("a", failures), Backend("b", failures)
    with serve_provider(first) as a, serve_provider(second) as b:
        with consumer(
            f"static://{a.address},{b.address}",
            retries=1,
            breaker=False,
            methods={"Echo": {"idempotent": True}},
        ) as echo:
            attachments.set("tenant", "acme")
            reply = echo.Echo(req())
    assert reply.metadata[ATT + "tenant"] == "acme"
    assert reply.metadata["x-dubbok-attempt"] == "2"
    assert first.seen + second.seen == [{"tenant": "acme"}] * 2


@pytest.mark.parametrize("cluster", ["forking", "broadcast"])
def test_fan_out_attempts_carry_them(cluster: str) -> None:
    first, second = Backend("a"), Backend("b")
    with serve_provider(first) as a, serve_provider(second) as b:
        options = {"forks": 2} if cluster == "forking" else {}
        with consumer(
            f"static://{a.address},{b.address}", cluster=cluster, cluster_options=options
        ) as echo:
            attachments.set("tenant", "acme")
            echo.Echo(req())
    seen = first.seen + second.seen
    # Broadcast waits for both; a forking loser may be cancelled before its handler runs.
    assert len(seen) == 2 if cluster == "broadcast" else 1 <= len(seen) <= 2
    assert seen == [{"tenant": "acme"}] * len(seen)


def test_a_failback_retry_carries_the_attachments_of_the_call_that_failed() -> None:
    flaky = Backend("flaky", [1])
    with serve_provider(flaky) as p:
        with consumer(
            p.url,
            cluster="failback",
            breaker=False,
            cluster_options={"interval": 0.05, "retries": 3},
        ) as echo:
            with attachments.attached({"tenant": "acme"}):
                assert echo.Echo(req()) == echo_pb2.EchoReply()  # degraded, queued
            failback = echo._failback
            assert wait_until(lambda: failback.delivered == 1)
    assert flaky.seen == [{"tenant": "acme"}] * 2


def test_an_observed_consumer_and_an_unobserved_provider() -> None:
    rec = Recorder()
    try:
        backend = Backend()
        with serve_provider(backend) as provider:
            with consumer(provider.url, rec.observer) as echo:
                attachments.set("tenant", "acme")
                reply = echo.Echo(req())
        assert backend.seen == [{"tenant": "acme"}]
        assert "traceparent" in reply.metadata  # the observer still did its part
        assert len(rec.wait_for_spans(2)) == 2
    finally:
        rec.shutdown()


def test_an_unobserved_consumer_and_an_observed_provider() -> None:
    rec = Recorder()
    try:
        backend = Backend()
        with serve_provider(backend, observer=rec.observer) as provider:
            with consumer(provider.url) as echo:
                attachments.set("tenant", "acme")
                echo.Echo(req())
        assert backend.seen == [{"tenant": "acme"}]
    finally:
        rec.shutdown()


# -- asyncio ----------------------------------------------------------------------------------


class AsyncBackend(AsyncEchoServicer):
    def __init__(self, name: str = "backend", failures: list[int] | None = None) -> None:
        super().__init__(name)
        self.seen: list[dict[str, str]] = []
        self.failures = failures if failures is not None else [0]

    async def _record(self, context: Any) -> None:
        self.seen.append(dict(attachments.current()))
        if self.failures[0] > 0:
            self.failures[0] -= 1
            await context.abort(grpc.StatusCode.INTERNAL, f"{self.name} fails this call")

    async def Echo(self, request: Any, context: Any) -> Any:
        await self._record(context)
        return await super().Echo(request, context)

    async def EchoStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._record(context)
        async for reply in super().EchoStream(request, context):
            yield reply


class AsyncFront(echo_pb2_grpc.EchoServicer):
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seen: list[dict[str, str]] = []

    async def Echo(self, request: Any, context: Any) -> Any:
        self.seen.append(dict(attachments.current()))
        attachments.set("hop", "front")
        reply = await self.backend.Echo(req(text=request.text))
        return echo_pb2.EchoReply(text=reply.text, served_by="front", metadata=reply.metadata)

    async def EchoStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.seen.append(dict(attachments.current()))
        attachments.set("hop", "front")
        async for reply in self.backend.EchoStream(req(text=request.text, count=request.count)):
            yield echo_pb2.EchoReply(text=reply.text, served_by="front")


@contextlib.asynccontextmanager
async def async_consumer(
    discovery: Any, observer: Any = None, **options: Any
) -> AsyncIterator[Any]:
    async with dubbok.aio.App("consumer", observer=observer) as app:
        assert app.observer is observer
        yield app.reference(echo_pb2_grpc.EchoStub, SERVICE, discovery=discovery, **options)


@contextlib.asynccontextmanager
async def async_two_tiers() -> AsyncIterator[tuple[Any, AsyncFront, AsyncBackend]]:
    backend = AsyncBackend()
    async with serve_provider_async(backend, observer=None, name="backend") as back:
        async with async_consumer(back.url) as to_backend:
            front = AsyncFront(to_backend)
            async with serve_provider_async(front, observer=None, name="front") as edge:
                async with async_consumer(edge.url) as echo:
                    yield echo, front, backend


def test_asyncio_unary_and_streams_carry_them_two_hops_with_no_observer() -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with async_two_tiers() as (echo, front, backend):
            attachments.set("tenant", "acme")
            reply = await echo.Echo(req())
            texts = [r.text async for r in echo.EchoStream(req(text="s", count=2))]
            attachments.clear()
            # Concurrent calls from sibling tasks do not share attachments.
            await asyncio.gather(echo.Echo(req()), _with_attachment(echo, "beta"))
            seen.update(reply=reply, texts=texts, front=front.seen, backend=backend.seen)

    asyncio.run(main())
    assert seen["reply"].metadata[ATT + "tenant"] == "acme"
    assert seen["texts"] == ["s0", "s1"]
    assert seen["front"][:2] == [{"tenant": "acme"}] * 2
    assert sorted(map(str, seen["front"][2:])) == sorted(map(str, [{}, {"tenant": "beta"}]))
    assert seen["backend"][:2] == [{"tenant": "acme", "hop": "front"}] * 2
    assert sorted(map(str, seen["backend"][2:])) == sorted(
        map(str, [{"hop": "front"}, {"tenant": "beta", "hop": "front"}])
    )


async def _with_attachment(echo: Any, tenant: str) -> None:
    attachments.set("tenant", tenant)  # this task's context only
    await echo.Echo(req())


def test_asyncio_retries_fan_out_and_failback_carry_them() -> None:
    failures = [1]
    first, second = AsyncBackend("a", failures), AsyncBackend("b", failures)
    flaky = AsyncBackend("flaky", [2])
    retried: list[dict[str, str]] = []

    async def main() -> None:
        async with serve_provider_async(first) as a, serve_provider_async(second) as b:
            url = f"static://{a.address},{b.address}"
            async with async_consumer(
                url, retries=1, breaker=False, methods={"Echo": {"idempotent": True}}
            ) as echo:
                with attachments.attached({"tenant": "acme"}):
                    reply = await echo.Echo(req())
                assert reply.metadata["x-dubbok-attempt"] == "2"
            retried.extend(first.seen + second.seen)
            first.seen.clear()
            second.seen.clear()
            async with async_consumer(url, cluster="broadcast") as echo:
                with attachments.attached({"tenant": "all"}):
                    await echo.Echo(req())
        async with serve_provider_async(flaky) as p:
            async with async_consumer(
                p.url,
                cluster="failback",
                breaker=False,
                cluster_options={"interval": 0.05, "retries": 3},
            ) as echo:
                # Two failed calls, queued; the background task that retries them is made
                # in the first one's context, yet each retry carries its own call's set.
                for tenant in ("first", "second"):
                    with attachments.attached({"tenant": tenant}):
                        assert await echo.Echo(req()) == echo_pb2.EchoReply()  # degraded
                failback = echo._failback
                assert await _poll(lambda: failback.delivered == 2)

    asyncio.run(main())
    assert retried == [{"tenant": "acme"}] * 2
    assert first.seen + second.seen == [{"tenant": "all"}] * 2
    assert flaky.seen == [{"tenant": "first"}, {"tenant": "second"}] * 2


async def _poll(predicate: Any, timeout: float = 5.0) -> bool:
    """``wait_until`` for a test on the event loop: poll without blocking the loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True
