"""Several observers as one: :class:`CompositeObserver`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from ..endpoint import Endpoint
from ..invocation import Invocation, Metadata
from ..observe import CallObservation, Observer, ServerObservation

__all__ = ["CompositeObserver"]


class CompositeObserver:
    """Runs several observers, in order: ``CompositeObserver(OtelObserver(), AccessLogObserver())``.

    Outgoing metadata passes through each observer's ``attempt`` in turn, so a later observer
    sees what an earlier one added (trace headers). ``done`` runs in reverse order, so an
    observer that made a span current on the server (the first) restores the context only
    after the others have finished with it. Observers that decline a call (return ``None``)
    cost nothing further; when only one accepts, its observation is used directly.
    """

    def __init__(self, *observers: Observer) -> None:
        flat: list[Observer] = []
        for observer in observers:
            if isinstance(observer, CompositeObserver):
                flat.extend(observer.observers)
            elif observer is not None:
                flat.append(observer)
        self.observers: tuple[Observer, ...] = tuple(flat)
        # Each one's handle_incoming (dubbok.observe), or None: found once, not per call.
        self._incoming = tuple(getattr(o, "handle_incoming", None) for o in flat)

    def __repr__(self) -> str:
        return f"CompositeObserver{self.observers!r}"

    def call(
        self, invocation: Invocation, loadbalance: str, cluster: str
    ) -> CallObservation | None:
        found = [
            o
            for o in (x.call(invocation, loadbalance, cluster) for x in self.observers)
            if o is not None
        ]
        if not found:
            return None
        return found[0] if len(found) == 1 else _Calls(tuple(found))

    def handle(self, service: str, method: str, context: Any) -> ServerObservation | None:
        return self.handle_incoming(service, method, context, None)

    def handle_incoming(
        self, service: str, method: str, context: Any, metadata: Any
    ) -> ServerObservation | None:
        """As :meth:`handle`; hands ``metadata`` on to the observers that take it."""
        found = []
        for observer, incoming in zip(self.observers, self._incoming, strict=True):
            if incoming is not None and metadata is not None:
                served = incoming(service, method, context, metadata)
            else:
                served = observer.handle(service, method, context)
            if served is not None:
                found.append(served)
        if not found:
            return None
        return found[0] if len(found) == 1 else _Served(tuple(reversed(found)))


class _Calls:
    __slots__ = ("_each",)

    def __init__(self, each: tuple[CallObservation, ...]) -> None:
        self._each = each

    def attempt(self, endpoint: Endpoint, number: int, metadata: Metadata) -> Metadata:
        for obs in self._each:
            metadata = obs.attempt(endpoint, number, metadata)
        return metadata

    def attempt_done(
        self, code: grpc.StatusCode, details: str, endpoint: Endpoint | None = None
    ) -> None:
        for obs in reversed(self._each):
            if endpoint is None:
                obs.attempt_done(code, details)
            else:  # an observer that takes the endpoint of overlapping attempts
                obs.attempt_done(code, details, endpoint)

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        for obs in self._each:
            obs.event(name, attributes)

    def done(self, code: grpc.StatusCode, details: str) -> None:
        for obs in reversed(self._each):
            obs.done(code, details)


class _Served:
    __slots__ = ("_each",)

    def __init__(self, reverse: tuple[ServerObservation, ...]) -> None:
        self._each = reverse

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        for obs in reversed(self._each):
            event = getattr(obs, "event", None)
            if event is not None:
                event(name, attributes)

    def done(self, code: grpc.StatusCode, details: str) -> None:
        for obs in self._each:
            obs.done(code, details)
