"""Running a router chain: :class:`RoutePlan` per snapshot, :func:`route_chain` for one call.

Who calls what: the directory (a discovery thread) builds a :class:`RoutePlan` whenever the
endpoint snapshot or the routing rules change, and publishes it with the snapshot; each call
then asks ``plan.select(invocation)`` for its :class:`Candidates` and picks from
``candidates.picker``. ``select`` takes no lock: the plan's state is immutable except the
subset cache, a dict whose races are benign (two threads may both build a subset's picker on
its first use; one is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..balancer import Picker
from ..balancer.weight import EMPTY_PICKER
from ..endpoint import Endpoint
from ..errors import NoProviderError
from ..invocation import Invocation
from . import Router, RouteStep, SnapshotRouter
from .step import full_mask, members

__all__ = ["DEFAULT_CACHE_SIZE", "Candidates", "FunctionRouter", "RoutePlan", "route_chain"]

DEFAULT_CACHE_SIZE = 256
"""Distinct routed subsets a plan keeps pickers for. Real rule sets produce a handful (one
per tag value or rule target); past the limit the cache starts over rather than grow."""

PickerFactory = Callable[[Sequence[Endpoint]], Picker]


@dataclass(frozen=True, slots=True)
class Candidates:
    """One routed subset of a snapshot, and the picker the balancer built for it."""

    endpoints: tuple[Endpoint, ...]
    picker: Picker


class FunctionRouter:
    """Adapts ``fn(endpoints, invocation) -> endpoints`` to :class:`Router`."""

    __slots__ = ("_fn", "name")

    def __init__(
        self,
        name: str,
        fn: Callable[[Sequence[Endpoint], Invocation], Sequence[Endpoint]],
    ) -> None:
        self.name = name
        self._fn = fn

    def route(self, endpoints: Sequence[Endpoint], invocation: Invocation) -> Sequence[Endpoint]:
        return self._fn(endpoints, invocation)


class _RouterStep:
    """A plain :class:`Router` as a step: calls ``route`` per call on the current subset, O(n)."""

    __slots__ = ("_endpoints", "_index", "_router")

    invariant = False

    def __init__(self, router: Router, endpoints: tuple[Endpoint, ...]) -> None:
        self._router = router
        self._endpoints = endpoints
        self._index = {ep.address: i for i, ep in enumerate(endpoints)}

    def select(self, invocation: Invocation | None, mask: int) -> int:
        if invocation is None:
            return mask
        routed = self._router.route(members(self._endpoints, mask), invocation)
        out = 0
        index = self._index
        for ep in routed:
            i = index.get(ep.address)
            if i is not None:
                out |= 1 << i
        return out & mask  # a router may only narrow what it was given

    def explain(self, invocation: Invocation | None, mask: int) -> str:
        return ""


def _prepare(router: Router, endpoints: tuple[Endpoint, ...]) -> RouteStep:
    if isinstance(router, SnapshotRouter):
        return router.prepare(endpoints)
    return _RouterStep(router, endpoints)


def _no_picker(endpoints: Sequence[Endpoint]) -> Picker:
    return EMPTY_PICKER


class RoutePlan:
    """A router chain prepared for one endpoint snapshot.

    ``build`` makes the picker of a routed subset (normally ``balancer.build``). Building a
    plan never raises: when routing leaves nothing whatever the call, the error is kept and
    raised by each :meth:`select`.
    """

    __slots__ = (
        "_base",
        "_build",
        "_cache",
        "_cache_size",
        "_failure",
        "_steps",
        "_unrouted",
        "endpoints",
        "routable",
    )

    def __init__(
        self,
        routers: Sequence[Router],
        endpoints: Sequence[Endpoint],
        build: PickerFactory,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self._build = build
        self._cache: dict[int, Candidates] = {}
        self._cache_size = max(1, cache_size)
        self._failure: tuple[str, str, int] | None = None
        self._unrouted: Candidates | None = None
        mask = full_mask(len(self.endpoints))
        if not self.endpoints:
            self._failure = ("", "", 0)
        steps: list[tuple[str, RouteStep]] = []
        for router in routers:
            step = _prepare(router, self.endpoints)
            if not step.invariant:
                steps.append((router.name, step))
            elif self._failure is None:
                kept = step.select(None, mask) & mask
                if not kept:
                    self._failure = (router.name, step.explain(None, mask), mask.bit_count())
                mask = kept
        self._base = mask
        self.routable = mask.bit_count()
        """The endpoints a call's own routing starts from (after the fixed filters)."""
        self._steps = tuple(steps)
        if self._failure is None:
            # The subset most calls get (no tag, no rule matched) is built here, on the
            # discovery thread, instead of on the first call.
            candidates = self._admit(mask)
            if not self._steps:
                self._unrouted = candidates

    def select(self, invocation: Invocation) -> Candidates:
        """The candidates for ``invocation``; :class:`NoProviderError` naming the router and
        rule that left none."""
        unrouted = self._unrouted
        if unrouted is not None:
            return unrouted
        if self._failure is not None:
            raise self._error(invocation, *self._failure)
        mask = self._base
        for name, step in self._steps:
            out = step.select(invocation, mask)
            if not out:
                raise self._error(
                    invocation, name, step.explain(invocation, mask), mask.bit_count()
                )
            mask = out
        found = self._cache.get(mask)
        return found if found is not None else self._admit(mask)

    def decisions(self, invocation: Invocation) -> tuple[tuple[str, str], ...]:
        """The routers that narrowed ``invocation``'s candidates, each with what decided
        (a step's optional ``decided``: the rule's label, the call's tag; ``""`` if none).
        Runs the per-call steps again, so a function router is asked a second time: called
        for the ``routed`` span event of observed calls that routing narrowed."""
        out: list[tuple[str, str]] = []
        mask = self._base
        for name, step in self._steps:
            narrowed = step.select(invocation, mask)
            if narrowed != mask:
                decided = getattr(step, "decided", None)
                out.append((name, decided(invocation, mask) if decided is not None else ""))
            mask = narrowed
        return tuple(out)

    def route(self, invocation: Invocation) -> tuple[Endpoint, ...]:
        """The endpoints left for ``invocation`` (see :meth:`select`)."""
        return self.select(invocation).endpoints

    def _admit(self, mask: int) -> Candidates:
        subset = members(self.endpoints, mask)
        candidates = Candidates(subset, self._build(subset))
        cache = self._cache
        if len(cache) >= self._cache_size:
            cache.clear()
        return cache.setdefault(mask, candidates)

    def _error(self, invocation: Invocation, router: str, why: str, count: int) -> NoProviderError:
        target = f"{invocation.service}/{invocation.method}"
        if not router:
            text = (
                f"no provider of {target}: the endpoint set is empty; check that a provider is "
                "running and registered where this consumer looks"
            )
        else:
            detail = f" ({why})" if why else ""
            text = (
                f"no provider of {target}: router {router!r}{detail} left no endpoint of "
                f"{count}; fix the routing rule, or start a provider it accepts"
            )
        return NoProviderError(invocation.service, text, method=invocation.method)


def route_chain(
    routers: Sequence[Router], endpoints: Sequence[Endpoint], invocation: Invocation
) -> tuple[Endpoint, ...]:
    """Run ``routers`` over ``endpoints`` for one call. O(n x routers): for tests and one-off
    use; a driver keeps a :class:`RoutePlan` per snapshot instead.

    Raises :class:`NoProviderError` naming the router (and rule) that left nothing, e.g.
    ``router 'condition' (rule #2: header x-canary == 1 → tags track=canary, force) left no
    endpoint of 3``.
    """
    return RoutePlan(routers, endpoints, _no_picker).route(invocation)
