"""Last-known-good endpoint sets on disk, for starting while etcd is down.

One JSON file per namespace and service, ``<dir>/<namespace>/<service>.json``, rewritten
atomically (temporary file, then ``os.replace``) each time the set changes, so a crash never
leaves half a file. Records inside use the registry's provider format
(:mod:`dubbok.registry.record`), so a snapshot reads like a listing of etcd.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..endpoint import Endpoint
from .record import RecordError, decode_provider, encode_provider, validate_name

__all__ = ["Snapshot", "SnapshotStore"]

_log = logging.getLogger(__name__)

_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A set of endpoints read back from disk, and when it was saved (UNIX time)."""

    endpoints: tuple[Endpoint, ...]
    saved_at: float
    path: Path

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.saved_at)


class SnapshotStore:
    """Reads and writes snapshot files under one directory.

    Called from a discovery's watch threads (``save``) and from ``subscribe`` (``load``).
    Neither raises: a failed write is logged, an unreadable file is reported and ignored.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, namespace: str, service: str) -> Path:
        return (
            self.directory
            / validate_name("namespace", namespace)
            / f"{validate_name('service name', service)}.json"
        )

    def save(self, namespace: str, service: str, endpoints: Sequence[Endpoint]) -> None:
        path = self.path(namespace, service)
        document = {
            "format": _FORMAT,
            "namespace": namespace,
            "service": service,
            "saved_at": time.time(),
            "providers": {
                ep.address: json.loads(encode_provider(ep, pid=0, started_at=ep.started_at))
                for ep in endpoints
            },
        }
        tmp_name = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, path)
        except OSError as exc:
            _log.warning(
                "cannot write the endpoint snapshot of %s to %s: %s; the next start with etcd "
                "down will have no fallback. Check the snapshot_dir permissions and free space",
                service,
                path,
                exc,
            )
            if tmp_name:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def load(self, namespace: str, service: str) -> Snapshot | None:
        """The saved set, or ``None`` when there is none or it cannot be read."""
        path = self.path(namespace, service)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            _log.warning("ignoring the unreadable endpoint snapshot %s: %s", path, exc)
            return None
        if (
            not isinstance(document, dict)
            or document.get("format") != _FORMAT
            or not isinstance(document.get("providers"), dict)
            or not isinstance(document.get("saved_at"), (int, float))
        ):
            _log.warning("ignoring the endpoint snapshot %s: not a format-%d file", path, _FORMAT)
            return None
        endpoints = []
        for address, record in document["providers"].items():
            try:
                endpoints.append(
                    decode_provider(f"{path}/{address}", json.dumps(record).encode("utf-8"))
                )
            except RecordError as exc:
                _log.warning("%s", exc.message)
        return Snapshot(tuple(endpoints), float(document["saved_at"]), path)
