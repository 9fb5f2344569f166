"""What the etcd client hands back: connection settings, keys, watch events and errors.

Plain values with no dependency on the client library, so that the rest of the registry
can use them without importing it (:mod:`dubbok.registry._client` is the one module that
does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigurationError, RegistryError

__all__ = [
    "TXN_BATCH",
    "ConnectionSettings",
    "EtcdError",
    "KeyValue",
    "LeaseNotFoundError",
    "RevisionCompactedError",
    "WatchBatch",
    "WatchCallback",
    "WatchEvent",
]

TXN_BATCH = 100
"""Operations per transaction; etcd refuses more than 128 by default."""


class EtcdError(RegistryError):
    """An etcd request failed: unreachable, timed out, refused or cancelled by the server."""


class LeaseNotFoundError(EtcdError):
    """The lease named in a request no longer exists (it expired or etcd was wiped)."""


class RevisionCompactedError(EtcdError):
    """A watch asked for history etcd has compacted away; re-list and watch again."""

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Where and how to connect: every endpoint of the cluster, auth and TLS files."""

    endpoints: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = 3.0

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConfigurationError(
                "an etcd URL needs at least one host:port, e.g. etcd://127.0.0.1:2379/"
            )
        if (self.username is None) != (self.password is None):
            raise ConfigurationError(
                "etcd authentication needs both a user and a password "
                "(etcd://user:password@host:2379/ or params user=...&password=...)"
            )
        if (self.cert is None) != (self.key is None):
            raise ConfigurationError(
                "etcd client TLS needs both 'cert' and 'key' params (and usually 'ca')"
            )
        if self.timeout <= 0:
            raise ConfigurationError(f"etcd timeout must be > 0 seconds, got {self.timeout}")

    @property
    def secure(self) -> bool:
        return self.ca is not None or self.cert is not None

    def __repr__(self) -> str:
        auth = f", user={self.username!r}" if self.username else ""
        tls = ", tls" if self.secure else ""
        return f"ConnectionSettings({','.join(self.endpoints)}{auth}{tls})"


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as read from etcd."""

    key: str
    value: bytes
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A put (``value`` set) or a delete (``value`` is ``None``) seen by a watch."""

    key: str
    value: bytes | None
    mod_revision: int

    @property
    def deleted(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """The events of one watch response, and the store revision it was sent at."""

    events: tuple[WatchEvent, ...]
    revision: int


WatchCallback = Callable[[WatchBatch | EtcdError], None]
"""Receives each batch of events, or once the error that ended the watch.

Called from the watch's own thread. After an error the watch is over: nothing more
arrives, and the owner must re-list and watch again.
"""
