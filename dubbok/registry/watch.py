"""One service's providers, kept in step with etcd by one thread.

A :class:`ServiceWatch` lists ``services/<service>/providers/``, watches from the listing's
revision + 1, and hands the complete endpoint set to its listeners each time it changes.
Every discovery subscription to the service in this process shares it.

Failure handling, in the order it happens::

    watch stream breaks / revision compacted / refresh hint
        → re-list (backoff 0.2 s … 2 s while etcd is down), deliver the difference, re-watch
    etcd unreachable
        → the last set stays delivered; nothing is delivered because of an error
    an update would remove every endpoint (and protection is on)
        → the old set stays, with a warning, for at most ``protection`` seconds; when
          providers reappear, they get 0.25 s to gather before the new set is delivered
    a record that cannot be decoded
        → skipped with a warning naming the key; an older good record for it stays

Events arriving within a few milliseconds of each other are applied together and cause one
listener call.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .._gauges import watch_gone, watch_health
from ..discovery import Listener
from ..endpoint import Endpoint
from ..errors import RegistryError
from ._client import EtcdClient, WatchHandle
from ._kv import EtcdError, KeyValue, WatchBatch
from .record import RecordError, decode_provider, providers_prefix
from .snapshot import SnapshotStore

__all__ = ["ServiceWatch"]

_log = logging.getLogger(__name__)

_MIN_BACKOFF = 0.2
_MAX_BACKOFF = 2.0
_MAX_COALESCE = 0.05  # never delay a delivery by more than this to gather a burst
_REFRESH_INTERVAL = 1.0  # at most one re-list per second on refresh hints
_SETTLE = 0.25  # how long providers coming back after an empty hold may take to gather


@dataclass(frozen=True, slots=True)
class _FromWatch:
    generation: int
    item: WatchBatch | EtcdError


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_STOP = _Signal("stop")
_REFRESH = _Signal("refresh")

_Item = _FromWatch | _Signal


class ServiceWatch:
    """Endpoints of one service in one namespace, shared by every subscriber.

    :meth:`start` runs on the subscribing thread; everything after runs on the thread
    ``dubbok-etcd-watch-<service>``, which also calls the listeners. Listeners must be
    quick; one that raises is logged and the others still get the set.
    """

    def __init__(
        self,
        client: EtcdClient,
        namespace: str,
        service: str,
        *,
        store: SnapshotStore | None,
        protection: float | None,
        coalesce: float = 0.003,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.prefix = providers_prefix(namespace, service)
        self.gauge_name = f"registry:{namespace}/{service}"  # its dubbok.watch.healthy series
        self._client = client
        self._store = store
        self._protection = protection
        self._coalesce = coalesce
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._rng = random.Random()

        # Owned by the worker thread (and by start() before the thread exists).
        self._records: dict[str, Endpoint] = {}
        self._warned: dict[str, int] = {}  # key → mod revision already reported corrupt
        self._watch: WatchHandle | None = None
        self._generation = 0
        self._needs_resync = False
        self._next_retry = 0.0
        self._failures = 0
        self._lost_at: float | None = None
        self._hold_started: float | None = None  # time.monotonic() when a hold began
        self._settle_until: float | None = None  # a hold ends no earlier than this
        self._listed = False  # etcd has been listed at least once
        self._listed_since_save = False  # refresh the snapshot's age after a re-list

        # Shared with subscribers: the delivered set and who gets it.
        self._deliver_lock = threading.Lock()
        self._delivered: tuple[Endpoint, ...] | None = None
        self._listeners: tuple[Listener, ...] = ()
        self._last_refresh = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- subscriber side ----------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The set listeners last received (empty before the first)."""
        return self._delivered or ()

    @property
    def held_for(self) -> float | None:
        """Seconds an empty update has been held back, or ``None`` when nothing is held."""
        started = self._hold_started
        return None if started is None else time.monotonic() - started

    def start(self) -> None:
        """List the providers and start watching; fall back to the snapshot file.

        Raises :class:`RegistryError` when etcd cannot be reached and no snapshot exists.
        """
        try:
            self._resync()
        except EtcdError as exc:
            if not self._listed:
                self._start_from_snapshot(exc)
            self._watch_lost(exc)
        self._publish()
        self._thread = threading.Thread(
            target=self._run, name=f"dubbok-etcd-watch-{self.service}", daemon=True
        )
        self._thread.start()

    def _start_from_snapshot(self, exc: EtcdError) -> None:
        snapshot = self._store.load(self.namespace, self.service) if self._store else None
        if snapshot is None:
            where = (
                f"no snapshot at {self._store.path(self.namespace, self.service)}"
                if self._store
                else "no snapshot_dir is configured"
            )
            raise RegistryError(
                f"cannot discover {self.service} in namespace {self.namespace!r}: "
                f"{exc.message}. There is no last-known-good set to start from ({where}). "
                "Check etcd's health and the URL; set snapshot_dir so that consumers can "
                "start from the last known providers while etcd is down"
            ) from exc
        _log.warning(
            "etcd is unreachable (%s); starting %s from the snapshot %s, saved %.0fs ago "
            "with %d endpoints. Watching etcd in the background",
            exc.message,
            self.service,
            snapshot.path,
            snapshot.age,
            len(snapshot.endpoints),
        )
        self._records = {f"{self.prefix}{ep.address}": ep for ep in snapshot.endpoints}
        self._set_delivered(snapshot.endpoints, save=False)

    def add_listener(self, listener: Listener) -> None:
        """Add ``listener``; it gets every set delivered from now on."""
        with self._deliver_lock:
            self._listeners = (*self._listeners, listener)

    def replay(self, listener: Listener) -> None:
        """Give ``listener`` the current set now, on the calling thread (if it is known)."""
        with self._deliver_lock:
            current = self._delivered
            if current is not None and listener in self._listeners:
                _call(listener, current, self.service)

    def remove_listener(self, listener: Listener) -> int:
        """Remove ``listener``; the number still listening."""
        with self._deliver_lock:
            listeners = list(self._listeners)
            if listener in listeners:
                listeners.remove(listener)
            self._listeners = tuple(listeners)
            return len(listeners)

    def refresh(self) -> None:
        """Ask for a re-list soon (at most once a second). Never blocks, never raises."""
        now = time.monotonic()
        if now - self._last_refresh >= _REFRESH_INTERVAL:
            self._last_refresh = now
            self._queue.put(_REFRESH)

    def close(self) -> None:
        """Stop the thread and the watch. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        watch_gone(self.gauge_name, self)

    # -- worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                items = self._collect(self._wait_time())
                if any(item is _STOP for item in items):
                    return
                for item in items:
                    self._apply(item)
                if self._needs_resync and time.monotonic() >= self._next_retry:
                    self._try_resync()
                self._publish()
            except Exception:  # the watcher must survive anything; log and carry on
                _log.exception("watch of %s failed unexpectedly; re-listing", self.service)
                self._watch_lost(None)
                self._next_retry = time.monotonic() + _MAX_BACKOFF

    def _wait_time(self) -> float | None:
        waits: list[float] = []
        now = time.monotonic()
        if self._needs_resync:
            waits.append(max(0.0, self._next_retry - now))
        if self._hold_started is not None and self._protection is not None:
            waits.append(max(0.0, self._hold_started + self._protection - now))
        if self._settle_until is not None:
            waits.append(max(0.0, self._settle_until - now))
        return min(waits) if waits else None

    def _collect(self, timeout: float | None) -> list[_Item]:
        """Block for one item (or ``timeout``), then gather whatever follows closely."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + _MAX_COALESCE
        while first is not _STOP:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items.append(self._queue.get(timeout=min(self._coalesce, remaining)))
            except queue.Empty:
                break
        return items

    def _apply(self, item: _Item) -> None:
        if item is _REFRESH:
            if not self._needs_resync:
                self._needs_resync = True
                self._next_retry = 0.0
            return
        if not isinstance(item, _FromWatch) or item.generation != self._generation:
            return  # left over from a watch already replaced
        if isinstance(item.item, EtcdError):
            self._watch_lost(item.item)
            return
        for event in item.item.events:
            if event.value is None:
                self._records.pop(event.key, None)
                self._warned.pop(event.key, None)
            else:
                self._put(KeyValue(event.key, event.value, event.mod_revision, 0))

    def _put(self, kv: KeyValue) -> None:
        try:
            self._records[kv.key] = decode_provider(kv.key, kv.value)
        except RecordError as exc:
            if self._warned.get(kv.key) != kv.mod_revision:
                self._warned[kv.key] = kv.mod_revision
                _log.warning("%s", exc.message)

    def _watch_lost(self, error: EtcdError | None) -> None:
        watch, self._watch = self._watch, None
        self._generation += 1
        if not self._closed:
            watch_health(self.gauge_name, self, False)
        if watch is not None:
            watch.cancel()
        if not self._needs_resync:
            self._needs_resync = True
            self._next_retry = 0.0
            self._lost_at = time.monotonic()
            _log.info(
                "watch on %s ended (%s); re-listing",
                self.service,
                error.message if error else "restart",
            )

    def _try_resync(self) -> None:
        try:
            self._resync()
        except EtcdError as exc:
            self._failures += 1
            delay = min(_MAX_BACKOFF, _MIN_BACKOFF * 2 ** (self._failures - 1))
            self._next_retry = time.monotonic() + delay * self._rng.uniform(0.8, 1.2)
            log = _log.warning if self._failures == 1 else _log.debug
            log(
                "cannot re-list %s: %s. Keeping the last %d endpoints; retrying",
                self.service,
                exc.message,
                len(self.endpoints),
            )
            return
        if self._lost_at is not None:
            _log.info(
                "watch on %s re-established after %.1fs (%d endpoints in etcd)",
                self.service,
                time.monotonic() - self._lost_at,
                len(self._records),
            )
        self._failures = 0
        self._lost_at = None

    def _resync(self) -> None:
        """List the prefix, replace the records, and watch from the next revision."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        self._generation += 1
        kvs, revision = self._client.get_prefix(self.prefix)
        previous, self._records = self._records, {}
        self._warned = {kv.key: rev for kv in kvs if (rev := self._warned.get(kv.key))}
        for kv in kvs:
            if kv.key in previous:
                self._records[kv.key] = previous[kv.key]  # kept if the new value is corrupt
            self._put(kv)
        self._listed = True
        self._listed_since_save = True
        self._needs_resync = True
        generation = self._generation
        self._watch = self._client.watch_prefix(
            self.prefix,
            lambda item: self._queue.put(_FromWatch(generation, item)),
            start_revision=revision + 1,
            name=f"dubbok-etcd-stream-{self.service}",
        )
        self._needs_resync = False
        if not self._closed:
            watch_health(self.gauge_name, self, True)

    def _publish(self) -> None:
        """Deliver the records if they differ from what listeners have, within the rules."""
        current = tuple(ep for _, ep in sorted(self._records.items()))
        delivered = self._delivered
        if not current and delivered and self._protection is not None:
            now = time.monotonic()
            if self._hold_started is None:
                self._hold_started = now
                _log.warning(
                    "etcd lists no provider of %s any more; keeping the last %d endpoints for "
                    "up to %.0fs (empty-push protection; set empty_protection=off to disable)",
                    self.service,
                    len(delivered),
                    self._protection,
                )
            self._settle_until = None
            if now - self._hold_started < self._protection:
                return
            _log.warning(
                "no provider of %s for %.0fs; delivering the empty set",
                self.service,
                now - self._hold_started,
            )
            self._hold_started = None
        elif self._hold_started is not None:
            # Providers are coming back (say, re-registering after etcd lost its data, a
            # transaction of 100 at a time): let them settle briefly so that listeners get
            # one fuller set instead of every batch.
            now = time.monotonic()
            if self._settle_until is None:
                self._settle_until = now + _SETTLE
            if now < self._settle_until:
                return
            _log.info(
                "providers of %s are back (%d); empty-push hold lifted", self.service, len(current)
            )
            self._hold_started = None
            self._settle_until = None
        if current != delivered:
            self._set_delivered(current, save=True)
        elif self._listed_since_save:
            self._save(current)

    def _set_delivered(self, endpoints: Sequence[Endpoint], *, save: bool) -> None:
        current = tuple(endpoints)
        with self._deliver_lock:
            self._delivered = current
            for listener in self._listeners:
                _call(listener, current, self.service)
        if save:
            self._save(current)

    def _save(self, endpoints: tuple[Endpoint, ...]) -> None:
        self._listed_since_save = False
        if self._store is not None:
            self._store.save(self.namespace, self.service, endpoints)


def _call(listener: Listener, endpoints: tuple[Endpoint, ...], service: str) -> None:
    try:
        listener(endpoints)
    except Exception:  # a listener's bug must not stop the others or the watcher
        _log.exception("a listener of %s raised; carrying on", service)
