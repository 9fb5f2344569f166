"""Sync provider and consumer over real gRPC on loopback: the consumer pipeline end to end."""

from __future__ import annotations

import threading
from collections import Counter

import grpc
import pytest

import dubbok
from dubbok.testing import EchoServicer, serve_provider
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from tests.conftest import Providers, static_url

SERVICE = "dubbok.testing.v1.Echo"


def req(**kw: object) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)  # type: ignore[arg-type]


def test_round_robin_spreads_unary_calls_over_every_provider(echo_providers: Providers) -> None:
    with dubbok.App("consumer") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub, discovery=static_url(echo_providers), loadbalance="roundrobin"
        )
        served = Counter(echo.Echo(req(text="hi")).served_by for _ in range(30))
    assert served == {"p0": 10, "p1": 10, "p2": 10}


def test_service_name_defaults_to_the_protos(echo_providers: Providers) -> None:
    with dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=static_url(echo_providers))
        assert echo.service == SERVICE  # type: ignore[attr-defined]


def test_all_four_method_kinds(echo_providers: Providers) -> None:
    with dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, SERVICE, discovery=static_url(echo_providers))
        assert echo.Echo(req(text="a")).text == "a"
        assert [r.text for r in echo.EchoStream(req(text="s", count=3))] == ["s0", "s1", "s2"]
        assert echo.EchoCollect(iter([req(text="x"), req(text="y")])).text == "x,y"
        chat = echo.EchoChat(iter([req(text="1"), req(text="2")]))
        assert [r.text for r in chat] == ["1", "2"]


def test_metadata_passes_through(echo_providers: Providers) -> None:
    with dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=static_url(echo_providers))
        reply = echo.Echo(req(), metadata=[("x-user", "42")])
    assert reply.metadata["x-user"] == "42"


def test_with_call_returns_the_call(echo_providers: Providers) -> None:
    with dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=static_url(echo_providers))
        reply, call = echo.Echo.with_call(req(text="w"))
    assert reply.text == "w"
    assert call.code() is grpc.StatusCode.OK


def test_failover_skips_a_dead_provider(echo_providers: Providers) -> None:
    dead = echo_providers[0][0]
    dead.app.stop(0)
    with dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=static_url(echo_providers))
        served = Counter(echo.Echo(req()).served_by for _ in range(12))
    assert set(served) == {"p1", "p2"}
    assert sum(served.values()) == 12


def test_failfast_surfaces_the_first_failure(echo_providers: Providers) -> None:
    echo_providers[0][0].app.stop(0)
    with dubbok.App("consumer") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=static_url(echo_providers),
            cluster="failfast",
            loadbalance="roundrobin",
        )
        with pytest.raises(dubbok.RpcError) as info:
            for _ in range(3):  # round robin reaches the dead one within three calls
                echo.Echo(req())
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(info.value.attempts) == 1
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_business_errors_are_never_retried(echo_providers: Providers) -> None:
    with dubbok.App("consumer") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=static_url(echo_providers),
            methods={"Echo": {"idempotent": True}},
        )
        with pytest.raises(dubbok.RpcError) as info:
            echo.Echo(req(fail_code=grpc.StatusCode.INVALID_ARGUMENT.value[0]))
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.attempts) == 1
    assert sum(s.calls for _, s in echo_providers) == 1


def test_idempotent_methods_fail_over_on_server_errors(echo_providers: Providers) -> None:
    internal = grpc.StatusCode.INTERNAL.value[0]
    with dubbok.App("consumer") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=static_url(echo_providers),
            retries=2,
            methods={"Echo": {"idempotent": True}},
        )
        with pytest.raises(dubbok.RpcError) as info:
            echo.Echo(req(fail_code=internal))
        plain = app.reference(echo_pb2_grpc.EchoStub, discovery=static_url(echo_providers))
        with pytest.raises(dubbok.RpcError) as once:
            plain.Echo(req(fail_code=internal))
    # Every provider was tried once, and the error names each of them.
    assert sorted(a.endpoint for a in info.value.attempts) == sorted(
        p.address for p, _ in echo_providers
    )
    for p, _ in echo_providers:
        assert p.address in str(info.value)
    # Not idempotent: the handler may have run, so no second attempt.
    assert len(once.value.attempts) == 1


