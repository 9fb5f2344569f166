"""Load balancing: pick one endpoint per attempt.

Balancing happens in two steps (as Kitex does): when the endpoint set changes, a
:class:`Balancer` builds an immutable :class:`Picker` for it; each attempt then asks the picker
for one endpoint, in O(1) or O(log n) and without locks. Balancers that weigh load
(``leastactive``, ``p2c``) also hear when an attempt starts and finishes.

Built-in names (:data:`BUILTIN`; ``docs/load-balancing.md`` has when to use which):

==================  ===========================================================  ==========
name                strategy                                                     pick cost
==================  ===========================================================  ==========
``random``          weighted random (Dubbo's default)                            O(log n)
``roundrobin``      smooth weighted round robin (nginx), precomputed cycle       O(1)
``leastactive``     fewest calls in flight; exact up to 8 endpoints, then the    O(log n)
                    least busy of two weighted draws
``consistenthash``  hash ring, 160 virtual nodes per endpoint, key from a        O(log n)
                    header, a request field or the whole request
``p2c``             power of two choices on peak-EWMA latency x (in flight + 1)  O(log n)
==================  ===========================================================  ==========

Every built-in takes keyword options only: ``rng``, ``clock`` and ``warmup`` (see
:mod:`dubbok.balancer.options`) plus its own; a bad value or an unknown option raises
:class:`~dubbok.errors.ConfigurationError`. An empty endpoint set builds a picker that
returns ``None``; weight-0 endpoints are drained (never picked) unless every weight is 0.

To add one, expose a class (or any callable taking the keyword options and returning a
:class:`Balancer`) under the ``dubbok.balancer`` entry-point group; ``loadbalance="yourname"``
then finds it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from ..endpoint import Endpoint
from ..errors import UnknownExtensionError
from ..invocation import Invocation
from ..outcome import Verdict

__all__ = ["BUILTIN", "Balancer", "Picker", "create_balancer", "known_balancers"]


@runtime_checkable
class Picker(Protocol):
    """Picks from one fixed endpoint set. Called on the caller's thread or loop, concurrently;
    must not block, must not raise, and must not take a lock held across I/O."""

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        """One endpoint whose address is not in ``exclude``; ``None`` if none is left."""


@runtime_checkable
class Balancer(Protocol):
    """Builds pickers, and (when ``tracks_load`` is true) hears about each attempt.

    ``build`` is called from discovery threads; ``started``/``finished`` on the caller's thread
    or loop, concurrently. None of them may block or raise.
    """

    tracks_load: bool

    def build(self, endpoints: Sequence[Endpoint]) -> Picker: ...

    def started(self, endpoint: Endpoint) -> None: ...

    def finished(self, endpoint: Endpoint, latency: float, verdict: Verdict) -> None: ...


BalancerFactory = Callable[..., Balancer]

BUILTIN: dict[str, str] = {
    "random": "dubbok.balancer.random:RandomBalancer",
    "roundrobin": "dubbok.balancer.roundrobin:RoundRobinBalancer",
    "leastactive": "dubbok.balancer.leastactive:LeastActiveBalancer",
    "consistenthash": "dubbok.balancer.consistenthash:ConsistentHashBalancer",
    "p2c": "dubbok.balancer.p2c:P2CBalancer",
}


def known_balancers() -> list[str]:
    return sorted({*BUILTIN, *(ep.name for ep in entry_points(group="dubbok.balancer"))})


def create_balancer(name: str, **options: Any) -> Balancer:
    """Instantiate the balancer registered as ``name``; :class:`UnknownExtensionError` if none."""
    key = name.strip().lower()
    if key in BUILTIN:
        module_name, _, attr = BUILTIN[key].partition(":")
        factory: BalancerFactory = getattr(importlib.import_module(module_name), attr)
        return factory(**options)
    for ep in entry_points(group="dubbok.balancer"):
        if ep.name == key:
            loaded: BalancerFactory = ep.load()
            return loaded(**options)
    raise UnknownExtensionError("balancer", name, known_balancers())
