"""Control-plane state reaches the metric gauges once tracing is in use."""

from __future__ import annotations

import dubbok.tracing  # noqa: F401  (tracing in use: the gauges are fed)
from dubbok._gauges import MetricsBreakerListener, directory_size, watch_gone, watch_health
from dubbok.breaker import BreakerState
from dubbok.tracing import metrics


def values(name: str) -> dict[tuple[tuple[str, object], ...], float]:
    return {tuple(sorted(attrs.items())): v for v, attrs in metrics.gauge_values(name)()}


def test_breaker_transitions_feed_the_state_and_ejection_gauges() -> None:
    listener = MetricsBreakerListener("svc.G")
    listener.state_changed("svc.G/Hello", BreakerState.CLOSED, BreakerState.OPEN, "ratio")
    key = (("rpc.method", "Hello"), ("rpc.service", "svc.G"))
    assert values(metrics.BREAKER_STATE)[key] == 2.0
    listener.state_changed("svc.G/Hello", BreakerState.OPEN, BreakerState.HALF_OPEN, "time")
    assert values(metrics.BREAKER_STATE)[key] == 1.0
    listener.state_changed("svc.G@10.0.0.1:1", BreakerState.CLOSED, BreakerState.OPEN, "5")
    listener.state_changed("svc.G@10.0.0.2:1", BreakerState.CLOSED, BreakerState.OPEN, "5")
    listener.state_changed("svc.G@10.0.0.1:1", BreakerState.HALF_OPEN, BreakerState.CLOSED, "ok")
    assert values(metrics.EJECTED_ENDPOINTS)[(("rpc.service", "svc.G"),)] == 1.0


def test_directory_size_gauge() -> None:
    directory_size("svc.D", 7)
    assert values(metrics.DIRECTORY_SIZE)[(("rpc.service", "svc.D"),)] == 7.0


def test_watches_sharing_a_series_report_it_together() -> None:
    series = (("dubbok.watch", "registry:unit/svc.W"),)
    first, second = object(), object()
    watch_health("registry:unit/svc.W", first, True)
    watch_health("registry:unit/svc.W", second, True)
    assert values(metrics.WATCH_HEALTHY)[series] == 1.0
    watch_health("registry:unit/svc.W", second, False)
    assert values(metrics.WATCH_HEALTHY)[series] == 0.0  # one of them is lost
    watch_gone("registry:unit/svc.W", second)
    assert values(metrics.WATCH_HEALTHY)[series] == 1.0  # the other is still live
    watch_gone("registry:unit/svc.W", first)
    assert series not in values(metrics.WATCH_HEALTHY)
    watch_gone("registry:unit/svc.W", first)  # again: nothing to do
