"""Breaker states, and the listener that hears every state change.

Both breaker levels report transitions through :class:`BreakerListener`, so one listener can
send them to logs, metrics and span events. A transition is announced after the breaker has
released its lock, on the thread (or event-loop task) whose ``allow``/``record`` caused it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["BreakerListener", "BreakerState", "LoggingListener", "Transition", "announce"]

logger = logging.getLogger("dubbok.breaker")


class BreakerState(enum.Enum):
    """The three states of a breaker; the values are pybreaker's state names."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@runtime_checkable
class BreakerListener(Protocol):
    """Hears a breaker change state.

    Called synchronously on the caller's thread or event loop right after the change, with
    no breaker lock held, so it may read the breaker. It must be quick, must not block (no
    I/O beyond a log line or a metric update) and should not raise; an exception it raises
    is logged and swallowed so it can never fail the call that caused the change.

    ``name`` is ``service/method`` for a method breaker and ``service@host:port`` for an
    endpoint. ``reason`` is a sentence such as ``"error ratio 0.62 ≥ 0.5 over the last 10 s
    (25 calls)"``.
    """

    def state_changed(
        self, name: str, old: BreakerState, new: BreakerState, reason: str
    ) -> None: ...


Transition = tuple[str, BreakerState, BreakerState, str]


class LoggingListener:
    """Logs each transition on the ``dubbok.breaker`` logger: opening at WARNING, the rest at
    INFO."""

    def state_changed(self, name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        logger.log(level, "breaker %s: %s → %s: %s", name, old.value, new.value, reason)


def announce(listeners: Sequence[BreakerListener], transitions: Iterable[Transition]) -> None:
    """Deliver transitions to listeners; a failing listener is logged and skipped."""
    for name, old, new, reason in transitions:
        for listener in listeners:
            try:
                listener.state_changed(name, old, new, reason)
            except Exception:
                logger.exception(
                    "breaker listener %r failed on %s (%s → %s)",
                    listener,
                    name,
                    old.value,
                    new.value,
                )
