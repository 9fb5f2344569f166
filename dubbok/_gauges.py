"""Feeding the control plane's state to metrics, when tracing is in use.

The gauges live in :mod:`dubbok.tracing.metrics`; this module only forwards to them once the
application has imported :mod:`dubbok.tracing` (``configure`` or ``OtelObserver``), so
``import dubbok`` stays free of OpenTelemetry's SDK and a process without metrics pays
nothing. Every function here is called on state changes (rare), never per call.
"""

from __future__ import annotations

import sys
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


def watch_health(watch: str, healthy: bool) -> None:
    """A registry or config watch went live (``True``) or was lost → ``dubbok.watch.healthy``
    (1 or 0) for the series ``dubbok.watch=<watch>``."""
    metrics = _metrics()
    if metrics is not None:
        metrics.gauge_values(metrics.WATCH_HEALTHY).set(
            1.0 if healthy else 0.0, {"dubbok.watch": watch}
        )


def watch_gone(watch: str) -> None:
    """A watch was closed: its series is no longer reported."""
    metrics = _metrics()
    if metrics is not None:
        metrics.gauge_values(metrics.WATCH_HEALTHY).remove({"dubbok.watch": watch})
