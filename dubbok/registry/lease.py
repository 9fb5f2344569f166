"""The process lease: one lease per process, every registration on it, kept alive.

:class:`LeaseKeeper` grants the lease on the first write, refreshes it every TTL/3 from one
daemon thread, and when the lease is lost — etcd wiped, or this process cut off for longer
than the TTL — grants a new one and writes every key again, in transactions of 100. A plain
etcd restart keeps leases (the new leader extends them), so nothing is rewritten then.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from ._client import EtcdClient
from ._kv import EtcdError, LeaseNotFoundError

__all__ = ["LeaseKeeper"]

_log = logging.getLogger(__name__)

# While etcd cannot be reached, try at least this often so recovery is quick.
_RETRY_INTERVAL = 1.0


class LeaseKeeper:
    """Owns the process lease and the keys written on it.

    ``put`` and ``delete`` are called from application threads and may block on etcd for
    the client timeout, raising :class:`EtcdError`. The keep-alive thread
    (``dubbok-etcd-lease``) never raises: it logs, and retries until :meth:`close`.
    """

    def __init__(self, client: EtcdClient, ttl: float) -> None:
        if not ttl >= 1:
            raise ValueError(f"lease TTL must be at least 1 second, got {ttl}")
        self._client = client
        self.ttl = math.ceil(ttl)
        # Held across etcd calls so a re-grant and a register never interleave; the keep
        # alive itself (refresh) runs outside it.
        self._lock = threading.RLock()
        self._records: dict[str, bytes] = {}
        self._stale: set[str] = set()  # unregistered, but the delete did not reach etcd
        self._rewrite_pending = False  # a re-grant's writes did not all reach etcd
        self._lease_id: int | None = None
        self._granted_ttl = self.ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable_since: float | None = None
        self.regrants = 0
        """How many times the lease was lost and re-granted (for tests and metrics)."""

    @property
    def lease_id(self) -> int | None:
        return self._lease_id

    @property
    def keys(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._records)

    def put(self, key: str, value: bytes) -> None:
        """Write ``key`` on the lease (granting it first if needed) and keep it there."""
        with self._lock:
            if self._stop.is_set():
                raise EtcdError("the registry is closed")
            lease_id = self._ensure_lease()
            try:
                self._client.put(key, value, lease=lease_id)
            except LeaseNotFoundError:
                _log.warning("etcd lease %x is gone; granting a new one", lease_id)
                self._regrant()
                self._client.put(key, value, lease=self._lease_id)
            self._records[key] = value
            self._stale.discard(key)

    def delete(self, key: str) -> None:
        """Delete ``key``; if etcd cannot be reached, keep trying from the keep-alive thread."""
        with self._lock:
            if self._records.pop(key, None) is None:
                return
            try:
                self._client.delete(key)
            except EtcdError:
                self._stale.add(key)
                raise

    def _ensure_lease(self) -> int:
        if self._lease_id is None:
            self._lease_id, granted = self._client.grant_lease(self.ttl)
            self._granted_ttl = max(self.ttl, granted)
            _log.debug("granted etcd lease %x (ttl %ds)", self._lease_id, self._granted_ttl)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dubbok-etcd-lease", daemon=True)
            self._thread.start()
        return self._lease_id

    def _regrant(self) -> None:
        """Grant a new lease and write every key on it. Caller holds the lock."""
        started = time.monotonic()
        self._lease_id = None
        lease_id = self._ensure_lease()
        self.regrants += 1
        self._rewrite_pending = True
        items = sorted(self._records.items())
        self._client.put_many(items, lease=lease_id)
        self._rewrite_pending = False
        _log.warning(
            "etcd lease was lost; granted %x and re-registered %d keys in %.0f ms",
            lease_id,
            len(items),
            (time.monotonic() - started) * 1000,
        )

    def _run(self) -> None:
        interval = self._granted_ttl / 3
        wait = interval
        while not self._stop.wait(wait):
            try:
                self._tick()
                wait = interval
                if self._unreachable_since is not None:
                    _log.info(
                        "etcd at %s is reachable again after %.1fs",
                        self._client.endpoints,
                        time.monotonic() - self._unreachable_since,
                    )
                    self._unreachable_since = None
            except EtcdError as exc:
                wait = min(interval, _RETRY_INTERVAL)
                if self._unreachable_since is None:
                    self._unreachable_since = time.monotonic()
                    _log.warning(
                        "cannot keep the etcd lease alive: %s. Providers keep serving; "
                        "registrations are restored when etcd answers again",
                        exc.message,
                    )
            except Exception:  # never let the keep-alive thread die
                _log.exception("etcd lease keep-alive failed unexpectedly")
                wait = interval

    def _tick(self) -> None:
        lease_id = self._lease_id
        if lease_id is None:
            return
        try:
            remaining = self._client.refresh_lease(lease_id)
        except LeaseNotFoundError:
            remaining = 0
        with self._lock:
            if self._stop.is_set() or self._lease_id != lease_id:
                return
            if remaining <= 0:
                self._regrant()
            elif self._rewrite_pending:
                self._client.put_many(sorted(self._records.items()), lease=lease_id)
                self._rewrite_pending = False
            if self._stale:
                stale = sorted(self._stale)
                self._client.delete_many(stale)
                self._stale.difference_update(stale)

    def close(self) -> None:
        """Stop the keep-alive and revoke the lease, which deletes every key on it.

        Never raises: if etcd cannot be reached the keys expire with the lease after its TTL.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        with self._lock:
            lease_id, self._lease_id = self._lease_id, None
            self._records.clear()
        if lease_id is None:
            return
        try:
            self._client.revoke_lease(lease_id)
        except EtcdError as exc:
            _log.warning(
                "could not revoke etcd lease %x (%s); its keys expire within %ds",
                lease_id,
                exc.message,
                self._granted_ttl,
            )
