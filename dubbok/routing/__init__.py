"""Routing: narrow the endpoint set before balancing.

A :class:`Router` removes endpoints an invocation must not reach: wrong version or group,
the wrong tag lane, disabled by a rule. Routers run in a chain, in order; the chain's output
is what the balancer picks from. When a router leaves nothing, the
:class:`~dubbok.errors.NoProviderError` names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..endpoint import Endpoint
from ..invocation import Invocation

__all__ = ["Router"]


@runtime_checkable
class Router(Protocol):
    """Filters candidates. Called on the caller's thread or loop; must not block or raise.

    ``name`` appears in errors when the router emptied the set.
    """

    name: str

    def route(self, endpoints: Sequence[Endpoint], invocation: Invocation) -> Sequence[Endpoint]:
        ...
