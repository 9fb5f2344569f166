"""Sync unary-unary calls on grpc's segregated call (dubbok.transport._direct.DirectUnary)
behave as grpc's multicallable's do: replies, errors (the same error type and fields),
metadata, deadlines, wait-for-ready, requests and replies that do not (de)serialize, and
channels closed around calls in flight."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any
from unittest import mock

import grpc
import pytest
from grpc import _channel

from dubbok.stub import read_stub
from dubbok.testing import EchoServicer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.transport import ChannelPool, SyncConnection, _direct
from dubbok.transport._direct import DirectUnary

DEFINITION = read_stub(echo_pb2_grpc.EchoStub)
ECHO = DEFINITION.methods["Echo"]
STREAM = DEFINITION.methods["EchoStream"]


class _Held(EchoServicer):
    """Holds each call until released (or cancelled), so a test controls when it ends."""

    def __init__(self) -> None:
        super().__init__("h")
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancelled = threading.Event()

    def Echo(self, request: Any, context: Any) -> Any:
        if request.text != "hold":
            return super().Echo(request, context)
        context.add_callback(self.cancelled.set)
        self.started.set()
        self.release.wait(30)
        return super().Echo(request, context)


@contextmanager
def _server(servicer: Any) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    echo_pb2_grpc.add_EchoServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if isinstance(servicer, _Held):
            servicer.release.set()
        server.stop(None).wait(10)


def _both(channel: Any) -> tuple[Any, DirectUnary]:
    direct = SyncConnection("x", channel).multicallable(ECHO)
    assert isinstance(direct, DirectUnary)
    return direct._multicallable, direct


def _error(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def _same_error(a: Any, b: Any) -> None:
    assert type(b) is type(a)
    assert b.code() is a.code()
    assert b.details() == a.details()
    assert b.initial_metadata() == a.initial_metadata()
    assert b.trailing_metadata() == a.trailing_metadata()


def test_this_grpcio_has_what_direct_calls_need() -> None:
    # A grpcio upgrade that changes the calls this stands in for shows up here first
    # (calls would then quietly go through the multicallable).
    assert _direct.SUPPORTED


def test_unary_unary_is_direct_and_streams_are_not() -> None:
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        conn = SyncConnection("127.0.0.1:1", channel)
        assert isinstance(conn.multicallable(ECHO), DirectUnary)
        assert conn.multicallable(ECHO) is conn.multicallable(ECHO)
        assert not isinstance(conn.multicallable(STREAM), DirectUnary)
    pool = ChannelPool()
    try:
        assert isinstance(pool.acquire("127.0.0.1:1").multicallable(ECHO), DirectUnary)
    finally:
        pool.close()


def test_a_channel_with_client_interceptors_is_not_called_directly() -> None:
    seen: list[str] = []

    class Interceptor(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(details.method)
            return continuation(details, request)

    with _server(EchoServicer("a")) as address:
        with grpc.intercept_channel(grpc.insecure_channel(address), Interceptor()) as channel:
            mc = SyncConnection(address, channel).multicallable(ECHO)
            assert not isinstance(mc, DirectUnary)
            assert mc(echo_pb2.EchoRequest(text="i"), timeout=5).text == "i"
    assert seen == [ECHO.path]


def test_replies_errors_and_metadata_match_the_multicallable() -> None:
    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        plain, direct = _both(channel)
        request = echo_pb2.EchoRequest(text="hi", payload=b"\x00\x01")
        metadata = (("x-k", "v"), ("x-bin-bin", b"\x00\xff"))
        expected = plain(request, timeout=5, metadata=metadata)
        got = direct(request, timeout=5, metadata=metadata)
        assert got == expected
        assert got.metadata["x-k"] == "v"
        assert direct(request).served_by == "a"  # no timeout, no metadata
        # with_call and future are the multicallable's own
        reply, call = direct.with_call(request, timeout=5, metadata=metadata)
        assert reply == expected and call.code() is grpc.StatusCode.OK
        assert direct.future(request, timeout=5, metadata=metadata).result() == expected

        failing = echo_pb2.EchoRequest(fail_code=grpc.StatusCode.NOT_FOUND.value[0])
        a = _error(plain, failing, timeout=5, metadata=metadata)
        b = _error(direct, failing, timeout=5, metadata=metadata)
        _same_error(a, b)
        assert b.code() is grpc.StatusCode.NOT_FOUND
        assert b.details() == "asked to fail by a"
        assert isinstance(b, grpc.Call)
        assert b.debug_error_string()  # type: ignore[attr-defined]


def test_deadline_wait_for_ready_and_unreachable_peer() -> None:
    held = _Held()
    with _server(held) as address, grpc.insecure_channel(address) as channel:
        plain, direct = _both(channel)
        slow = echo_pb2.EchoRequest(text="hold")
        _same_error(_error(plain, slow, timeout=0.2), _error(direct, slow, timeout=0.2))
        assert _error(direct, slow, timeout=0.2).code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # Nothing listens on port 1: without wait_for_ready the call fails at once ...
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        plain, direct = _both(channel)
        request = echo_pb2.EchoRequest()
        a = _error(plain, request, timeout=5, wait_for_ready=False)
        b = _error(direct, request, timeout=5, wait_for_ready=False)
        assert b.code() is a.code() is grpc.StatusCode.UNAVAILABLE
        # ... and with it, waits for the peer, here until the deadline.
        b = _error(direct, request, timeout=0.3, wait_for_ready=True)
        assert b.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_compression_and_credentials() -> None:
    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        plain, direct = _both(channel)
        request = echo_pb2.EchoRequest(text="z")
        assert direct(request, timeout=5, compression=grpc.Compression.Gzip).text == "z"
        # per-call credentials go with the call: grpc refuses them on an insecure channel,
        # and refuses them the same way here
        token = grpc.access_token_call_credentials("t")
        a = _error(plain, request, timeout=5, credentials=token)
        b = _error(direct, request, timeout=5, credentials=token)
        _same_error(a, b)


def test_requests_and_replies_that_do_not_serialize(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: bytes) -> Any:
        raise ValueError("no such reply")

    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        plain, direct = _both(channel)
        # a request of the wrong type does not serialize: INTERNAL, before anything is sent
        wrong = "not a message"
        with caplog.at_level(logging.ERROR, logger="grpc._common"):
            a = _error(plain, wrong, timeout=5)
            b = _error(direct, wrong, timeout=5)
        _same_error(a, b)
        assert b.details() == "Exception serializing request!"
        # a reply the deserializer refuses: INTERNAL, with the call's metadata
        raw = channel.unary_unary(
            ECHO.path,
            request_serializer=echo_pb2.EchoRequest.SerializeToString,
            response_deserializer=broken,
            _registered_method=True,
        )
        direct_raw = DirectUnary(raw)
        request = echo_pb2.EchoRequest(text="r")
        with caplog.at_level(logging.ERROR, logger="grpc._common"):
            a = _error(raw, request, timeout=5)
            b = _error(direct_raw, request, timeout=5)
        _same_error(a, b)
        assert b.code() is grpc.StatusCode.INTERNAL
        assert b.details() == "Exception deserializing response!"
        # no serializers at all: bytes in, bytes out
        untyped = DirectUnary(channel.unary_unary(ECHO.path, _registered_method=True))
        reply = untyped(request.SerializeToString(), timeout=5)
        assert echo_pb2.EchoReply.FromString(reply).text == "r"


def test_a_channel_closed_under_a_call_cancels_it_and_refuses_the_next() -> None:
    held = _Held()
    with _server(held) as address:
        for kind in ("plain", "direct"):
            held.started.clear()
            held.cancelled.clear()
            channel = grpc.insecure_channel(address)
            plain, direct = _both(channel)
            call = plain if kind == "plain" else direct
            outcome: list[BaseException] = []

            def run(call: Any = call, outcome: list[BaseException] = outcome) -> None:
                try:
                    call(echo_pb2.EchoRequest(text="hold"), timeout=30)
                except BaseException as exc:  # recorded for the test
                    outcome.append(exc)

            caller = threading.Thread(target=run)
            caller.start()
            assert held.started.wait(10)
            channel.close()
            caller.join(10)
            assert not caller.is_alive()
            assert isinstance(outcome[0], grpc.RpcError), kind
            assert outcome[0].code() is grpc.StatusCode.CANCELLED, kind
            assert held.cancelled.wait(10)  # the server heard of it
            with pytest.raises(ValueError):
                call(echo_pb2.EchoRequest(), timeout=5)


def test_metadata_given_as_an_iterator_is_sent() -> None:
    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        plain, direct = _both(channel)
        request = echo_pb2.EchoRequest(text="g")
        for call in (plain, direct):
            reply = call(request, timeout=5, metadata=(kv for kv in [("x-gen", "1")]))
            assert reply.metadata["x-gen"] == "1"
            reply = call(request, timeout=5, metadata=iter([("x-it", "2")]))
            assert reply.metadata["x-it"] == "2"
            assert call(request, timeout=5, metadata=[]).text == "g"


def test_the_deadline_runs_from_the_call_not_from_the_serialized_request() -> None:
    def slow(request: Any) -> bytes:
        time.sleep(0.3)  # the serializer's own work, not a wait
        return bytes(request.SerializeToString())

    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        raw = channel.unary_unary(
            ECHO.path,
            request_serializer=slow,
            response_deserializer=echo_pb2.EchoReply.FromString,
            _registered_method=True,
        )
        request = echo_pb2.EchoRequest(text="d")
        a = _error(raw, request, timeout=0.2)
        b = _error(DirectUnary(raw), request, timeout=0.2)
        assert b.code() is a.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_patched_grpc_call_is_honoured() -> None:
    # APM agents (wrapt) and test suites (mock.patch) replace grpc's class's __call__; a
    # multicallable made directly before the patch must go through the patched one.
    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        _, direct = _both(channel)
        request = echo_pb2.EchoRequest(text="p")
        target = "grpc._channel._UnaryUnaryMultiCallable.__call__"
        with mock.patch(target, autospec=True, return_value="patched") as patched:
            assert direct(request, timeout=5) == "patched"
            assert patched.call_count == 1
            # and one made while it is patched is not made direct at all
            assert not _direct.eligible(channel.unary_unary(ECHO.path))
        assert direct(request, timeout=5).text == "p"
        # a patch of a function deeper in grpc's call path: new multicallables go through it
        wrapped = _channel._end_unary_response_blocking
        seen: list[str] = []

        def spy(*args: Any, **kwargs: Any) -> Any:
            seen.append("end")
            return wrapped(*args, **kwargs)

        with mock.patch.object(_channel, "_end_unary_response_blocking", spy):
            mc = SyncConnection(address, channel).multicallable(ECHO)
            assert not isinstance(mc, DirectUnary)
            assert mc(request, timeout=5).text == "p"
        assert seen == ["end"]
        assert _direct.eligible(channel.unary_unary(ECHO.path))


def test_with_call_and_future_follow_a_patched_class() -> None:
    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        _, direct = _both(channel)
        request = echo_pb2.EchoRequest(text="w")
        target = "grpc._channel._UnaryUnaryMultiCallable.with_call"
        with mock.patch(target, autospec=True, return_value=("r", None)) as patched:
            assert direct.with_call(request, timeout=5) == ("r", None)
        assert patched.call_count == 1
        assert direct.future(request, timeout=5).result(5).text == "w"


def test_an_agent_wrapping_blocking_with_wrapt_sees_direct_calls() -> None:
    # New Relic / Instana style: wrapt replaces a method of grpc's class in place.
    wrapt = pytest.importorskip("wrapt")
    cls = _channel._UnaryUnaryMultiCallable
    with _server(EchoServicer("a")) as address, grpc.insecure_channel(address) as channel:
        _, direct = _both(channel)
        request = echo_pb2.EchoRequest(text="b")
        seen: list[str] = []

        def spy(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            seen.append(instance._method.decode())
            return wrapped(*args, **kwargs)

        original = cls.__dict__["_blocking"]
        wrapt.wrap_function_wrapper(cls, "_blocking", spy)
        try:
            assert direct(request, timeout=5).text == "b"
        finally:
            cls._blocking = original
        assert seen == [ECHO.path]
        assert direct(request, timeout=5).text == "b"
        assert seen == [ECHO.path]  # unwrapped: direct again, the spy no longer sees it
