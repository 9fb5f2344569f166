"""Structured access log: one JSON line per call, on the ``dubbok.access`` logger.

Opt-in — install :class:`AccessLogObserver` (``dubbok.tracing.configure(access_log=True)``
does, after the tracing observer) and give the logger a handler::

    {"time":"2026-01-01T12:00:00.123+00:00","side":"client","service":"helloworld.Greeter",
     "method":"SayHello","peer":"10.0.0.7:50051","status":"OK","duration_ms":1.42,
     "attempt":1,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}

``time`` is when the call started (UTC); ``peer`` the provider of the last attempt (client)
or the caller (server); ``attempt`` how many attempts the call took (client), or which
attempt of its caller's call this one was (server: the ``x-dubbok-attempt`` header a dubbok
consumer sends with retries and hedges, else ``1``); ``trace_id``/``span_id`` the trace
context the last attempt sent (client) or the span current in the handler (server) —
``null`` without tracing. Request and response bodies and metadata (so auth tokens) are
never logged. Each record also carries the fields as a dict in ``record.access``, for
handlers that format their own way.

When the logger is not enabled for the level, an observation is not even created.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator

from ..core import ATTEMPT_HEADER
from ..endpoint import Endpoint
from ..invocation import Invocation, Metadata
from ..observe import CallObservation, ServerObservation
from ._semconv import split_peer

__all__ = ["ACCESS_LOGGER", "AccessLogObserver"]

ACCESS_LOGGER = "dubbok.access"
_clock = time.perf_counter


class AccessLogObserver:
    """An :class:`~dubbok.observe.Observer` writing access log lines.

    ``propagator`` (default: the global one) reads the trace ids back out of the metadata a
    client attempt sends; compose after the tracing observer so that there are some.
    """

    def __init__(
        self,
        logger: logging.Logger | str = ACCESS_LOGGER,
        level: int = logging.INFO,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level
        self._propagator = propagator

    def call(
        self, invocation: Invocation, loadbalance: str, cluster: str
    ) -> CallObservation | None:
        if not self.logger.isEnabledFor(self.level):
            return None
        return _Call(self, invocation.service, invocation.method)

    def handle(self, service: str, method: str, context: Any) -> ServerObservation | None:
        if not self.logger.isEnabledFor(self.level):
            return None
        host, port = split_peer(context.peer() or "")
        served = _Served(self, service, method, host if port is None else f"{host}:{port}")
        for key, value in context.invocation_metadata() or ():
            if key == ATTEMPT_HEADER:
                text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
                # a caller's header: at most a few ASCII digits, anything else is ignored
                if 0 < len(text) <= 4 and text.isascii() and text.isdigit():
                    served._attempt = int(text)
                break
        return served

    def _write(
        self,
        side: str,
        service: str,
        method: str,
        peer: str | None,
        code: grpc.StatusCode,
        wall: float,
        seconds: float,
        attempt: int,
        ids: tuple[str, str] | None,
    ) -> None:
        record = {
            "time": datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds"),
            "side": side,
            "service": service,
            "method": method,
            "peer": peer,
            "status": code.name,
            "duration_ms": round(seconds * 1e3, 3),
            "attempt": attempt,
            "trace_id": ids[0] if ids else None,
            "span_id": ids[1] if ids else None,
        }
        self.logger.log(
            self.level, json.dumps(record, separators=(",", ":")), extra={"access": record}
        )

    def _ids_in(self, metadata: Metadata) -> tuple[str, str] | None:
        carrier = {k: v for k, v in metadata if isinstance(v, str)}
        ctx = (self._propagator or propagate.get_global_textmap()).extract(carrier)
        return _ids(trace.get_current_span(ctx))


def _ids(span: trace.Span) -> tuple[str, str] | None:
    sc = span.get_span_context()
    if not sc.is_valid:
        return None
    return trace.format_trace_id(sc.trace_id), trace.format_span_id(sc.span_id)


class _Call:
    __slots__ = (
        "_attempt",
        "_log",
        "_metadata",
        "_method",
        "_peer",
        "_service",
        "_started",
        "_wall",
    )

    def __init__(self, log: AccessLogObserver, service: str, method: str) -> None:
        self._log = log
        self._service = service
        self._method = method
        self._peer: str | None = None
        self._attempt = 0
        self._metadata: Metadata = ()
        self._wall = time.time()
        self._started = _clock()

    def attempt(self, endpoint: Endpoint, number: int, metadata: Metadata) -> Metadata:
        self._peer = endpoint.address
        self._attempt = number
        self._metadata = metadata
        return metadata

    def attempt_done(
        self, code: grpc.StatusCode, details: str, endpoint: Endpoint | None = None
    ) -> None:
        pass

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        pass

    def done(self, code: grpc.StatusCode, details: str) -> None:
        ids = self._log._ids_in(self._metadata) if self._metadata else None
        self._log._write(
            "client",
            self._service,
            self._method,
            self._peer,
            code,
            self._wall,
            _clock() - self._started,
            self._attempt,
            ids,
        )


class _Served:
    __slots__ = ("_attempt", "_log", "_method", "_peer", "_service", "_started", "_wall")

    def __init__(self, log: AccessLogObserver, service: str, method: str, peer: str) -> None:
        self._log = log
        self._service = service
        self._method = method
        self._peer = peer
        self._wall = time.time()
        self._started = _clock()
        self._attempt = 1

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        pass  # the access log records calls, not governance events

    def done(self, code: grpc.StatusCode, details: str) -> None:
        # Runs before the tracing observer's done (composite order): its span is current.
        self._log._write(
            "server",
            self._service,
            self._method,
            self._peer or None,
            code,
            self._wall,
            _clock() - self._started,
            self._attempt,
            _ids(trace.get_current_span()),
        )
