"""OpenTelemetry SDK set-up for a dubbok process: :func:`configure`, :func:`serve_prometheus`.

The SDK is the optional extra ``dubbok[otel]`` and loads here, on first use — never on
``import dubbok`` or ``import dubbok.tracing``. Exporters are optional packages of their own:

=======================  ===============================================================
choice                   package
=======================  ===============================================================
``"otlp"`` (gRPC)        ``opentelemetry-exporter-otlp-proto-grpc``
``"otlp"`` (HTTP)        ``opentelemetry-exporter-otlp-proto-http`` (when
                         ``OTEL_EXPORTER_OTLP_PROTOCOL`` is ``http/protobuf``)
``"console"``            none (part of the SDK)
``"prometheus"``         ``opentelemetry-exporter-prometheus`` (brings ``prometheus-client``)
=======================  ===============================================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from ..errors import ConfigurationError
from ..observe import Observer, set_default_observer
from .access import AccessLogObserver
from .composite import CompositeObserver
from .observer import PLACEHOLDER_METER_PROVIDERS, OtelObserver

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

__all__ = ["configure", "serve_prometheus"]

log = logging.getLogger(__name__)

FROM_ENV = "env"
_OTLP_GRPC = "opentelemetry-exporter-otlp-proto-grpc"
_OTLP_HTTP = "opentelemetry-exporter-otlp-proto-http"
_PROMETHEUS = "opentelemetry-exporter-prometheus"


def _require_sdk() -> None:
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "dubbok.tracing.configure needs the OpenTelemetry SDK: pip install 'dubbok[otel]' "
            "(or opentelemetry-sdk), or install your own TracerProvider and pass "
            "OtelObserver() to App(observer=...)"
        ) from None


def _names(value: str, env: str, default: str) -> list[str]:
    text = os.environ.get(env, default) if value == FROM_ENV else value
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    return [n for n in names if n != "none"]


def _missing(what: str, package: str) -> ConfigurationError:
    return ConfigurationError(
        f"{what} needs the package {package}, which is not installed: pip install {package} "
        "(or choose exporter='console' or None)"
    )


def _otlp_http(signal: str) -> bool:
    """Whether OTLP for ``signal`` ("TRACES", "METRICS") goes over HTTP: the signal's own
    ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`` first, then ``OTEL_EXPORTER_OTLP_PROTOCOL``."""
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    return protocol.strip().lower().startswith("http")


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        if _otlp_http("TRACES"):
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPSpanExporter,
                )
            except ImportError:
                raise _missing("exporter 'otlp' over HTTP", _OTLP_HTTP) from None
        else:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPSpanExporter,
                )
            except ImportError:
                raise _missing("exporter 'otlp'", _OTLP_GRPC) from None
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    raise ConfigurationError(
        f"unknown trace exporter {name!r}: use 'otlp', 'console' or None "
        "(or pass a SpanExporter instance)"
    )


def _metric_reader(name: str) -> MetricReader:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if name == "otlp":
        if _otlp_http("METRICS"):
            try:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPMetricExporter,
                )
            except ImportError:
                raise _missing("metrics exporter 'otlp' over HTTP", _OTLP_HTTP) from None
        else:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPMetricExporter,
                )
            except ImportError:
                raise _missing("metrics exporter 'otlp'", _OTLP_GRPC) from None
        return PeriodicExportingMetricReader(OTLPMetricExporter())
    if name == "prometheus":
        return _prometheus_reader()[0]
    raise ConfigurationError(
        f"unknown metrics exporter {name!r}: use 'otlp', 'console', 'prometheus' or None "
        "(or pass a MetricReader instance)"
    )


def _prometheus_reader() -> tuple[MetricReader, Callable[..., Any]]:
    try:
        from opentelemetry.exporter.prometheus import (  # type: ignore[import-not-found,unused-ignore]
            PrometheusMetricReader,
        )
        from prometheus_client import (  # type: ignore[import-not-found,unused-ignore]
            start_http_server,
        )
    except ImportError:
        raise ConfigurationError(
            f"a Prometheus endpoint needs the package {_PROMETHEUS} (which brings "
            f"prometheus-client), not installed here: pip install {_PROMETHEUS}; or export "
            "metrics over OTLP to a collector that Prometheus scrapes"
        ) from None
    reader: MetricReader = PrometheusMetricReader()
    return reader, start_http_server


def _resource(service_name: str | None) -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; an explicit
    # service_name wins over both, as explicit SDK arguments do.
    return Resource.create({SERVICE_NAME: service_name} if service_name else {})


def _has_tracer_provider() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _has_meter_provider() -> bool:
    return not isinstance(metrics.get_meter_provider(), PLACEHOLDER_METER_PROVIDERS)


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def configure(
    service_name: str | None = None,
    exporter: str | SpanExporter | None = FROM_ENV,
    sampler: Sampler | None = None,
    *,
    metrics_exporter: str | MetricReader | None = FROM_ENV,
    access_log: bool = False,
    prometheus_port: int | None = None,
) -> Observer:
    """Set up tracing and metrics for this process and make dubbok use them.

    * A :class:`~opentelemetry.sdk.trace.TracerProvider` is installed only when none is:
      a provider the application installed is used as is (``exporter`` and ``sampler`` are
      then ignored, with a log line saying so). The same goes for the MeterProvider.
    * ``exporter``: ``"otlp"``, ``"console"``, a comma-separated list, a ``SpanExporter``,
      or ``None`` (spans are made and propagated but not exported — e.g. for logs
      correlation). Default: ``OTEL_TRACES_EXPORTER``, itself ``otlp`` by default. The
      exporters read their own ``OTEL_EXPORTER_OTLP_*`` variables; spans go through a
      ``BatchSpanProcessor`` (``OTEL_BSP_*``).
    * ``sampler``: default from ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
      (parent-based always-on when unset).
    * ``service_name``: the ``service.name`` resource attribute; default from
      ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``.
    * ``metrics_exporter``: ``"otlp"``, ``"console"``, ``"prometheus"``, a
      ``MetricReader``, or ``None``. Default: ``OTEL_METRICS_EXPORTER`` when set, else the
      same choice as ``exporter`` when that is a name, else ``None``.
    * ``prometheus_port``: with ``"prometheus"``, where to serve ``/metrics``
      (default ``OTEL_EXPORTER_PROMETHEUS_PORT`` or 9464, on ``OTEL_EXPORTER_PROMETHEUS_HOST``
      or all interfaces).
    * ``access_log``: also write JSON access log lines on the ``dubbok.access`` logger.

    ``OTEL_SDK_DISABLED=true`` installs no provider. Apps created afterwards use the returned
    observer unless given another (:func:`dubbok.observe.set_default_observer`); pass it to
    ``App(observer=...)`` for Apps that already exist. Raises
    :class:`~dubbok.errors.ConfigurationError` — before installing anything — when an
    exporter's package is missing or a choice is unknown.
    """
    _require_sdk()
    disabled = _sdk_disabled()
    install_traces = not disabled and not _has_tracer_provider()
    install_metrics = not disabled and not _has_meter_provider()

    exporters: list[SpanExporter] = []
    if install_traces and exporter is not None:
        if isinstance(exporter, str):
            names = _names(exporter, "OTEL_TRACES_EXPORTER", "otlp")
            exporters = [_span_exporter(n) for n in names]
        else:
            exporters = [exporter]
    elif not install_traces and not disabled and (sampler is not None or exporter != FROM_ENV):
        log.info("a TracerProvider is already installed; using it as is (exporter/sampler ignored)")

    readers: list[MetricReader] = []
    if install_metrics and metrics_exporter is not None:
        if isinstance(metrics_exporter, str):
            if metrics_exporter == FROM_ENV and "OTEL_METRICS_EXPORTER" not in os.environ:
                chosen = exporter if isinstance(exporter, str) else "none"
                if chosen == FROM_ENV:
                    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
            else:
                chosen = metrics_exporter
            for name in _names(chosen, "OTEL_METRICS_EXPORTER", "otlp"):
                if name == "prometheus":
                    readers.append(_start_prometheus(prometheus_port))
                else:
                    readers.append(_metric_reader(name))
        else:
            readers = [metrics_exporter]

    if install_traces:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(sampler=sampler, resource=_resource(service_name))
        for span_exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(provider)
    if install_metrics and readers:
        from opentelemetry.sdk.metrics import MeterProvider

        metrics.set_meter_provider(
            MeterProvider(metric_readers=readers, resource=_resource(service_name))
        )

    observer: Observer = OtelObserver()
    if access_log:
        observer = CompositeObserver(observer, AccessLogObserver())
    set_default_observer(observer)
    return observer


def _start_prometheus(port: int | None, host: str | None = None) -> MetricReader:
    reader, start_http_server = _prometheus_reader()
    if port is None:
        port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
    if host is None:
        host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0")
    start_http_server(port, addr=host)
    return reader


def serve_prometheus(
    port: int = 9464, host: str = "0.0.0.0", service_name: str | None = None
) -> None:
    """Serve every dubbok metric at ``http://host:port/metrics`` for Prometheus to scrape.

    Installs a MeterProvider whose reader is the Prometheus exporter, so call it before
    :func:`configure` (which then keeps it) — or use ``configure(metrics_exporter="prometheus",
    prometheus_port=port)``. When the application already installed a MeterProvider, add
    ``PrometheusMetricReader`` to it instead: a provider's readers are fixed when it is made,
    and this raises :class:`~dubbok.errors.ConfigurationError` saying so.
    """
    _require_sdk()
    if _has_meter_provider():
        raise ConfigurationError(
            "a MeterProvider is already installed and its readers cannot change: create it "
            "with metric_readers=[opentelemetry.exporter.prometheus.PrometheusMetricReader()] "
            "and call prometheus_client.start_http_server(port), or call serve_prometheus "
            "before anything installs a MeterProvider"
        )
    reader = _start_prometheus(port, host)
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(metric_readers=[reader], resource=_resource(service_name))
    metrics.set_meter_provider(provider)
