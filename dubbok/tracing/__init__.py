"""Distributed tracing, metrics and access logs for dubbok, on OpenTelemetry.

Quick start — one call at process start, before the Apps are made::

    import dubbok.tracing

    dubbok.tracing.configure(service_name="greeter", exporter="otlp")

That installs a TracerProvider (unless the application has one), a MeterProvider, and an
:class:`OtelObserver` as the default observer of every App created afterwards. Without
``configure``, pass an observer explicitly: ``App("greeter", observer=OtelObserver())``.

What is here:

* :class:`OtelObserver` — spans (a CLIENT span per logical call with a child per attempt, a
  SERVER span per handled call), W3C trace context in gRPC metadata, and RPC metrics.
* :mod:`~dubbok.tracing.attachments` — the same module as :mod:`dubbok.attachments`:
  values carried between services by every dubbok call, with or without an observer.
* :class:`AccessLogObserver` — JSON access log lines on the ``dubbok.access`` logger.
* :class:`CompositeObserver` — several observers as one.
* :mod:`dubbok.tracing.metrics` — the gauges the control plane reports.
* :func:`configure`, :func:`serve_prometheus` — SDK set-up (the ``dubbok[otel]`` extra).

Extending: an observer is any object with the two methods of
:class:`dubbok.observe.Observer`; compose yours with ours through :class:`CompositeObserver`.
Nothing in ``import dubbok`` imports this package, and this package loads the OpenTelemetry
SDK only inside :func:`configure` and :func:`serve_prometheus`.
"""

from __future__ import annotations

from . import attachments, metrics
from .access import AccessLogObserver
from .composite import CompositeObserver
from .observer import OtelObserver
from .sdk import configure, serve_prometheus

__all__ = [
    "AccessLogObserver",
    "CompositeObserver",
    "OtelObserver",
    "attachments",
    "configure",
    "metrics",
    "serve_prometheus",
]
