"""Metrics: RPC durations, governance event counts, and gauges the control plane feeds.

Instruments an :class:`~dubbok.tracing.OtelObserver` records to (OpenTelemetry metrics API):

========================================  =====  ==========================================
name                                      unit   what
========================================  =====  ==========================================
``rpc.client.duration``                   ms     a logical client call, all attempts
``rpc.server.duration``                   ms     a handled call
``rpc.client.call.duration``              s      the same, stable conventions (opt-in)
``rpc.server.call.duration``              s      the same, stable conventions (opt-in)
``dubbok.client.retries``                 1      ``retry`` events: another attempt started
``dubbok.client.hedges``                  1      ``hedge`` events: a hedged attempt started
``dubbok.client.fallbacks``               1      ``fallback`` events: a degraded answer used
``dubbok.client.rate_limited``            1      ``rate_limited``: a consumer limit refused
``dubbok.client.events``                  1      any other event, by ``dubbok.event``
``dubbok.server.rate_limited``            1      ``rate_limited``: a provider's limit refused
``dubbok.server.events``                  1      any other provider event, by ``dubbok.event``
========================================  =====  ==========================================

Calls by status are the histograms' counts split by ``rpc.grpc.status_code`` (or
``rpc.response.status_code``): every histogram carries a count per attribute set, so a
separate counter would only repeat it.

Gauges are read when a metric reader collects. Whoever owns the state registers a callback
returning ``(value, attributes)`` pairs, or pushes values into a :class:`GaugeValues`::

    from dubbok.tracing import metrics

    metrics.register_gauge(metrics.DIRECTORY_SIZE, lambda: [(3, {"rpc.service": "a.B"})])

    breakers = metrics.gauge_values(metrics.BREAKER_STATE, "0 closed, 1 half-open, 2 open")
    breakers.set(2, {"rpc.service": "a.B", "rpc.method": "Get"})

Callbacks run on the metric reader's thread (a periodic exporter's, or a scrape's): they must
be quick, must not block, and should read state, not compute it. One that raises is logged
and skipped for that collection.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.util.types import AttributeValue

from ..errors import ConfigurationError
from ._method import MethodInfo
from ._semconv import Semconv

__all__ = [
    "BREAKER_STATE",
    "DIRECTORY_SIZE",
    "EJECTED_ENDPOINTS",
    "WATCH_HEALTHY",
    "GaugeCallback",
    "GaugeRegistry",
    "GaugeValues",
    "gauge_values",
    "register_gauge",
    "unregister_gauge",
]

log = logging.getLogger(__name__)

# Names of the gauges the control plane feeds, and the attributes each series carries:
# 0 closed, 1 half-open, 2 open [rpc.service, rpc.method]
BREAKER_STATE = "dubbok.breaker.state"
# endpoints ejected by outlier detection right now [rpc.service]
EJECTED_ENDPOINTS = "dubbok.endpoints.ejected"
# endpoints a reference may call right now [rpc.service]
DIRECTORY_SIZE = "dubbok.directory.size"
# 1 while a registry or config watch is live, 0 while it is lost [dubbok.watch]
WATCH_HEALTHY = "dubbok.watch.healthy"

GaugeCallback = Callable[[], Iterable[tuple[float, Mapping[str, AttributeValue]]]]
"""Returns the gauge's current ``(value, attributes)`` pairs; called on the reader's thread."""

# Seconds; the stable conventions' advice for RPC durations.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

# Counters of governance events, by event name; any other event counts in the side's
# ``events`` counter with its name in ``dubbok.event``.
_CLIENT_EVENTS = {
    "retry": ("dubbok.client.retries", "{retry}", "Attempts started after a failed one"),
    "hedge": ("dubbok.client.hedges", "{hedge}", "Hedged attempts started"),
    "fallback": ("dubbok.client.fallbacks", "{call}", "Calls answered by a fallback"),
    "rate_limited": (
        "dubbok.client.rate_limited",
        "{call}",
        "Calls a consumer-side limit refused (bulkhead, actives)",
    ),
    "": ("dubbok.client.events", "{event}", "Other governance events, by dubbok.event"),
}
_SERVER_EVENTS = {
    "rate_limited": (
        "dubbok.server.rate_limited",
        "{call}",
        "Calls this provider refused by a rate or concurrency limit",
    ),
    "": ("dubbok.server.events", "{event}", "Other provider-side events, by dubbok.event"),
}


class _EventCounters:
    """One side's event counters (see ``_CLIENT_EVENTS``)."""

    __slots__ = ("_by_name", "_other")

    def __init__(self, meter: Meter, table: Mapping[str, tuple[str, str, str]]) -> None:
        self._by_name = {
            event: meter.create_counter(name, unit, description)
            for event, (name, unit, description) in table.items()
            if event
        }
        self._other = meter.create_counter(*table[""])

    def add(self, info: MethodInfo, name: str) -> None:
        counter = self._by_name.get(name)
        if counter is not None:
            counter.add(1, info.event_attrs)
        else:
            self._other.add(1, {**info.event_attrs, "dubbok.event": name})


