"""History entries: what a write through the CLI or the API keeps, and reading it back.

Each write of a config key writes, in the same etcd transaction, one entry under
``history/config/<key>/<revision>``, where ``<revision>`` is the revision of the value being
replaced (zero-padded). The entry is JSON::

    {"format": 1, "action": "set", "author": "alice", "time": 1718000000.5,
     "message": "raise the timeout", "previous_revision": 41, "previous": "timeout: 1\\n"}

so it holds the previous value, and who replaced it, when and why. Because etcd gives every
key written by one transaction the same revision, the entry's own ``mod_revision`` is the
revision of the value that replaced it: from the entries alone :func:`versions` rebuilds
the list of versions with their authors, times and messages.

A write that creates a key (nothing to keep) still records who and why: the entry then has
``previous_revision: 0`` and is stored under the store revision the writer read, which no
other entry of the key can have.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["HistoryEntry", "Version", "versions"]

_FORMAT = 1

ACTIONS = ("set", "rm", "rollback")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a key: the value it replaced and who made it."""

    action: str
    author: str
    time: float
    message: str
    previous_revision: int
    previous: bytes | None

    def encode(self) -> bytes:
        record: dict[str, Any] = {
            "format": _FORMAT,
            "action": self.action,
            "author": self.author,
            "time": self.time,
            "message": self.message,
            "previous_revision": self.previous_revision,
        }
        if self.previous is None:
            record["previous"] = None
        else:
            try:
                record["previous"] = self.previous.decode("utf-8")
            except UnicodeDecodeError:  # written by another tool; keep the bytes exactly
                record["previous_b64"] = base64.b64encode(self.previous).decode("ascii")
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> HistoryEntry | None:
        """The entry, or ``None`` for something this version cannot read."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return None
        previous: bytes | None = None
        if isinstance(data.get("previous_b64"), str):
            try:
                previous = base64.b64decode(data["previous_b64"], validate=True)
            except ValueError:
                return None
        elif isinstance(data.get("previous"), str):
            previous = data["previous"].encode("utf-8")
        when = data.get("time")
        revision = data.get("previous_revision")
        if (
            isinstance(when, bool)
            or not isinstance(when, (int, float))
            or not math.isfinite(when)
            or isinstance(revision, bool)
            or not isinstance(revision, int)
        ):
            return None
        return cls(
            action=str(data.get("action") or "set"),
            author=str(data.get("author") or ""),
            time=float(when),
            message=str(data.get("message") or ""),
            previous_revision=revision,
            previous=previous,
        )


@dataclass(frozen=True, slots=True)
class Version:
    """One value a key had. ``value`` is ``None`` when the version is a deletion
    (``deleted``) or when its value is no longer known (history pruned, or written by a
    tool that keeps none). ``author``, ``time`` and ``message`` are empty when unknown."""

    revision: int
    value: bytes | None
    action: str = ""
    author: str = ""
    time: float | None = None
    message: str = ""
    current: bool = False
    deleted: bool = False

    @property
    def known(self) -> bool:
        return self.value is not None


def versions(
    current: tuple[int, bytes] | None,
    entries: Sequence[tuple[int, HistoryEntry]],
) -> list[Version]:
    """Every version that ``current`` (``(mod_revision, value)`` or ``None`` if the key is
    absent) and the history ``entries`` (``(entry mod_revision, entry)``) reveal, newest
    first."""
    made: dict[int, HistoryEntry] = {}
    values: dict[int, bytes | None] = {}
    for revision, entry in entries:
        made[revision] = entry
        if entry.previous_revision > 0:
            values.setdefault(entry.previous_revision, entry.previous)
    if current is not None:
        values[current[0]] = current[1]
    out = []
    for revision in sorted(set(made) | set(values), reverse=True):
        change = made.get(revision)
        deleted = change is not None and change.action == "rm"
        out.append(
            Version(
                revision=revision,
                value=None if deleted else values.get(revision),
                action=change.action if change else "",
                author=change.author if change else "",
                time=change.time if change else None,
                message=change.message if change else "",
                current=(current is not None and current[0] == revision)
                or (current is None and deleted and revision == max(made)),
                deleted=deleted,
            )
        )
    return out
