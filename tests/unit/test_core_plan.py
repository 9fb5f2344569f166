"""The pure CallPlan: attempts, retries and deadlines, with a fake clock and no sockets."""

from __future__ import annotations

import grpc
import pytest

from dubbok.balancer.roundrobin import RoundRobinBalancer
from dubbok.cluster import FailfastPolicy, FailoverPolicy
from dubbok.core import CallPlan, MethodPolicy, Route
from dubbok.endpoint import Endpoint
from dubbok.errors import DeadlineExceededError, NoProviderError, RpcError

S = grpc.StatusCode
EPS = tuple(Endpoint.parse(f"10.0.0.{i}:50051") for i in range(1, 4))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def route(endpoints: tuple[Endpoint, ...] = EPS) -> Route:
    balancer = RoundRobinBalancer()
    return Route("svc.S", endpoints, balancer.build(endpoints), balancer, {}, {}, len(endpoints))


def policy(
    retries: int = 2, idempotent: bool = False, timeout: float | None = 1.0, cluster: object = None
) -> MethodPolicy:
    return MethodPolicy("svc.S", "M", timeout, retries, idempotent, cluster or FailoverPolicy())  # type: ignore[arg-type]


def test_failover_tries_each_endpoint_once_and_names_them_all() -> None:
    clock = FakeClock()
    plan = CallPlan(route(), policy(idempotent=True), None, (), None, clock)
    seen = []
    while True:
        ep, _ = plan.next()
        seen.append(ep.address)
        if not plan.failed(ep, S.UNAVAILABLE, "boom"):
            break
    assert sorted(seen) == sorted(e.address for e in EPS)
    err = plan.error()
    assert isinstance(err, RpcError)
    for e in EPS:
        assert e.address in str(err)
    assert [a.endpoint for a in err.attempts] == seen


@pytest.mark.parametrize(
    ("code", "details", "idempotent", "retried"),
    [
        (S.UNAVAILABLE, "failed to connect to all addresses", False, True),
        (S.UNAVAILABLE, "Connection reset by peer", False, False),
        (S.UNAVAILABLE, "Connection reset by peer", True, True),
        (S.DEADLINE_EXCEEDED, "", False, False),
        (S.DEADLINE_EXCEEDED, "", True, True),
        (S.RESOURCE_EXHAUSTED, "limit", True, True),
        (S.INTERNAL, "", True, True),
        (S.INTERNAL, "", False, False),
        (S.INVALID_ARGUMENT, "", True, False),
        (S.NOT_FOUND, "", True, False),
        (S.PERMISSION_DENIED, "", True, False),
        (S.FAILED_PRECONDITION, "", True, False),
    ],
)
def test_retry_decisions(code: S, details: str, idempotent: bool, retried: bool) -> None:
    plan = CallPlan(route(), policy(idempotent=idempotent), None, (), None, FakeClock())
    ep, _ = plan.next()
    assert plan.failed(ep, code, details) is retried


def test_failfast_never_retries() -> None:
    plan = CallPlan(route(), policy(cluster=FailfastPolicy()), None, (), None, FakeClock())
    ep, _ = plan.next()
    assert not plan.failed(ep, S.UNAVAILABLE, "failed to connect")


def test_retries_are_bounded() -> None:
    plan = CallPlan(route(), policy(retries=1, idempotent=True), None, (), None, FakeClock())
    ep, _ = plan.next()
    assert plan.failed(ep, S.UNAVAILABLE, "x")
    ep, _ = plan.next()
    assert not plan.failed(ep, S.UNAVAILABLE, "x")


def test_attempt_timeout_is_what_is_left_of_the_deadline() -> None:
    clock = FakeClock()
    plan = CallPlan(route(), policy(timeout=1.0), None, (), None, clock)
    _, first = plan.next()
    assert first == pytest.approx(1.0)  # not idempotent: a timeout is final, so all of it


def test_idempotent_attempts_split_the_deadline_with_a_floor() -> None:
    clock = FakeClock()
    plan = CallPlan(route(), policy(timeout=1.0, idempotent=True), None, (), None, clock)
    ep, first = plan.next()
    assert first == pytest.approx(1 / 3)  # three attempts share the budget
    clock.now += 0.7
    assert plan.failed(ep, S.DEADLINE_EXCEEDED, "")
    _, second = plan.next()
    assert second == pytest.approx(0.2)  # half of 0.3 is under the floor of 20 % of 1 s


def test_no_attempt_after_the_deadline() -> None:
    clock = FakeClock()
    plan = CallPlan(route(), policy(timeout=1.0, idempotent=True), None, (), None, clock)
    ep, _ = plan.next()
    clock.now += 1.5
    assert not plan.failed(ep, S.UNAVAILABLE, "x")
    with pytest.raises(DeadlineExceededError):
        CallPlan(route(), policy(timeout=0.0005), None, (), None, clock).next()


def test_per_call_timeout_overrides_the_policy() -> None:
    plan = CallPlan(route(), policy(timeout=10.0), None, (), 0.25, FakeClock())
    assert plan.next()[1] == pytest.approx(0.25)


def test_no_endpoint_raises_no_provider_with_advice() -> None:
    plan = CallPlan(route(()), policy(), None, (), None, FakeClock())
    with pytest.raises(NoProviderError) as info:
        plan.next()
    assert "registered: 0" in str(info.value)
