"""The asyncio failback queue retries in a context of its own, as the sync one's thread does:
not in the context of the call that happened to start it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry import trace

from dubbok import attachments
from dubbok.aio._fanout import AsyncFailback
from dubbok.context import incoming_deadline, serving_retry
from dubbok.invocation import Deadline
from dubbok.routing.tag import current_tag, enter_tag


def test_retries_run_outside_the_starting_calls_context() -> None:
    seen: list[tuple[Any, ...]] = []

    async def main() -> None:
        finished = asyncio.Event()

        async def resend(info: Any, request: Any, metadata: Any) -> None:
            tag = current_tag()
            seen.append(
                (
                    request,
                    incoming_deadline.get(),
                    serving_retry.get(),
                    tag.value if tag else None,
                    attachments.get("k"),
                    trace.get_current_span().get_span_context().is_valid,
                )
            )
            if len(seen) == 2:
                finished.set()

        failback = AsyncFailback(resend, queue_size=10, retries=1, interval=0.0, name="t")

        async def handler(request: str, value: str) -> None:
            # As inside a provider's handler: an incoming deadline that has passed, a tag
            # lane, a retry flag and a current span; then a failed call is queued.
            incoming_deadline.set(Deadline(time.monotonic() - 1))
            serving_retry.set(True)
            enter_tag("gray")
            span = trace.NonRecordingSpan(trace.SpanContext(1, 2, False))
            with trace.use_span(span), attachments.attached({"k": value}):
                failback.submit(None, request, None)

        await asyncio.create_task(handler("first", "a"))
        await asyncio.create_task(handler("second", "b"))
        await asyncio.wait_for(finished.wait(), 10)
        await failback.aclose()

    asyncio.run(main())
    # Each retry: no deadline, retry flag, tag lane or span of the first call; its own
    # call's attachments.
    assert seen == [
        ("first", None, False, None, "a", False),
        ("second", None, False, None, "b", False),
    ]
