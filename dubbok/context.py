"""Per-call context that flows from a handler into the calls it makes (contextvars).

The provider driver records the incoming call's deadline here while a handler runs; a
reference called from inside that handler never waits longer than its caller will. Works the
same in threads (each handler runs in a copied context) and in asyncio tasks.
"""

from __future__ import annotations

import contextvars

from .invocation import Deadline

__all__ = ["current_deadline", "incoming_deadline", "serving_retry"]

incoming_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "dubbok_incoming_deadline", default=None
)


def current_deadline() -> Deadline | None:
    """The deadline of the call being handled on this thread or task, if any."""
    return incoming_deadline.get()


# True while handling a call that a dubbok consumer sent as a retry (x-dubbok-attempt > 1):
# calls made from that handler are not retried again, so retries do not multiply per hop.
serving_retry: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dubbok_serving_retry", default=False
)
