"""Attachments in the call path itself: CallPlan adds them, enter_call reads them back
(pure code, no sockets; the end-to-end tests are in tests/integration/test_attachments.py)."""

from __future__ import annotations

import contextvars
import logging
import subprocess
import sys
from typing import Any

import grpc
import pytest

import dubbok
import dubbok.tracing.attachments as old_name
from dubbok import attachments
from dubbok.attachments import MAX_BYTES, PREFIX
from dubbok.balancer.roundrobin import RoundRobinBalancer
from dubbok.cluster import FailoverPolicy
from dubbok.core import ATTEMPT_HEADER, CallPlan, MethodPolicy, Route
from dubbok.endpoint import Endpoint
from dubbok.server import enter_call, leave_call

EPS = tuple(Endpoint.parse(f"10.0.0.{i}:50051") for i in range(1, 3))


def _route() -> Route:
    balancer = RoundRobinBalancer()
    return Route("svc.S", EPS, balancer.build(EPS), balancer, {}, {}, len(EPS))


def _plan(metadata: tuple[tuple[str, str], ...] = ()) -> CallPlan:
    policy = MethodPolicy("svc.S", "M", 1.0, 1, True, FailoverPolicy())
    return CallPlan(_route(), policy, None, metadata, None)


def _isolated(fn: Any) -> Any:
    """Run ``fn`` in a context in which no attachment is set."""
    ctx = contextvars.copy_context()
    ctx.run(attachments.clear)
    return ctx.run(fn)


class FakeServerContext:
    def __init__(self, metadata: Any) -> None:
        self._metadata = tuple(metadata)

    def invocation_metadata(self) -> Any:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None


def test_the_module_is_the_core_one_under_both_names() -> None:
    assert dubbok.attachments is attachments
    for name in ("set", "get", "current", "remove", "clear", "attached", "Attachments"):
        assert getattr(old_name, name) is getattr(attachments, name)
    assert (old_name.MAX_BYTES, old_name.PREFIX) == (MAX_BYTES, PREFIX)
    assert old_name.snapshot is attachments.snapshot


def test_the_core_module_loads_no_opentelemetry() -> None:
    code = (
        "import sys, dubbok.attachments, dubbok.server, dubbok.core; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_a_plan_without_attachments_sends_the_callers_metadata_as_it_is() -> None:
    md = (("x-user", "u"),)
    plan = _isolated(lambda: _plan(md))
    assert plan.outgoing is md


def test_a_plan_carries_the_attachments_of_its_start_on_every_attempt() -> None:
    def body() -> CallPlan:
        attachments.set("tenant", "acme")
        plan = _plan((("x-user", "u"),))
        attachments.set("tenant", "later")  # after the call started: not this call's
        return plan

    plan = _isolated(body)
    assert plan.outgoing == (("x-user", "u"), (PREFIX + "tenant", "acme"))
    sent = []
    for _ in range(2):  # the first attempt and a retry
        endpoint, _ = plan.next()
        md, _ = plan.start_attempt(endpoint, plan.outgoing, None)
        sent.append(dict(md or ()))
        plan.failed(endpoint, grpc.StatusCode.UNAVAILABLE, "failed to connect")
    assert [m[PREFIX + "tenant"] for m in sent] == ["acme", "acme"]
    assert ATTEMPT_HEADER in sent[1]


def test_the_handler_sees_the_callers_attachments_and_they_are_undone_after() -> None:
    def body() -> None:
        md = ((PREFIX + "tenant", "acme"), ("x-other", "1"), (PREFIX + "bin", b"x"))
        tokens = enter_call(FakeServerContext(md))
        assert dict(attachments.current()) == {"tenant": "acme"}  # bytes are not attachments
        leave_call(tokens)
        assert not attachments.current()

    _isolated(body)


def test_a_handler_sees_only_what_its_caller_sent() -> None:
    def body() -> None:
        attachments.set("server-side", "x")  # e.g. the context the server was started in
        tokens = enter_call(FakeServerContext((("x-other", "1"),)))
        assert not attachments.current()
        leave_call(tokens)
        assert dict(attachments.current()) == {"server-side": "x"}

    _isolated(body)


def test_a_provider_keeps_at_most_max_bytes_of_what_a_caller_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    md = [(f"{PREFIX}k{i:02d}", "v" * 1000) for i in range(12)]

    def body() -> None:
        tokens = enter_call(FakeServerContext(md))
        kept = attachments.snapshot()
        assert 0 < kept.size <= MAX_BYTES
        assert len(kept.values) == MAX_BYTES // (len(PREFIX) + 3 + 1000)
        # What is kept can be sent on as it is: it is within the bound a sender checks.
        attachments.set("hop", "2")
        leave_call(tokens)
        assert not attachments.current()

    with caplog.at_level(logging.WARNING, logger="dubbok.attachments"):
        _isolated(body)
    assert "ignored" in caplog.text
