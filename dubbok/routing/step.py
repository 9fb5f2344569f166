"""Endpoint subsets as bit masks, and the small pieces built-in routers share.

A router prepared for one snapshot (a :class:`~dubbok.routing.RouteStep`) speaks in masks:
bit ``i`` set means ``endpoints[i]`` of that snapshot is still a candidate. Intersecting two
subsets is one ``&`` on Python ints (C speed, n/30 machine words), and a mask is a hashable
identity for the subset, which is what keys the per-subset picker cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..endpoint import Endpoint
from ..invocation import Invocation
from . import SnapshotRouter

__all__ = ["FixedStep", "full_mask", "mask_of", "members", "route_prepared"]


def full_mask(n: int) -> int:
    """The mask of every one of ``n`` endpoints."""
    return (1 << n) - 1


def mask_of(endpoints: Sequence[Endpoint], keep: Callable[[Endpoint], bool]) -> int:
    """The mask of the endpoints ``keep`` accepts."""
    mask = 0
    for i, ep in enumerate(endpoints):
        if keep(ep):
            mask |= 1 << i
    return mask


def members(endpoints: Sequence[Endpoint], mask: int) -> tuple[Endpoint, ...]:
    """The endpoints a mask selects, in snapshot order. O(n)."""
    bits = bin(mask)[:1:-1]  # least significant bit first
    # bits stops at the highest set bit, so it is usually shorter than endpoints.
    return tuple(ep for ep, bit in zip(endpoints, bits, strict=False) if bit == "1")


class FixedStep:
    """A filter that depends on the snapshot only: ``select`` is one ``&``.

    ``describe(mask)`` explains, for the endpoints in ``mask``, why the filter kept none.
    """

    __slots__ = ("_describe", "_keep")

    invariant = True

    def __init__(self, keep: int, describe: Callable[[int], str]) -> None:
        self._keep = keep
        self._describe = describe

    def select(self, invocation: Invocation | None, mask: int) -> int:
        return mask & self._keep

    def explain(self, invocation: Invocation | None, mask: int) -> str:
        return self._describe(mask)


def route_prepared(
    router: SnapshotRouter, endpoints: Sequence[Endpoint], invocation: Invocation
) -> tuple[Endpoint, ...]:
    """``Router.route`` for a router that prepares steps: prepare, select, map back. O(n)."""
    snapshot = tuple(endpoints)
    step = router.prepare(snapshot)
    full = full_mask(len(snapshot))
    return members(snapshot, step.select(invocation, full) & full)
