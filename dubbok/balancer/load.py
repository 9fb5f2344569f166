"""Per-endpoint load that this process has put on each provider, shared by its pickers.

:class:`LoadBook` keeps one :class:`Load` per address, across endpoint snapshots and across
the pickers of different routed subsets, so a call counted by one picker is seen by all.

Concurrency without locks: the in-flight count is the length of a list that ``started``
appends to and ``finished`` pops from. ``list.append``, ``list.pop`` and ``len`` are single C
calls, atomic under the GIL (and under the per-object locks of free-threaded builds), so the
count never drifts the way ``n += 1`` from many threads would. The latency estimate is updated
with plain reads and writes: two threads finishing at once may lose one sample, which an
estimate that decays in seconds does not notice.

Entries of addresses no longer in any snapshot are dropped once the book grows well past the
endpoint set being built, and only while nothing is in flight to them. A call that starts in
the instant an entry is dropped is not counted; that is a one-call blind spot, not drift.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..endpoint import Endpoint

__all__ = ["Load", "LoadBook"]


class Load:
    """What this process knows about one endpoint's load."""

    __slots__ = ("active", "cost", "measured", "stamp")

    def __init__(self) -> None:
        self.active: list[None] = []
        self.cost = 0.0
        self.stamp = 0.0
        self.measured = False

    @property
    def in_flight(self) -> int:
        return len(self.active)


class LoadBook:
    """Address → :class:`Load`, plus a process-wide latency estimate for unmeasured endpoints."""

    __slots__ = ("loads", "typical")

    def __init__(self, typical: float) -> None:
        self.loads: dict[str, Load] = {}
        self.typical = typical

    def load(self, endpoint: Endpoint) -> Load:
        entry = self.loads.get(endpoint.address)
        if entry is None:
            # setdefault is atomic: two threads creating the first entry agree on one.
            entry = self.loads.setdefault(endpoint.address, Load())
        return entry

    def started(self, endpoint: Endpoint) -> Load:
        entry = self.load(endpoint)
        entry.active.append(None)
        return entry

    def finished(self, endpoint: Endpoint) -> Load:
        entry = self.load(endpoint)
        try:  # noqa: SIM105 - zero-cost on the hot path, unlike a suppress() context manager
            entry.active.pop()
        except IndexError:
            # Started before its entry was pruned, or finished twice by a driver: nothing to
            # undo, and a count never goes below zero.
            pass
        return entry

    def in_flight(self, address: str) -> int:
        entry = self.loads.get(address)
        return 0 if entry is None else len(entry.active)

    def prune(self, endpoints: Sequence[Endpoint]) -> None:
        """Drop idle entries of addresses not in ``endpoints`` once the book has grown."""
        if len(self.loads) <= 2 * len(endpoints) + 64:
            return
        live = {ep.address for ep in endpoints}
        # list() copies the items in one C call, so other threads adding entries meanwhile
        # cannot break the iteration.
        for address, entry in list(self.loads.items()):
            if address not in live and not entry.active:
                self.loads.pop(address, None)
