"""Traces cross the boundary with opentelemetry-instrumentation-grpc, both ways, sync and aio.

A plain grpcio client instrumented by OpenTelemetry calling a dubbok provider, and a dubbok
consumer calling a plain instrumented grpcio server, each give one trace. The package's sync
client interceptor only works through its own ``grpcext.intercept_channel``; its asyncio
client interceptors are tested on their own (they have had bugs of their own).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.instrumentation import grpc as otel_grpc
from opentelemetry.instrumentation.grpc import grpcext
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import dubbok
import dubbok.aio
from dubbok.testing import AsyncEchoServicer, EchoServicer, serve_provider, serve_provider_async
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing.testing import Recorder

SERVICE = "dubbok.testing.v1.Echo"

# The instrumentation package and the generated grpc module carry no annotations.
client_interceptor: Callable[..., Any] = otel_grpc.client_interceptor
server_interceptor: Callable[..., Any] = otel_grpc.server_interceptor
aio_client_interceptors: Callable[..., Any] = otel_grpc.aio_client_interceptors
aio_server_interceptor: Callable[..., Any] = otel_grpc.aio_server_interceptor
intercept_channel: Callable[..., Any] = grpcext.intercept_channel
add_echo: Callable[[Any, Any], None] = echo_pb2_grpc.add_EchoServicer_to_server
EchoStub: Callable[[Any], Any] = echo_pb2_grpc.EchoStub


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def assert_one_trace(spans: tuple[ReadableSpan, ...], client: str, server: str) -> None:
    """The ``client`` side's outgoing span is the parent of the ``server`` side's span."""
    assert len({s.context.trace_id for s in spans}) == 1, [s.name for s in spans]
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    [server_span] = servers
    parent = next(s for s in spans if child_of(server_span, s))
    assert parent.kind is SpanKind.CLIENT
    scopes = {
        "otel": "opentelemetry.instrumentation.grpc",
        "dubbok": "dubbok",
    }
    assert parent.instrumentation_scope is not None
    assert server_span.instrumentation_scope is not None
    assert parent.instrumentation_scope.name == scopes[client]
    assert server_span.instrumentation_scope.name == scopes[server]


class PlainEcho(echo_pb2_grpc.EchoServicer):
    def Echo(self, request: Any, context: Any) -> Any:
        return echo_pb2.EchoReply(text=request.text, served_by="plain")


class AsyncPlainEcho(echo_pb2_grpc.EchoServicer):
    async def Echo(self, request: Any, context: Any) -> Any:
        return echo_pb2.EchoReply(text=request.text, served_by="plain")


@contextlib.contextmanager
def instrumented_server(rec: Recorder) -> Iterator[int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[server_interceptor(tracer_provider=rec.tracer_provider)],
    )
    add_echo(PlainEcho(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


@contextlib.asynccontextmanager
async def instrumented_aio_server(rec: Recorder) -> AsyncIterator[int]:
    server = grpc.aio.server(
        interceptors=[aio_server_interceptor(tracer_provider=rec.tracer_provider)]
    )
    add_echo(AsyncPlainEcho(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def test_instrumented_grpcio_client_to_a_dubbok_provider() -> None:
    rec = Recorder()
    with serve_provider(EchoServicer("d"), observer=rec.observer) as provider:
        with grpc.insecure_channel(provider.address) as channel:
            traced = intercept_channel(
                channel, client_interceptor(tracer_provider=rec.tracer_provider)
            )
            reply = EchoStub(traced).Echo(echo_pb2.EchoRequest(text="x"))
    assert reply.served_by == "d"
    assert "traceparent" in reply.metadata
    assert_one_trace(rec.wait_for_spans(2), client="otel", server="dubbok")


def test_dubbok_consumer_to_an_instrumented_grpcio_server() -> None:
    rec = Recorder()
    with instrumented_server(rec) as port:
        with dubbok.App("consumer", observer=rec.observer) as app:
            echo = app.reference(
                echo_pb2_grpc.EchoStub, SERVICE, discovery=f"static://127.0.0.1:{port}"
            )
            assert echo.Echo(echo_pb2.EchoRequest(text="x")).served_by == "plain"
    spans = rec.wait_for_spans(3)
    assert_one_trace(spans, client="dubbok", server="otel")
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert (server.attributes or {})["rpc.method"] == "Echo"


def test_instrumented_grpc_aio_client_to_a_dubbok_aio_provider() -> None:
    rec = Recorder()

    async def main() -> echo_pb2.EchoReply:
        async with serve_provider_async(AsyncEchoServicer("d"), observer=rec.observer) as p:
            async with grpc.aio.insecure_channel(
                p.address,
                interceptors=aio_client_interceptors(tracer_provider=rec.tracer_provider),
            ) as channel:
                reply: echo_pb2.EchoReply = await EchoStub(channel).Echo(
                    echo_pb2.EchoRequest(text="x")
                )
                return reply

    reply = asyncio.run(main())
    assert reply.served_by == "d"
    assert_one_trace(rec.wait_for_spans(2), client="otel", server="dubbok")


def test_dubbok_aio_consumer_to_an_instrumented_grpc_aio_server() -> None:
    rec = Recorder()

    async def main() -> None:
        async with instrumented_aio_server(rec) as port:
            async with dubbok.aio.App("consumer", observer=rec.observer) as app:
                echo = app.reference(
                    echo_pb2_grpc.EchoStub, SERVICE, discovery=f"static://127.0.0.1:{port}"
                )
                reply = await echo.Echo(echo_pb2.EchoRequest(text="x"))
                assert reply.served_by == "plain"

    asyncio.run(main())
    assert_one_trace(rec.wait_for_spans(3), client="dubbok", server="otel")
