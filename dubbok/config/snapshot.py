"""Last-known-good configuration on disk, for starting while etcd is down.

One JSON file per namespace and app, ``<dir>/<namespace>/config/<app>.json``, holding the
last *valid* value of every config key the process used, rewritten atomically (temporary
file, then ``os.replace``) whenever one changes. The registry keeps its endpoint snapshots
in the same directory (``<dir>/<namespace>/<service>.json``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .view import Raw

__all__ = ["ConfigSnapshot", "ConfigSnapshotFile"]

_log = logging.getLogger("dubbok.config")

_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """Values read back from a snapshot file (absolute key → value and revision)."""

    entries: Mapping[str, Raw]
    saved_at: float
    path: Path

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.saved_at)

    @property
    def revision(self) -> int:
        return max((raw.revision for raw in self.entries.values()), default=0)


class ConfigSnapshotFile:
    """Reads and writes one app's config snapshot. Called from the config center's thread;
    neither method raises (a failed write is logged, an unreadable file is ignored)."""

    def __init__(self, directory: Path | str, namespace: str, app: str) -> None:
        self.path = Path(directory) / namespace / "config" / f"{app}.json"
        self.namespace = namespace
        self.app = app

    def save(self, entries: Mapping[str, Raw]) -> None:
        document = {
            "format": _FORMAT,
            "namespace": self.namespace,
            "app": self.app,
            "saved_at": time.time(),
            "entries": {
                key: {"revision": raw.revision, "value": raw.value.decode("utf-8", "replace")}
                for key, raw in sorted(entries.items())
            },
        }
        tmp_name = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=1, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, self.path)
        except OSError as exc:
            _log.warning(
                "cannot write the config snapshot %s: %s; a start with etcd down will use the "
                "code defaults. Check the snapshot directory's permissions and free space",
                self.path,
                exc,
            )
            if tmp_name:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def load(self) -> ConfigSnapshot | None:
        """The saved values, or ``None`` when there is no readable snapshot."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            _log.warning("ignoring the unreadable config snapshot %s: %s", self.path, exc)
            return None
        if (
            not isinstance(document, dict)
            or document.get("format") != _FORMAT
            or not isinstance(document.get("entries"), dict)
            or not isinstance(document.get("saved_at"), (int, float))
        ):
            _log.warning(
                "ignoring the config snapshot %s: not a format-%d file", self.path, _FORMAT
            )
            return None
        entries = {}
        for key, item in document["entries"].items():
            if (
                isinstance(key, str)
                and isinstance(item, dict)
                and isinstance(item.get("value"), str)
                and isinstance(item.get("revision"), int)
            ):
                entries[key] = Raw(item["value"].encode("utf-8"), item["revision"])
        return ConfigSnapshot(entries, float(document["saved_at"]), self.path)