class Instruments:
    """The instruments one observer records to, made once per meter.

    Called from any thread or task on the call path; the SDK's instruments are thread-safe.
    """

    __slots__ = (
        "_client_new",
        "_client_old",
        "_server_new",
        "_server_old",
        "client_events",
        "server_events",
    )

    def __init__(self, meter: Meter, mode: Semconv) -> None:
        self._client_old = self._server_old = self._client_new = self._server_new = None
        if Semconv.OLD in mode:
            self._client_old = meter.create_histogram(
                "rpc.client.duration", "ms", "Duration of outbound RPCs"
            )
            self._server_old = meter.create_histogram(
                "rpc.server.duration", "ms", "Duration of inbound RPCs"
            )
        if Semconv.STABLE in mode:
            self._client_new = meter.create_histogram(
                "rpc.client.call.duration",
                "s",
                "Duration of outbound RPCs",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            )
            self._server_new = meter.create_histogram(
                "rpc.server.call.duration",
                "s",
                "Duration of inbound RPCs",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            )
        self.client_events = _EventCounters(meter, _CLIENT_EVENTS)
        self.server_events = _EventCounters(meter, _SERVER_EVENTS)

    def client_done(self, info: MethodInfo, code: grpc.StatusCode, seconds: float) -> None:
        old, new = info.client_metric(code)
        if self._client_old is not None:
            self._client_old.record(seconds * 1e3, old)
        if self._client_new is not None:
            self._client_new.record(seconds, new)

    def server_done(self, info: MethodInfo, code: grpc.StatusCode, seconds: float) -> None:
        old, new = info.server_metric(code)
        if self._server_old is not None:
            self._server_old.record(seconds * 1e3, old)
        if self._server_new is not None:
            self._server_new.record(seconds, new)


# -- gauges ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Gauge:
    name: str
    callback: GaugeCallback
    description: str
    unit: str


class GaugeRegistry:
    """Gauges by name, and the meters they are observed on.

    Registering is for the control plane (any thread); each meter an observer binds gets one
    observable gauge per name, created once, whose callback looks the gauge up by name at
    collection time — so replacing or removing a callback needs no new instrument.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauges: dict[str, _Gauge] = {}
        # meter → names already instrumented on it; weak, so a dropped provider is forgotten.
        self._meters: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

    def register(
        self, name: str, callback: GaugeCallback, *, description: str = "", unit: str = ""
    ) -> None:
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ConfigurationError(f"a gauge needs a name of 1-255 characters, got {name!r}")
        if not callable(callback):
            raise ConfigurationError(f"gauge {name!r}: the callback must be callable")
        with self._lock:
            self._gauges[name] = _Gauge(name, callback, description, unit)
            meters = list(self._meters.items())
        for meter, names in meters:
            self._instrument(meter, names, name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._gauges.pop(name, None)

    def bind(self, meter: Meter) -> None:
        """Observe every gauge, present and future, on ``meter``."""
        with self._lock:
            if meter in self._meters:
                return
            names: set[str] = set()
            self._meters[meter] = names
            current = list(self._gauges)
        for name in current:
            self._instrument(meter, names, name)

    def _instrument(self, meter: Meter, names: set[str], name: str) -> None:
        with self._lock:
            if name in names:
                return
            names.add(name)
            gauge = self._gauges[name]
        meter.create_observable_gauge(
            name, [self._callback(name)], unit=gauge.unit, description=gauge.description
        )

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            gauge = self._gauges.get(name)
            if gauge is None:
                return []
            try:
                return [Observation(value, dict(attrs)) for value, attrs in gauge.callback()]
            except Exception:
                log.exception("gauge %s: its callback failed; skipped this collection", name)
                return []

        return observe


class GaugeValues:
    """A gauge whose values are pushed: ``set(value, attributes)`` from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[frozenset[tuple[str, AttributeValue]], float] = {}

    def set(self, value: float, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        key = frozenset((attributes or {}).items())
        with self._lock:
            self._values[key] = value

    def remove(self, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        """Stop reporting the series with these attributes (e.g. a service no longer used)."""
        key = frozenset((attributes or {}).items())
        with self._lock:
            self._values.pop(key, None)

    def __call__(self) -> list[tuple[float, Mapping[str, AttributeValue]]]:
        with self._lock:
            return [(value, dict(key)) for key, value in self._values.items()]


REGISTRY = GaugeRegistry()
"""The process's gauges; every :class:`~dubbok.tracing.OtelObserver` with a meter binds it."""


def register_gauge(
    name: str, callback: GaugeCallback, *, description: str = "", unit: str = ""
) -> None:
    """Report gauge ``name`` from ``callback`` (replacing any callback of that name)."""
    REGISTRY.register(name, callback, description=description, unit=unit)


def unregister_gauge(name: str) -> None:
    """Stop reporting gauge ``name``."""
    REGISTRY.unregister(name)


_PUSHED: dict[str, GaugeValues] = {}
_PUSHED_LOCK = threading.Lock()


def gauge_values(name: str, description: str = "", unit: str = "") -> GaugeValues:
    """The pushed gauge ``name`` (registered on first use): call ``set`` on what it returns.

    The same object comes back for the same name, so the series pushed by different parts
    of the process add up in one gauge.
    """
    with _PUSHED_LOCK:
        values = _PUSHED.get(name)
        if values is None:
            values = _PUSHED[name] = GaugeValues()
            REGISTRY.register(name, values, description=description, unit=unit)
        return values
