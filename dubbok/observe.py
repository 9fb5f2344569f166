"""Observation hooks: how tracing, metrics and access logs see calls.

The drivers call these hooks, and only when an observer is installed — with none, a call pays
one ``is None`` test. :mod:`dubbok.tracing` implements them on OpenTelemetry; a user may
install their own (``App(observer=...)``).

Client side, per logical call::

    obs = observer.call(invocation, loadbalance, cluster)   # None: not observed
    for each attempt:
        metadata = obs.attempt(endpoint, number, metadata)   # may add trace headers
        obs.attempt_done(code, details)
    obs.event("retry", {...})                        # governance decisions, as they happen
    obs.done(code, details)

Server side, per handled call::

    obs = observer.handle(service, method, context)  # before the handler; sets the context
    obs.done(code, details)                           # after it, in the same thread or task

An observer class may also define ``handle_incoming(service, method, context, metadata)``:
the provider then calls it instead of ``handle``, with the call's invocation metadata, which
it has read already (an asyncio server builds that tuple anew on every
``context.invocation_metadata()``, several µs a call).

Every hook is called on the caller's thread or task, must not block, and must not raise (an
exception from a hook is a bug in the observer and is not caught on the hot path).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import grpc

from .endpoint import Endpoint
from .invocation import Invocation, Metadata

__all__ = ["CallObservation", "Observer", "ServerObservation"]


class CallObservation(Protocol):
    """One observed client call (a logical call, spanning its attempts)."""

    def attempt(self, endpoint: Endpoint, number: int, metadata: Metadata) -> Metadata:
        """An attempt starts; return the metadata to send (e.g. with trace context)."""

    def attempt_done(
        self, code: grpc.StatusCode, details: str, endpoint: Endpoint | None = None
    ) -> None:
        """An attempt ended with this status; ``endpoint`` names it when several attempts
        overlap (forking, broadcast, hedging)."""

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """A governance decision: retry, failover, breaker_open, fallback, ..."""

    def done(self, code: grpc.StatusCode, details: str) -> None:
        """The logical call ended with this status."""


class ServerObservation(Protocol):
    """One handled server call."""

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """A governance decision on the provider side (``rate_limited``)."""

    def done(self, code: grpc.StatusCode, details: str) -> None: ...


class Observer(Protocol):
    """Creates observations. One per App; shared by its threads and tasks."""

    def call(
        self, invocation: Invocation, loadbalance: str, cluster: str
    ) -> CallObservation | None: ...

    def handle(self, service: str, method: str, context: Any) -> ServerObservation | None: ...


_default: Observer | None = None


def set_default_observer(observer: Observer | None) -> None:
    """The observer Apps created from now on use unless given one (``dubbok.tracing`` sets it)."""
    global _default
    _default = observer


def default_observer() -> Observer | None:
    return _default
