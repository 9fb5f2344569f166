"""The asyncio twins of test_tracing: spans, attachments and context through grpc.aio."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import dubbok
import dubbok.aio
from dubbok.testing import (
    AsyncEchoServicer,
    ManualDiscovery,
    free_port,
    serve_provider_async,
)
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing import attachments
from dubbok.tracing.testing import Recorder

SERVICE = "dubbok.testing.v1.Echo"


def req(**kw: Any) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


@contextlib.asynccontextmanager
async def consumer(observer: Any, discovery: Any, **options: Any) -> AsyncIterator[Any]:
    async with dubbok.aio.App("consumer", observer=observer) as app:
        yield app.reference(echo_pb2_grpc.EchoStub, SERVICE, discovery=discovery, **options)


def test_a_call_is_one_trace(rec: Recorder) -> None:
    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("p"), observer=rec.observer) as p:
            async with consumer(rec.observer, p.url) as echo:
                assert (await echo.Echo(req(text="hi"))).text == "hi"

    run(main())
    spans = rec.wait_for_spans(3)
    [call] = [s for s in spans if s.parent is None]
    [attempt] = [s for s in spans if child_of(s, call)]
    [server] = [s for s in spans if child_of(s, attempt)]
    assert (call.kind, attempt.kind, server.kind) == (
        SpanKind.CLIENT,
        SpanKind.CLIENT,
        SpanKind.SERVER,
    )
    assert [p.count for p in rec.points("rpc.server.duration")] == [1]


def test_failover_from_a_dead_provider(rec: Recorder) -> None:
    dead = f"127.0.0.1:{free_port()}"

    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("live"), observer=rec.observer) as p:
            disc = ManualDiscovery()
            disc.set(SERVICE, [dead, p.address])
            async with consumer(rec.observer, disc, methods={"Echo": {"idempotent": True}}) as echo:
                for _ in range(4):
                    rec.clear()
                    assert (await echo.Echo(req())).served_by == "live"
                    calls = [s for s in rec.wait_for_spans(3) if s.parent is None]
                    if any(e.name == "retry" for e in calls[0].events):
                        return
                pytest.fail("no call went to the dead provider first:\n" + rec.tree())

    run(main())
    spans = rec.wait_for_spans(4)
    [call] = [s for s in spans if s.parent is None]
    attempts = [s for s in spans if child_of(s, call)]
    assert sorted(int(str((a.attributes or {})["dubbok.attempt"])) for a in attempts) == [1, 2]
    failed = next(a for a in attempts if a.status.status_code is StatusCode.ERROR)
    assert f"127.0.0.1:{(failed.attributes or {})['server.port']!s}" == dead


def test_a_server_error_is_an_error_on_both_sides(rec: Recorder) -> None:
    async def main() -> None:
        async with serve_provider_async(AsyncEchoServicer("p"), observer=rec.observer) as p:
            async with consumer(rec.observer, p.url) as echo:
                with pytest.raises(dubbok.RpcError):
                    await echo.Echo(req(fail_code=grpc.StatusCode.INTERNAL.value[0]))

    run(main())
    spans = rec.wait_for_spans(3)
    assert {s.status.status_code for s in spans} == {StatusCode.ERROR}
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert (server.attributes or {})["rpc.grpc.status_code"] == 13


class Front(echo_pb2_grpc.EchoServicer):
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seen: list[dict[str, str]] = []

    async def Echo(self, request: Any, context: Any) -> Any:
        self.seen.append(dict(attachments.current()))
        # A task started by the handler inherits its context: the span and attachments.
        reply = await asyncio.create_task(self.backend.Echo(req(text=request.text)))
        return echo_pb2.EchoReply(text=reply.text, served_by="front", metadata=reply.metadata)


class Backend(AsyncEchoServicer):
    def __init__(self) -> None:
        super().__init__("backend")
        self.seen: list[dict[str, str]] = []

    async def Echo(self, request: Any, context: Any) -> Any:
        self.seen.append(dict(attachments.current()))
        return await super().Echo(request, context)


def test_handler_calls_are_children_and_carry_attachments(rec: Recorder) -> None:
    backend = Backend()
    fronts: list[Front] = []

    async def main() -> None:
        async with serve_provider_async(backend, observer=rec.observer, name="back") as back:
            async with consumer(rec.observer, back.url) as to_backend:
                front = Front(to_backend)
                fronts.append(front)
                async with serve_provider_async(front, observer=rec.observer) as edge:
                    async with consumer(rec.observer, edge.url) as echo:
                        attachments.set("tenant", "acme")
                        await echo.Echo(req())
                        attachments.clear()
                        # Concurrent calls from sibling tasks do not share attachments.
                        await asyncio.gather(echo.Echo(req()), _with_attachment(echo, "beta"))

    run(main())
    assert fronts[0].seen[0] == {"tenant": "acme"}
    assert sorted(map(str, fronts[0].seen[1:])) == sorted(map(str, [{}, {"tenant": "beta"}]))
    assert backend.seen[0] == {"tenant": "acme"}
    spans = rec.wait_for_spans(18)
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(servers) == 6
    for trace_id in {s.context.trace_id for s in spans}:
        in_trace = [s for s in spans if s.context.trace_id == trace_id]
        assert len(in_trace) == 6  # one trace per edge call, through both tiers
        front_server = next(
            s
            for s in in_trace
            if s.kind is SpanKind.SERVER
            and s.parent is not None
            and any(child_of(c, s) for c in in_trace)
        )
        [nested_call] = [s for s in in_trace if child_of(s, front_server)]
        assert nested_call.kind is SpanKind.CLIENT


async def _with_attachment(echo: Any, tenant: str) -> None:
    attachments.set("tenant", tenant)  # this task's context only
    await echo.Echo(req())
