"""The keys a process watches, kept in step with etcd from listings and watch events.

A process lists each of its scopes (``config/global/``, ``config/apps/<app>/``,
``config/services/<service>/`` for each service it uses) and watches all of ``config/``
with one watch, starting after the oldest listing. Listings of different scopes are read
at different revisions, and a scope may be added while the watch runs, so every change is
checked against two revisions before it is applied:

* the revision its scope was listed at: an event at or below it is already in the listing;
* the last revision seen for its key: an older event never overwrites a newer value.

Those checks hold within one etcd history, where revisions only grow. A listing that
contradicts what was seen (read at a revision below one already seen under its scope, or
giving a key an older revision than seen) means etcd holds another history now: its data
was restored from a backup, wiped, or lost the last writes in a crash of a single member
(etcd before 3.5.5 acknowledges a single member's write before it is in its log).
:meth:`ConfigView.went_back` tells, :meth:`ConfigView.forget_revisions` starts over from
the listings, keeping the values so that what differs is still reported.

:class:`ConfigView` is pure and owned by one thread (the config center's).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["ConfigView", "Raw"]


@dataclass(frozen=True, slots=True)
class Raw:
    """A key's value as stored, and the revision it was written at."""

    value: bytes
    revision: int


class ConfigView:
    """Absolute etcd keys of the watched scopes and their current values."""

    def __init__(self) -> None:
        self._values: dict[str, Raw] = {}
        self._seen: dict[str, int] = {}
        self._listed: dict[str, int] = {}

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scope prefixes watched."""
        return tuple(self._listed)

    def add_scope(self, prefix: str) -> bool:
        """Start keeping keys under ``prefix`` (not listed yet). ``False`` if known."""
        if prefix in self._listed:
            return False
        self._listed[prefix] = 0
        return True

    def listed_at(self, prefix: str) -> int:
        return self._listed.get(prefix, 0)

    def watch_from(self) -> int:
        """The revision a watch must start at to miss nothing after the listings."""
        return min(self._listed.values(), default=0) + 1

    def _scope_of(self, key: str) -> str | None:
        for prefix in self._listed:
            if key.startswith(prefix):
                return prefix
        return None

    def went_back(
        self, prefix: str, items: Iterable[tuple[str, bytes, int]], revision: int
    ) -> bool:
        """Whether a listing of ``prefix`` read at ``revision`` comes from an older etcd
        history than the one seen so far (see the module's docstring). Sound when every
        event applied was received before the listing was asked for, as on the config
        center's one thread."""
        if revision < self._listed.get(prefix, 0):
            return True
        if any(mod_revision < self._seen.get(key, 0) for key, _, mod_revision in items):
            return True
        return any(seen > revision for key, seen in self._seen.items() if key.startswith(prefix))

    def forget_revisions(self) -> None:
        """Start over in a new etcd history: no scope is listed, no revision seen; values
        stay until listings replace them. Every scope must be listed again."""
        self._seen.clear()
        for prefix in self._listed:
            self._listed[prefix] = 0

    def apply_listing(
        self, prefix: str, items: Iterable[tuple[str, bytes, int]], revision: int
    ) -> set[str]:
        """Replace what is known under ``prefix`` with a listing read at ``revision``
        (``(key, value, mod_revision)`` items). Returns the keys whose value changed."""
        self.add_scope(prefix)
        changed: set[str] = set()
        present = set()
        for key, value, mod_revision in items:
            present.add(key)
            if mod_revision < self._seen.get(key, 0):
                continue  # an event already brought something newer
            self._seen[key] = mod_revision
            old = self._values.get(key)
            if old is None or old.value != value:
                changed.add(key)
            self._values[key] = Raw(value, mod_revision)
        for key in [k for k in self._values if k.startswith(prefix) and k not in present]:
            if self._seen.get(key, 0) <= revision:
                del self._values[key]
                changed.add(key)
        # Tombstones at or below the listing are covered by it from now on.
        for key in [k for k, rev in self._seen.items() if k.startswith(prefix)]:
            if key not in self._values and self._seen[key] <= revision:
                del self._seen[key]
        self._listed[prefix] = max(self._listed[prefix], revision)
        return changed

    def apply_event(self, key: str, value: bytes | None, mod_revision: int) -> bool:
        """Apply one watch event (``value`` ``None`` for a delete); ``True`` if the key's
        value changed."""
        prefix = self._scope_of(key)
        if prefix is None or mod_revision <= self._listed[prefix]:
            return False
        if mod_revision <= self._seen.get(key, 0):
            return False
        self._seen[key] = mod_revision
        old = self._values.get(key)
        if value is None:
            if old is None:
                return False
            del self._values[key]
            return True
        self._values[key] = Raw(value, mod_revision)
        return old is None or old.value != value

    def get(self, key: str) -> Raw | None:
        return self._values.get(key)

    def items(self) -> Iterator[tuple[str, Raw]]:
        return iter(list(self._values.items()))

    def keys(self) -> set[str]:
        return set(self._values)
