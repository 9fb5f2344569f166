"""The directory: keeps one reference's :class:`~dubbok.core.Route` in step with discovery.

Discovery pushes whole endpoint sets (from its own thread). The directory diffs each set
against the last: new endpoints get a connection from the pool, removed ones are released
(drained, then closed), unchanged ones are not touched. Then it builds a fresh picker and
swaps the new route in whole. Readers never lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._gauges import directory_size
from .balancer import Balancer
from .core import MethodPolicy, Route
from .endpoint import Endpoint
from .governance import Governance
from .options import ReferenceOptions
from .routing import RoutePlan, Router

__all__ = ["Directory"]

log = logging.getLogger("dubbok.directory")


class _Unrouted:
    """The picker slot of a route that has a plan: calls go through the plan."""

    def pick(self, invocation: object, exclude: object = ()) -> None:
        raise AssertionError("routes with a plan pick through plan.select()")


_UNROUTED = _Unrouted()

Acquire = Callable[[str], Any]
Release = Callable[[Any], None]


InstanceFilter = Callable[[Sequence[Endpoint]], Sequence[Endpoint]]
"""Rules on instances (disable some, change weights) applied to each discovered set."""


class Directory:
    """One reference's view of its service. ``update`` may be called from any thread.

    The balancer, the router chain and the instance filter can be replaced while calls run
    (:meth:`reconfigure`, from live rules); each change builds and publishes a new route.
    """

    def __init__(
        self,
        options: ReferenceOptions,
        balancer: Balancer,
        policies: Callable[[Sequence[Endpoint]], Mapping[str, MethodPolicy]],
        acquire: Acquire,
        release: Release,
        publish: Callable[[Route], None],
        *,
        routers: Sequence[Router] = (),
        governance: Governance | None = None,
    ) -> None:
        self._options = options
        self._balancer = balancer
        self._policies = policies
        self._acquire = acquire
        self._release = release
        self._publish = publish
        self._routers = tuple(routers)
        self._governance = governance
        self._filter: InstanceFilter | None = None
        self._lock = threading.Lock()
        self._connections: dict[str, Any] = {}
        self._endpoints: tuple[Endpoint, ...] = ()
        self._seen = False
        self._closed = False
        self.route = self._build((), 0)
        publish(self.route)

    @property
    def balancer(self) -> Balancer:
        return self._balancer

    def _build(self, endpoints: Sequence[Endpoint], discovered: int) -> Route:
        gov = self._governance
        return Route(
            service=self._options.service,
            endpoints=tuple(endpoints),
            picker=_UNROUTED,
            plan=RoutePlan(self._routers, endpoints, self._balancer.build),
            balancer=self._balancer,
            policies=self._policies(endpoints),
            connections=dict(self._connections),
            discovered=discovered,
            origin=self._options.discovery,
            detector=gov.detector if gov is not None else None,
            bulkhead=gov.bulkhead if gov is not None else None,
        )

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Apply a complete endpoint set from discovery. Never raises."""
        try:
            with self._lock:
                endpoints = tuple(endpoints)
                if self._closed or (self._seen and endpoints == self._endpoints):
                    return
                self._seen = True
                self._endpoints = endpoints
                self._refresh()
        except Exception:
            log.exception("could not apply an endpoint update for %s", self._options.service)

    def _refresh(self) -> None:
        """Rebuild and publish the route from the last discovered set (lock held)."""
        endpoints = self._endpoints
        usable = list(self._filter(endpoints)) if self._filter is not None else list(endpoints)
        wanted = {e.address for e in usable}
        for address in [a for a in self._connections if a not in wanted]:
            self._release(self._connections.pop(address))
        for address in wanted:
            if address not in self._connections:
                self._connections[address] = self._acquire(address)
        gov = self._governance
        if gov is not None and gov.detector is not None:
            gov.detector.retain(wanted)
        self.route = self._build(usable, len(endpoints))
        self._publish(self.route)
        directory_size(self._options.service, len(usable))
        log.debug(
            "%s: %d endpoint(s) discovered, %d usable",
            self._options.service,
            len(endpoints),
            len(usable),
        )

    def rebuild(self) -> None:
        """Rebuild the route from the current endpoints (rules or switches changed)."""
        try:
            with self._lock:
                if not self._closed:
                    self._refresh()
        except Exception:
            log.exception("could not rebuild the route of %s", self._options.service)

    def reconfigure(
        self,
        *,
        balancer: Balancer | None = None,
        routers: Sequence[Router] | None = None,
        instance_filter: InstanceFilter | None = None,
        clear_filter: bool = False,
    ) -> None:
        """Swap the balancer, the router chain or the instance filter, then rebuild."""
        with self._lock:
            if self._closed:
                return
            if balancer is not None:
                self._balancer = balancer
            if routers is not None:
                self._routers = tuple(routers)
            if instance_filter is not None or clear_filter:
                self._filter = instance_filter
            self._refresh()

    def close(self) -> None:
        """Release every connection; later updates are ignored."""
        with self._lock:
            self._closed = True
            for conn in self._connections.values():
                self._release(conn)
            self._connections.clear()