def test_timeout_becomes_a_deadline(echo_providers: Providers) -> None:
    with dubbok.App("consumer") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=static_url(echo_providers),
            timeout=5.0,
            methods={"Echo": {"timeout": 0.2}},
        )
        with pytest.raises(dubbok.DeadlineExceededError) as info:
            echo.Echo(req(delay=1.0))
        with pytest.raises(dubbok.DeadlineExceededError):
            echo.Echo(req(delay=1.0), timeout=0.1)
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    # Not idempotent: a timed-out attempt may have run, so it is not retried.
    assert len(info.value.attempts) == 1


def test_provider_advertised_options_do_not_need_a_registry() -> None:
    @dubbok.service(version="1.0.0")
    class Slow(EchoServicer):
        @dubbok.method(timeout=0.1, idempotent=True)
        def Echo(self, request, context):  # type: ignore[no-untyped-def]
            return super().Echo(request, context)

    # With static discovery nothing is advertised: the consumer's own options apply.
    with serve_provider(Slow("s")) as provider, dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, timeout=2.0)
        assert echo.Echo(req(delay=0.3)).served_by == "s"


def test_incoming_deadline_bounds_outgoing_calls() -> None:
    """A handler's outgoing call carries the handler's own deadline, not a longer one."""
    seen: list[float] = []

    class Backend(EchoServicer):
        def Echo(self, request, context):  # type: ignore[no-untyped-def]
            seen.append(context.time_remaining())
            return super().Echo(request, context)

    with serve_provider(Backend("backend")) as backend, dubbok.App("middle") as middle_app:
        downstream = middle_app.reference(
            echo_pb2_grpc.EchoStub, discovery=backend.url, timeout=10.0
        )

        class Middle(EchoServicer):
            def Echo(self, request, context):  # type: ignore[no-untyped-def]
                return downstream.Echo(req())

        with serve_provider(Middle("m")) as middle, dubbok.App("edge") as edge:
            front = edge.reference(echo_pb2_grpc.EchoStub, discovery=middle.url)
            front.Echo(req(), timeout=0.5)
    assert len(seen) == 1
    assert 0 < seen[0] <= 0.6  # 0.5 s plus clock skew; far below the 10 s timeout


def test_graceful_stop_lets_an_in_flight_call_finish() -> None:
    servicer = EchoServicer("slow")
    with serve_provider(servicer) as provider, dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, timeout=5.0)
        result: dict[str, object] = {}

        def call() -> None:
            try:
                result["reply"] = echo.Echo(req(text="done", delay=0.5))
            except Exception as exc:  # reported below
                result["error"] = exc

        t = threading.Thread(target=call)
        t.start()
        # Wait until the handler has the call, then stop with a grace longer than its work.
        deadline_ok = _poll(lambda: servicer.calls == 1, timeout=5.0)
        assert deadline_ok
        provider.app.stop(grace=3.0)
        t.join(5.0)
    assert "error" not in result, result.get("error")
    assert result["reply"].text == "done"  # type: ignore[attr-defined]


def test_stop_turns_health_not_serving_before_refusing_calls() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    servicer = EchoServicer("h")
    # The drain period is the window in which health says NOT_SERVING but calls still work.
    with serve_provider(servicer, drain=1.0) as provider, dubbok.App("consumer") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, timeout=5.0)
        with grpc.insecure_channel(provider.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service=SERVICE)
            assert health.Check(check).status == health_pb2.HealthCheckResponse.SERVING
            t = threading.Thread(target=lambda: echo.Echo(req(delay=0.6)))
            t.start()
            assert _poll(lambda: servicer.calls == 1, timeout=5.0)
            stopper = threading.Thread(target=provider.app.stop, kwargs={"grace": 3.0})
            stopper.start()
            # While the in-flight call finishes, health already says NOT_SERVING.
            assert _poll(
                lambda: _status(health, check) == health_pb2.HealthCheckResponse.NOT_SERVING,
                timeout=3.0,
            )
            t.join(5.0)
            stopper.join(5.0)


def _status(health: object, check: object) -> object:
    try:
        return health.Check(check, timeout=1.0).status  # type: ignore[attr-defined]
    except grpc.RpcError:
        return None


def _poll(predicate: object, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        threading.Event().wait(0.01)
    return False
