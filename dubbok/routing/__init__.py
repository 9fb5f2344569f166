"""Routing: narrow the endpoint set before balancing.

A :class:`Router` removes endpoints an invocation must not reach: wrong version or group,
the wrong tag lane, disabled by a rule. Routers run in a chain; the chain's output is what the
balancer picks from. When a router leaves nothing, the
:class:`~dubbok.errors.NoProviderError` names it, and the rule that decided.

Built-in routers
================

* :class:`~.version.VersionRouter` (``version``) — version glob and group; depends on the
  snapshot only.
* :class:`~.disabled.DisabledRouter` (``disabled``) — addresses a rule disabled; snapshot only.
* :class:`~.tag.TagRouter` (``tag``) — the call's tag lane, from a header or :func:`use_tag`.
* :class:`~.condition.ConditionRouter` (``condition``) — rules on method, request headers and
  consumer app that send calls to endpoints by tags or addresses.

Design: paying per snapshot, not per call
=========================================

Per-call routing must cost next to nothing, so built-in routers are
:class:`SnapshotRouter`\\ s: ``prepare(endpoints)`` runs once per endpoint snapshot (on the
discovery thread) and returns a :class:`RouteStep` that speaks in bit masks over that
snapshot (bit ``i`` = ``endpoints[i]`` is still a candidate; see :mod:`.step`). Preparing
computes, per rule or tag value, the mask of endpoints it targets, so a call's routing is a
dictionary lookup or a few header comparisons plus an integer ``&``.

:class:`~.chain.RoutePlan` assembles the chain for one snapshot:

* steps whose ``invariant`` is true (version/group, disabled addresses) do not depend on the
  call: they are applied once, when the plan is built, *before* the call-dependent steps
  whatever their position in the chain — a disabled endpoint is simply absent, so the tag
  router's fallback, say, never lands on it;
* the call-dependent steps then run in chain order on each call, each narrowing the mask;
* the final mask identifies the subset; the plan keeps one :class:`~.chain.Candidates` (the
  endpoints and a picker built by the balancer) per distinct mask, so each subset's picker is
  built once (the unrouted subset eagerly, with the plan) and reused by every call that routes
  to it. Pickers of different subsets share the balancer's load counts.

A call with no tag and no matching rule therefore costs one pass over its metadata per
router, the rule lookup by method, a couple of integer ``&`` and a dictionary hit: no Python
loop over endpoints (a mask operation is one C call over n/30 machine words). A chain with
no call-dependent step costs one attribute read. Who calls what: the directory builds a plan
on its discovery thread whenever the snapshot or the rules change; a call runs
``plan.select(invocation)`` once, then ``candidates.picker.pick(invocation, tried)`` per
attempt.

:func:`~.chain.route_chain` is the simple form — run the chain over a list, get a list — for
tests and one-off use; it builds a throwaway plan.

Extending
=========

Any object with a ``name`` and ``route(endpoints, invocation)`` is a :class:`Router`
(:class:`~.chain.FunctionRouter` adapts a function); the plan calls it per call with the
current candidates, O(n). Implement :class:`SnapshotRouter` to get the fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..endpoint import Endpoint
from ..invocation import Invocation

__all__ = [
    "ConditionRouter",
    "ConditionRule",
    "DisabledRouter",
    "FunctionRouter",
    "HeaderMatch",
    "Match",
    "RoutePlan",
    "RouteStep",
    "Router",
    "SnapshotRouter",
    "TagRouter",
    "Target",
    "VersionRouter",
    "route_chain",
    "use_tag",
]


@runtime_checkable
class Router(Protocol):
    """Filters candidates. Called on the caller's thread or loop; must not block or raise.

    ``name`` appears in errors when the router emptied the set.
    """

    name: str

    def route(
        self, endpoints: Sequence[Endpoint], invocation: Invocation
    ) -> Sequence[Endpoint]: ...


@runtime_checkable
class RouteStep(Protocol):
    """A router prepared for one endpoint snapshot; works on bit masks over that snapshot.

    Called on the caller's thread or loop, concurrently, and (when ``invariant``) once on the
    thread building the plan with ``invocation=None``. Must not block or raise.
    """

    invariant: bool
    """True when ``select(inv, mask) == mask & select(None, all)`` for every call: a fixed
    filter, applied once per snapshot."""

    def select(self, invocation: Invocation | None, mask: int) -> int:
        """The candidates left of ``mask`` (a subset of it; 0 when none)."""
        ...

    def explain(self, invocation: Invocation | None, mask: int) -> str:
        """Why ``select`` left nothing of ``mask``: the rule and what it wanted. Only called
        on that error path, so it may be slow."""
        ...

    # Optional: ``decided(invocation, mask) -> str``, what made ``select`` narrow ``mask``
    # (a rule's label, the call's tag), for the ``routed`` span event of observed calls.


@runtime_checkable
class SnapshotRouter(Router, Protocol):
    """A router that prepares itself once per endpoint snapshot (the fast path)."""

    def prepare(self, endpoints: Sequence[Endpoint]) -> RouteStep:
        """Called from discovery threads when the snapshot changes; must not raise."""
        ...


# Built-ins, importable from here. They import the protocols above, so they come last.
from .chain import FunctionRouter, RoutePlan, route_chain  # noqa: E402
from .condition import ConditionRouter, ConditionRule, HeaderMatch, Match, Target  # noqa: E402
from .disabled import DisabledRouter  # noqa: E402
from .tag import TagRouter, use_tag  # noqa: E402
from .version import VersionRouter  # noqa: E402
