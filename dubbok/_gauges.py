"""Feeding the control plane's state to metrics, when tracing is in use.

The gauges live in :mod:`dubbok.tracing.metrics`; this module only forwards to them once the
application has imported :mod:`dubbok.tracing` (``configure`` or ``OtelObserver``), so
``import dubbok`` stays free of OpenTelemetry's SDK and a process without metrics pays
nothing. Every function here is called on state changes (rare), never per call.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from .breaker import BreakerState

__all__ = ["MetricsBreakerListener", "directory_size", "watch_gone", "watch_health"]

_STATE_VALUE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


def _metrics() -> Any:
    if "dubbok.tracing" not in sys.modules:
        return None
    from .tracing import metrics

    return metrics


class MetricsBreakerListener:
    """Breaker transitions → the ``dubbok.breaker.state`` and ``dubbok.endpoints.ejected``
    gauges."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._ejected: set[str] = set()

    def state_changed(self, name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
        metrics = _metrics()
        if metrics is None:
            return
        if "@" in name:  # an endpoint: service@host:port
            if new is BreakerState.CLOSED:
                self._ejected.discard(name)
            else:
                self._ejected.add(name)
            metrics.gauge_values(metrics.EJECTED_ENDPOINTS).set(
                float(len(self._ejected)), {"rpc.service": self.service}
            )
            return
        service, _, method = name.rpartition("/")
        metrics.gauge_values(metrics.BREAKER_STATE).set(
            _STATE_VALUE[new], {"rpc.service": service, "rpc.method": method}
        )


def directory_size(service: str, size: int) -> None:
    """A reference's usable endpoints → the ``dubbok.directory.size`` gauge."""
    metrics = _metrics()
    if metrics is not None:
        metrics.gauge_values(metrics.DIRECTORY_SIZE).set(float(size), {"rpc.service": service})


# Watches by series: several watches may share one (two Apps of a process discovering the
# same service): the series reads 1 only while all of them are live, and goes with the last.
_watch_lock = threading.Lock()
_watches: dict[str, dict[int, bool]] = {}


def watch_health(watch: str, owner: object, healthy: bool) -> None:
    """``owner``'s watch went live (``True``) or was lost → ``dubbok.watch.healthy`` for the
    series ``dubbok.watch=<watch>``: 1 while every watch of that series is live, else 0."""
    with _watch_lock:
        owners = _watches.setdefault(watch, {})
        owners[id(owner)] = healthy
        _report(watch, owners)


def watch_gone(watch: str, owner: object) -> None:
    """``owner``'s watch was closed: the series goes when no watch of it is left."""
    with _watch_lock:
        owners = _watches.get(watch)
        if owners is None:
            return
        owners.pop(id(owner), None)
        if not owners:
            del _watches[watch]
        _report(watch, owners)


def _report(watch: str, owners: dict[int, bool]) -> None:
    metrics = _metrics()
    if metrics is None:
        return
    values = metrics.gauge_values(metrics.WATCH_HEALTHY)
    if owners:
        values.set(1.0 if all(owners.values()) else 0.0, {"dubbok.watch": watch})
    else:
        values.remove({"dubbok.watch": watch})
