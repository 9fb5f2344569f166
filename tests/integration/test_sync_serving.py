"""The sync provider's server: unary requests received on the serving thread
(dubbok._serving), and grpc's own serving (DUBBOK_SERVING=grpc) behave the same to every
caller: all four call kinds, health, reflection, unknown methods, malformed requests,
errors, trailing metadata, deadlines, cancellation, the handler-thread bound and stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dubbok import _serving
from dubbok.testing import EchoServicer, serve_provider, wait_until
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

SERVICE = "dubbok.testing.v1.Echo"


@pytest.fixture(params=["fast", "grpc"])
def serving(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "grpc":
        monkeypatch.setenv(_serving.ENV, "grpc")
    else:
        monkeypatch.delenv(_serving.ENV, raising=False)
    yield request.param


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


class _Rich(EchoServicer):
    """Echo, plus: ``raise`` raises; ``trailer`` sets trailing metadata and a code."""

    def Echo(self, request: Any, context: Any) -> Any:
        if request.text == "raise":
            raise RuntimeError("the handler broke")
        if request.text == "trailer":
            context.set_trailing_metadata((("x-trailer", "t"),))
            context.set_code(grpc.StatusCode.ALREADY_EXISTS)
            context.set_details("set by the handler")
            return echo_pb2.EchoReply()
        return super().Echo(request, context)


class _Held(EchoServicer):
    """Holds every ``Echo`` until its call ends or :meth:`release`; counts handlers at once."""

    def __init__(self) -> None:
        super().__init__("h")
        self.started = threading.Event()
        self.ended = threading.Event()  # a held call's context reported it inactive
        self.lock = threading.Lock()
        self.released = False
        self.held: list[threading.Event] = []
        self.running = 0
        self.peak = 0
        self.texts: list[str] = []  # every request a handler ran for

    def release(self) -> None:
        with self.lock:
            self.released = True
            for done in self.held:
                done.set()

    def Echo(self, request: Any, context: Any) -> Any:
        done = threading.Event()
        context.add_callback(done.set)
        with self.lock:
            self.texts.append(request.text)
            self.running += 1
            self.peak = max(self.peak, self.running)
            if self.released:
                done.set()
            self.held.append(done)
        self.started.set()
        try:
            done.wait(30)
            if not context.is_active():
                self.ended.set()
            return echo_pb2.EchoReply(text=request.text, served_by=self.name)
        finally:
            with self.lock:
                self.running -= 1


def _refused(stub: Any) -> bool:
    try:
        stub.Echo(echo_pb2.EchoRequest(text="probe"), timeout=0.5)
    except grpc.RpcError as error:
        return error.code() is grpc.StatusCode.UNAVAILABLE
    return False


def test_this_grpcio_has_what_the_fast_path_needs() -> None:
    # A grpcio upgrade that removes or changes the internals shows up here first (the
    # provider would then quietly run on grpc's own serving).
    assert _serving.SUPPORTED


def test_the_serving_is_the_one_asked_for(serving: str) -> None:
    before = len(_threads("dubbok-serving"))
    with serve_provider(EchoServicer("p")) as provider:
        stub = echo_pb2_grpc.EchoStub(grpc.insecure_channel(provider.address))
        assert stub.Echo(echo_pb2.EchoRequest(text="x")).text == "x"
        assert isinstance(provider.app._server._state.thread_pool, _serving.HandlerPool)
        started = len(_threads("dubbok-serving")) - before
        assert started == (1 if serving == "fast" else 0)


def test_every_call_kind_health_reflection_and_errors(serving: str) -> None:
    with (
        serve_provider(_Rich("p")) as provider,
        grpc.insecure_channel(provider.address) as channel,
    ):
        stub = echo_pb2_grpc.EchoStub(channel)
        md = (("x-caller", "c"),)
        reply = stub.Echo(echo_pb2.EchoRequest(text="hi", payload=b"\x01"), metadata=md)
        assert (reply.text, reply.payload, reply.served_by) == ("hi", b"\x01", "p")
        assert reply.metadata["x-caller"] == "c"
        stream = stub.EchoStream(echo_pb2.EchoRequest(text="s", count=3))
        assert [r.text for r in stream] == ["s0", "s1", "s2"]
        texts = [echo_pb2.EchoRequest(text=t) for t in "abc"]
        assert stub.EchoCollect(iter(texts)).text == "a,b,c"
        assert [r.text for r in stub.EchoChat(iter(texts))] == ["a", "b", "c"]

        with pytest.raises(grpc.RpcError) as aborted:
            stub.Echo(echo_pb2.EchoRequest(fail_code=5))
        assert aborted.value.code() is grpc.StatusCode.NOT_FOUND
        assert aborted.value.details() == "asked to fail by p"
        with pytest.raises(grpc.RpcError) as raised:
            stub.Echo(echo_pb2.EchoRequest(text="raise"))
        assert raised.value.code() is grpc.StatusCode.UNKNOWN
        with pytest.raises(grpc.RpcError) as trailed:
            stub.Echo(echo_pb2.EchoRequest(text="trailer"))
        assert trailed.value.code() is grpc.StatusCode.ALREADY_EXISTS
        assert trailed.value.details() == "set by the handler"
        assert ("x-trailer", "t") in trailed.value.trailing_metadata()

        # a method nobody serves, on a service that exists and one that does not
        for path in (f"/{SERVICE}/Nope", "/no.Such/Method"):
            with pytest.raises(grpc.RpcError) as missing:
                channel.unary_unary(path)(b"")
            assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED

        health = health_pb2_grpc.HealthStub(channel)
        checked = health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        answers = list(reflection.ServerReflectionInfo(asked))
        names = {s.name for s in answers[0].list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names


def test_malformed_requests_get_a_status_and_the_server_goes_on(serving: str) -> None:
    with (
        serve_provider(EchoServicer("p")) as provider,
        grpc.insecure_channel(provider.address) as channel,
    ):
        path = f"/{SERVICE}/Echo"
        # bytes that are no EchoRequest
        with pytest.raises(grpc.RpcError) as garbled:
            channel.unary_unary(path)(b"\xff\xff\xff", timeout=10)
        assert garbled.value.code() is grpc.StatusCode.INTERNAL
        # a unary method called with no request message, and with two
        with pytest.raises(grpc.RpcError) as none:
            channel.stream_unary(path)(iter([]), timeout=10)
        assert none.value.code() is grpc.StatusCode.UNIMPLEMENTED
        request = echo_pb2.EchoRequest(text="one").SerializeToString()
        two = channel.stream_unary(path, response_deserializer=echo_pb2.EchoReply.FromString)
        assert two(iter([request, request]), timeout=10).text == "one"
        stub = echo_pb2_grpc.EchoStub(channel)
        assert stub.Echo(echo_pb2.EchoRequest(text="after")).text == "after"


def test_deadlines_and_cancellation_reach_the_handler(serving: str) -> None:
    servicer = _Held()
    with (
        serve_provider(servicer) as provider,
        grpc.insecure_channel(provider.address) as channel,
    ):
        stub = echo_pb2_grpc.EchoStub(channel)
        with pytest.raises(grpc.RpcError) as late:
            stub.Echo(echo_pb2.EchoRequest(text="late"), timeout=0.3)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert servicer.ended.wait(10)

        servicer.started.clear()
        servicer.ended.clear()
        future = stub.Echo.future(echo_pb2.EchoRequest(text="cancelled"))
        assert servicer.started.wait(10)
        assert future.cancel()
        assert servicer.ended.wait(10)
        assert wait_until(lambda: servicer.running == 0, 10)
        servicer.release()
        assert stub.Echo(echo_pb2.EchoRequest(text="after")).text == "after"


def test_many_calls_at_once_across_methods(serving: str) -> None:
    with (
        serve_provider(EchoServicer("p")) as provider,
        grpc.insecure_channel(provider.address) as channel,
    ):
        stub = echo_pb2_grpc.EchoStub(channel)
        unary = [
            (i, stub.Echo.future(echo_pb2.EchoRequest(text=str(i), delay=0.001 * (i % 5))))
            for i in range(0, 300, 2)
        ]
        streams = [
            (i, stub.EchoStream(echo_pb2.EchoRequest(text=str(i), delay=0.001 * (i % 5))))
            for i in range(1, 300, 2)
        ]
        assert all(f.result(timeout=30).text == str(i) for i, f in unary)
        assert all([r.text for r in s] == [f"{i}0"] for i, s in streams)


def test_handlers_never_outnumber_max_workers_and_queued_calls_all_run(serving: str) -> None:
    servicer = _Held()
    with (
        serve_provider(servicer, max_workers=3) as provider,
        grpc.insecure_channel(provider.address) as channel,
    ):
        stub = echo_pb2_grpc.EchoStub(channel)
        futures = [stub.Echo.future(echo_pb2.EchoRequest(text=str(i))) for i in range(12)]
        assert wait_until(lambda: servicer.running == 3, 10)
        servicer.release()
        assert [f.result(timeout=30).text for f in futures] == [str(i) for i in range(12)]
        assert servicer.peak == 3
        assert provider.app._server._state.thread_pool.threads == 3


def test_calls_that_die_while_queued_never_reach_the_handler(serving: str) -> None:
    # One handler thread, held; calls queued behind it pass their deadline. grpc's own
    # serving never runs a call that ended while it waited; neither may dubbok's.
    servicer = _Held()
    with (
        serve_provider(servicer, max_workers=1) as provider,
        grpc.insecure_channel(provider.address) as channel,
    ):
        stub = echo_pb2_grpc.EchoStub(channel)
        held = stub.Echo.future(echo_pb2.EchoRequest(text="held"))
        assert servicer.started.wait(10)
        queued = [
            stub.Echo.future(echo_pb2.EchoRequest(text=f"q{i}"), timeout=0.3) for i in range(5)
        ]
        for future in queued:
            with pytest.raises(grpc.RpcError) as late:
                future.result(timeout=10)
            assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        servicer.release()
        assert held.result(timeout=10).text == "held"
        assert stub.Echo(echo_pb2.EchoRequest(text="after"), timeout=10).text == "after"
        assert servicer.texts == ["held", "after"]


def test_a_graceful_stop_finishes_calls_in_flight_and_ends_its_threads(serving: str) -> None:
    servicer = _Held()
    with serve_provider(servicer, max_workers=4) as provider:
        app = provider.app
        with grpc.insecure_channel(provider.address) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            slow = stub.Echo.future(echo_pb2.EchoRequest(text="slow"))
            assert servicer.started.wait(10)
            stopping = threading.Thread(target=app.stop, kwargs={"grace": 10})
            stopping.start()
            assert wait_until(lambda: _refused(stub), 10)  # the server stopped accepting
            servicer.release()
            assert slow.result(timeout=10).text == "slow"  # finished within the grace
            stopping.join(10)
            assert not stopping.is_alive()
    assert wait_until(lambda: not _threads("dubbok-handler") and not _threads("dubbok-serving"), 10)


def test_a_stop_without_grace_cancels_calls_in_flight(serving: str) -> None:
    servicer = _Held()
    with serve_provider(servicer) as provider:
        with grpc.insecure_channel(provider.address) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            slow = stub.Echo.future(echo_pb2.EchoRequest(text="slow"))
            assert servicer.started.wait(10)
            provider.app.stop(grace=0)
            with pytest.raises(grpc.RpcError):
                slow.result(timeout=10)
            assert servicer.ended.wait(10)
    assert wait_until(lambda: not _threads("dubbok-handler") and not _threads("dubbok-serving"), 10)
