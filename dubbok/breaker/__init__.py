"""Circuit breaking on two levels, as Kitex and Envoy do.

* :class:`MethodBreaker` — one per ``service/method``, asked before balancing. It opens on
  a streak of failures, on the error ratio or on the slow-call ratio over a sliding time
  window (Sentinel's three strategies); after ``reset_timeout`` it half-opens and lets a
  bounded number of probe calls through. When it refuses, the driver raises
  :meth:`MethodBreaker.open_error` (a :class:`~dubbok.errors.CircuitOpenError`) without
  sending anything.
* :class:`OutlierDetector` — one per service, keyed by endpoint address, asked after the
  balancer picked an endpoint. An endpoint with a streak of failures is ejected for a time
  that grows with each ejection, then takes one probe call. Never more than
  ``max_ejection_percent`` of a service's endpoints are ejected at once.

What counts as a failure is decided in one place, :func:`dubbok.outcome.counts_as_failure`:
business errors never count, for either level.

Both levels are pure, synchronous and clock-injected: no I/O, no timers, no threads. The
drivers (``dubbok`` and ``dubbok.aio``) call ``allow`` before an attempt and ``record``
after it, and never hold a breaker lock across the call: the only locks are private ones
around a few counter updates. State machines and failure streaks are kept by pybreaker
(through :class:`~dubbok.breaker.circuit.Circuit`, which never uses pybreaker's ``call()``);
the sliding windows, the ejection rules and the clock are dubbok's.

State changes reach :class:`BreakerListener` objects (``state_changed(name, old, new,
reason)``); :class:`LoggingListener` logs them. Settings are frozen, validated dataclasses:
:class:`BreakerPolicy`, :class:`MethodBreakerPolicy`, :class:`InstanceBreakerPolicy`.

To extend: a listener is any object with ``state_changed``; to add a trip condition to the
method breaker, count what it needs in :class:`~dubbok.breaker.window.SlidingWindow` and
test it in ``MethodBreaker._record_closed`` next to the ratio checks, with a reason sentence
of the same shape.
"""

from __future__ import annotations

from .events import BreakerListener, BreakerState, LoggingListener
from .instance import OutlierDetector
from .method import MethodBreaker
from .policy import BreakerPolicy, InstanceBreakerPolicy, MethodBreakerPolicy
from .window import SlidingWindow, WindowCounts

__all__ = [
    "BreakerListener",
    "BreakerPolicy",
    "BreakerState",
    "InstanceBreakerPolicy",
    "LoggingListener",
    "MethodBreaker",
    "MethodBreakerPolicy",
    "OutlierDetector",
    "SlidingWindow",
    "WindowCounts",
]
