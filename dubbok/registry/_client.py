"""The one module that talks to etcd: a thin, typed wrapper over ``python3-etcd3``.

Everything else in dubbok sees :class:`EtcdClient`, plain dataclasses and
:class:`EtcdError`; swapping the client library touches this file only.

Behaviour of python3-etcd3 0.13.0 that this module works around (checked on etcd 3.5):

* ``Endpoint.time_retry`` defaults to 300 s: after one UNAVAILABLE the client refuses every
  call for five minutes, even once etcd is back. We build endpoints with a short retry.
* Its watcher thread dies with ``NameError: six`` when the stream breaks, so callbacks never
  hear about it and later events never arrive. Watches here run on their own gRPC stream
  and report every break to their callback.
* Creating a watch at a compacted revision leaves ``add_watch_callback`` waiting forever
  when no timeout is set. etcd confirms such a watch, then cancels it with the compaction
  revision; here the callback receives :class:`RevisionCompactedError`.
* Refreshing an expired lease is not an error: it returns TTL 0; a put with that lease
  then fails with NOT_FOUND. :meth:`EtcdClient.refresh_lease` returns the TTL and puts
  raise :class:`LeaseNotFoundError`.
* Half-closing a watch stream does not end it: cancel the call.
* A transaction holds at most 128 operations (``--max-txn-ops``); we send batches of 100.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import etcd3
import grpc
from etcd3 import etcdrpc
from etcd3 import exceptions as etcd_exceptions
from etcd3 import utils as etcd_utils
from etcd3.etcdrpc import kv_pb2

from ..endpoint import split_address
from ..errors import ConfigurationError
from ._kv import (
    TXN_BATCH,
    ConnectionSettings,
    EtcdError,
    KeyValue,
    LeaseNotFoundError,
    RevisionCompactedError,
    WatchBatch,
    WatchCallback,
    WatchEvent,
)

__all__ = [
    "TXN_BATCH",
    "ConnectionSettings",
    "EtcdClient",
    "EtcdError",
    "KeyValue",
    "LeaseNotFoundError",
    "RevisionCompactedError",
    "WatchBatch",
    "WatchCallback",
    "WatchEvent",
    "WatchHandle",
    "compare_and_swap",
    "get_one",
    "list_keys",
]

_log = logging.getLogger(__name__)

# Reconnect quickly after an etcd restart; gRPC's default backoff grows to 120 s.
# Keepalive pings (only while a watch stream is open: etcd refuses pings without a stream
# more often than every 5 s) detect a half-open connection within ~15 s.
_CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]

# How long a failed endpoint is skipped before it is tried again. With one endpoint there
# is nothing else to try, so only long enough not to spin.
_ENDPOINT_RETRY = 2.0
_MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
_SOLE_ENDPOINT_RETRY = 0.2


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read etcd TLS {what} file {path!r}: {exc.strerror}; "
            "check the 'ca' / 'cert' / 'key' params of the etcd URL"
        ) from None


class EtcdClient:
    """A connection to an etcd cluster, shared by the threads of one registry or discovery.

    Every method may block up to ``settings.timeout`` and raises :class:`EtcdError` (or a
    subclass) for anything etcd-related; callers never see grpc or etcd3 exceptions. With
    several endpoints a failed one is skipped and the next call goes to another.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._inner: Any = None
        self._keepalive = _KeepAliveStream()
        self._closed = False
        self._credentials: grpc.ChannelCredentials | None = None
        if settings.secure:
            ca = _read_file(settings.ca, "CA") if settings.ca else None
            cert = _read_file(settings.cert, "certificate") if settings.cert else None
            key = _read_file(settings.key, "key") if settings.key else None
            self._credentials = grpc.ssl_channel_credentials(ca, key, cert)
        for address in settings.endpoints:
            split_address(address)

    @property
    def endpoints(self) -> str:
        """The configured endpoints as one string, for messages."""
        return ",".join(self.settings.endpoints)

    # -- connection -------------------------------------------------------------------

    def _connect(self) -> Any:
        with self._lock:
            if self._closed:
                raise EtcdError("the etcd client is closed")
            if self._inner is not None:
                return self._inner
            eps = []
            retry = _ENDPOINT_RETRY if len(self.settings.endpoints) > 1 else _SOLE_ENDPOINT_RETRY
            for address in self.settings.endpoints:
                host, port = split_address(address)
                eps.append(
                    etcd3.Endpoint(
                        host,
                        port,
                        secure=self.settings.secure,
                        creds=self._credentials,
                        time_retry=retry,
                        opts=_CHANNEL_OPTIONS,
                    )
                )
            try:
                # Authenticates here when a user is set: may fail if etcd is unreachable.
                inner = etcd3.MultiEndpointEtcd3Client(
                    endpoints=eps,
                    timeout=self.settings.timeout,
                    user=self.settings.username,
                    password=self.settings.password,
                    failover=True,
                )
            except BaseException:
                for ep in eps:
                    ep.close()
                raise
            if not self.settings.secure:
                # grpc refuses call credentials on a plaintext channel; the token also
                # travels as metadata, which is how etcd reads it anyway.
                inner.call_credentials = None
            self._inner = inner
            return inner

    def _reset(self, inner: Any) -> None:
        """Drop a client whose auth token expired; the next call authenticates again."""
        with self._lock:
            if self._inner is inner:
                _log.info("etcd at %s rejected the auth token; logging in again", self.endpoints)
                self._inner = None
                inner.close()

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)``, retrying connection failures until the timeout has passed.

        Right after etcd restarts, the channel may still be waiting to reconnect and fails
        fast; retrying for up to one timeout turns that into a short wait. An expired auth
        token is renewed once.
        """
        deadline = time.monotonic() + self.settings.timeout
        delay = 0.05
        renewed = False
        cause: BaseException | None = None  # the most telling failure so far
        while True:
            inner: Any = None
            try:
                inner = self._connect()
                return fn(inner)
            except Exception as exc:
                if not renewed and inner is not None and _is_auth_expiry(exc):
                    renewed = True
                    self._reset(inner)
                    continue
                if cause is None or not isinstance(exc, etcd_exceptions.NoServerAvailableError):
                    cause = exc
                remaining = deadline - time.monotonic()
                if not _is_unavailable(exc) or remaining <= 0:
                    raise self._translate(what, cause) from cause
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    def _translate(self, what: str, exc: BaseException) -> EtcdError:
        if isinstance(exc, EtcdError):
            return exc
        if isinstance(exc, etcd_exceptions.Etcd3Exception) and isinstance(
            exc.__context__, grpc.RpcError
        ):
            exc = exc.__context__  # etcd3 drops the details; the grpc error has them
        if isinstance(exc, grpc.RpcError):
            code: grpc.StatusCode | None = exc.code()
            details = str(exc.details() or "")
            if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
                return LeaseNotFoundError(f"{what}: etcd says: {details}")
            reason = f"{code.name if code else 'error'}: {details}"
        elif isinstance(exc, etcd_exceptions.NoServerAvailableError):
            reason = "no endpoint reachable (all failed recently)"
        elif isinstance(exc, etcd_exceptions.ConnectionFailedError):
            reason = "connection failed"
        elif isinstance(exc, etcd_exceptions.ConnectionTimeoutError):
            reason = f"no answer within {self.settings.timeout:g}s"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return EtcdError(
            f"{what} failed on etcd at {self.endpoints}: {reason}. Check that etcd is running "
            "and reachable from this host, and the URL's host:port, TLS and auth settings"
        )

    def close(self) -> None:
        """Close every channel. Idempotent; never raises."""
        self._keepalive.reset()
        with self._lock:
            self._closed = True
            inner, self._inner = self._inner, None
        if inner is not None:
            try:
                inner.close()
            except Exception:  # closing must not fail a shutdown
                _log.debug("closing the etcd client failed", exc_info=True)

    # -- key-value ----------------------------------------------------------------------

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` (sorted) and the store revision they were read at."""

        def run(c: Any) -> tuple[list[KeyValue], int]:
            rs = c.get_prefix_response(prefix, sort_order="ascend", sort_target="key")
            kvs = [
                KeyValue(
                    key=kv.key.decode("utf-8", "replace"),
                    value=bytes(kv.value),
                    mod_revision=int(kv.mod_revision),
                    lease=int(kv.lease),
                )
                for kv in rs.kvs
            ]
            return kvs, int(rs.header.revision)

        result: tuple[list[KeyValue], int] = self._call(f"listing {prefix!r}", run)
        return result

    def revision(self) -> int:
        """The current store revision."""

        def run(c: Any) -> int:
            return int(c.get_response("/", count_only=True).header.revision)

        result: int = self._call("reading the revision", run)
        return result

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> None:
        self._call(f"writing {key!r}", lambda c: c.put(key, value, lease=lease))

    def delete(self, key: str) -> bool:
        """Delete one key; ``True`` when it existed."""
        return bool(self._call(f"deleting {key!r}", lambda c: c.delete(key)))

    def put_many(self, items: Sequence[tuple[str, bytes]], *, lease: int | None = None) -> None:
        """Write many keys in transactions of :data:`TXN_BATCH` puts (about 30x faster
        than single puts for a thousand keys). Batches before a failed one stay written."""
        for start in range(0, len(items), TXN_BATCH):
            chunk = items[start : start + TXN_BATCH]

            def run(c: Any, chunk: Sequence[tuple[str, bytes]] = chunk) -> None:
                ops = [c.transactions.put(k, v, lease=lease) for k, v in chunk]
                c.transaction(compare=[], success=ops, failure=[])

            self._call(f"writing {len(chunk)} keys", run)

    def delete_many(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), TXN_BATCH):
            chunk = keys[start : start + TXN_BATCH]

            def run(c: Any, chunk: Sequence[str] = chunk) -> None:
                ops = [c.transactions.delete(k) for k in chunk]
                c.transaction(compare=[], success=ops, failure=[])

            self._call(f"deleting {len(chunk)} keys", run)

    def compact(self, revision: int) -> None:
        """Drop history older than ``revision`` (tests use it to force compaction)."""
        self._call(f"compacting at {revision}", lambda c: c.compact(revision, physical=True))

    # -- leases -------------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> tuple[int, int]:
        """A new lease: ``(lease id, granted TTL)``. etcd raises small TTLs to its minimum."""

        def run(c: Any) -> tuple[int, int]:
            lease = c.lease(ttl)
            return int(lease.id), int(lease.ttl)

        result: tuple[int, int] = self._call(f"granting a {ttl}s lease", run)
        return result

    def refresh_lease(self, lease_id: int) -> int:
        """Keep a lease alive once; the TTL it now has, 0 when the lease is gone.

        Every refresh of this client goes over one long-lived ``LeaseKeepAlive`` stream
        (re-opened when it breaks), not a new RPC each time.
        """
        what = f"refreshing lease {lease_id:x}"
        for attempt in range(2):
            inner = self._connect_or_raise(what)
            try:
                return self._keepalive.refresh(inner, lease_id, self.settings.timeout)
            except Exception as exc:
                self._keepalive.reset()
                if attempt == 0 and _is_auth_expiry(exc):
                    self._reset(inner)
                    continue
                if attempt == 0 and (isinstance(exc, EOFError) or _is_unavailable(exc)):
                    continue  # a stream broken by an etcd restart: open a new one once
                raise self._translate(what, exc) from exc
        raise AssertionError("unreachable")

    def revoke_lease(self, lease_id: int) -> None:
        """Revoke a lease, deleting every key on it. A lease already gone is not an error."""
        with contextlib.suppress(LeaseNotFoundError):
            self._call(f"revoking lease {lease_id:x}", lambda c: c.revoke_lease(lease_id))

    # -- watches ------------------------------------------------------------------------

    def watch_prefix(
        self, prefix: str, callback: WatchCallback, *, start_revision: int, name: str
    ) -> WatchHandle:
        """Watch every key under ``prefix`` from ``start_revision`` on.

        Returns once etcd has created the watch (bounded by the client timeout), or raises
        :class:`EtcdError`. Events, then the error that ends the watch, go to ``callback``
        on a daemon thread called ``name``; a compacted ``start_revision`` ends it at once
        with :class:`RevisionCompactedError`.
        """
        inner = self._connect_or_raise(f"watching {prefix!r}")
        try:
            channel = inner.channel
        except Exception as exc:
            raise self._translate(f"watching {prefix!r}", exc) from exc
        stub = etcdrpc.WatchStub(channel)
        handle = WatchHandle(self, prefix, callback, start_revision, name)
        handle._start(stub, inner.call_credentials, inner.metadata)
        return handle

    def _connect_or_raise(self, what: str) -> Any:
        try:
            return self._connect()
        except Exception as exc:
            raise self._translate(what, exc) from exc


def get_one(client: EtcdClient, key: str) -> tuple[KeyValue | None, int]:
    """One key (``None`` when absent) and the store revision it was read at."""

    def run(c: Any) -> tuple[KeyValue | None, int]:
        rs = c.get_response(key)
        revision = int(rs.header.revision)
        if not rs.kvs:
            return None, revision
        kv = rs.kvs[0]
        return KeyValue(key, bytes(kv.value), int(kv.mod_revision), int(kv.lease)), revision

    result: tuple[KeyValue | None, int] = client._call(f"reading {key!r}", run)
    return result


def list_keys(client: EtcdClient, prefix: str) -> tuple[list[tuple[str, int]], int]:
    """Every key under ``prefix`` with its mod revision, sorted, without values; and the
    store revision they were read at."""

    def run(c: Any) -> tuple[list[tuple[str, int]], int]:
        rs = c.get_prefix_response(prefix, keys_only=True, sort_order="ascend", sort_target="key")
        keys = [(kv.key.decode("utf-8", "replace"), int(kv.mod_revision)) for kv in rs.kvs]
        return keys, int(rs.header.revision)

    result: tuple[list[tuple[str, int]], int] = client._call(f"listing {prefix!r}", run)
    return result


def compare_and_swap(
    client: EtcdClient,
    key: str,
    expect_mod_revision: int,
    puts: Sequence[tuple[str, bytes]],
    deletes: Sequence[str] = (),
) -> tuple[bool, int, KeyValue | None]:
    """Apply ``puts`` and ``deletes`` in one transaction if ``key`` was last modified at
    ``expect_mod_revision`` (0: ``key`` must not exist).

    Returns ``(applied, revision, current)``: on success the revision the write created and
    ``None``; otherwise ``False``, the store revision (0 if unknown) and ``key`` as it is
    now (``None`` if absent).
    """
    if len(puts) + len(deletes) > _MAX_TXN_OPS:
        raise ConfigurationError(
            f"a compare-and-swap on {key!r} holds {len(puts) + len(deletes)} operations; "
            f"etcd accepts at most {_MAX_TXN_OPS} in one transaction"
        )

    def run(c: Any) -> tuple[bool, int, KeyValue | None]:
        t = c.transactions
        ops = [t.put(k, v) for k, v in puts] + [t.delete(k) for k in deletes]
        applied, responses = c.transaction(
            compare=[t.mod(key) == expect_mod_revision], success=ops, failure=[t.get(key)]
        )
        if applied:
            revision = 0
            for response in responses:
                kind = response.WhichOneof("response")
                revision = int(getattr(response, kind).header.revision)
            return True, revision, None
        found = responses[0] if responses else []
        if not found:
            return False, 0, None
        value, meta = found[0]
        current = KeyValue(key, bytes(value), int(meta.mod_revision), int(meta.lease_id))
        return False, int(meta.response_header.revision), current

    result: tuple[bool, int, KeyValue | None] = client._call(f"writing {key!r}", run)
    return result


def _is_unavailable(exc: BaseException) -> bool:
    """A failure to reach etcd at all, where trying again soon may succeed."""
    if isinstance(
        exc, (etcd_exceptions.ConnectionFailedError, etcd_exceptions.NoServerAvailableError)
    ):
        return True
    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE


def _is_auth_expiry(exc: BaseException) -> bool:
    if not isinstance(exc, grpc.RpcError):
        return False
    code = exc.code()
    details = str(exc.details() or "")
    return bool(code == grpc.StatusCode.UNAUTHENTICATED or "invalid auth token" in details)


class WatchHandle:
    """One watch on its own gRPC stream and thread. :meth:`cancel` ends it.

    Created by :meth:`EtcdClient.watch_prefix`; the callback runs on this watch's thread.
    """

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        callback: WatchCallback,
        start_revision: int,
        name: str,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._callback = callback
        self._start_revision = start_revision
        self._name = name
        self._cancelled = threading.Event()
        self._stream_done = threading.Event()
        self._created = threading.Event()
        self._create_error: EtcdError | None = None
        self._call: Any = None
        self._thread: threading.Thread | None = None

    def _requests(self) -> Iterator[Any]:
        create = etcdrpc.WatchCreateRequest(
            key=prefix_bytes(self.prefix),
            range_end=etcd_utils.prefix_range_end(prefix_bytes(self.prefix)),
            start_revision=self._start_revision,
        )
        yield etcdrpc.WatchRequest(create_request=create)
        # Keep the request side open until the stream ends: half-closing does not end a
        # watch, cancelling the call does.
        self._stream_done.wait()

    def _start(self, stub: Any, credentials: Any, metadata: Any) -> None:
        what = f"watching {self.prefix!r}"
        try:
            self._call = stub.Watch(self._requests(), credentials=credentials, metadata=metadata)
        except Exception as exc:
            raise self._client._translate(what, exc) from exc
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        timeout = self._client.settings.timeout
        if not self._created.wait(timeout):
            self.cancel()
            raise EtcdError(
                f"{what}: etcd at {self._client.endpoints} did not create the watch within "
                f"{timeout:g}s; check that it is healthy"
            )
        if self._create_error is not None:
            self.cancel()
            raise self._create_error

    def _run(self) -> None:
        error: EtcdError | None = None
        what = f"watch on {self.prefix!r}"
        try:
            for rs in self._call:
                if rs.compact_revision:
                    error = RevisionCompactedError(
                        f"{what}: revision {self._start_revision} is compacted "
                        f"(compacted up to {rs.compact_revision})",
                        int(rs.compact_revision),
                    )
                    break
                if rs.canceled:
                    error = EtcdError(f"{what} cancelled by etcd: {rs.cancel_reason or '?'}")
                    break
                if rs.created and not self._created.is_set():
                    self._created.set()
                if rs.events:
                    batch = WatchBatch(tuple(_event(e) for e in rs.events), int(rs.header.revision))
                    self._deliver(batch)
            else:
                error = EtcdError(f"{what}: etcd closed the stream")
        except grpc.RpcError as exc:
            error = self._client._translate(what, exc)
        except Exception as exc:  # a bug must not kill the thread silently
            _log.exception("%s: unexpected failure", what)
            error = EtcdError(f"{what}: {type(exc).__name__}: {exc}")
        finally:
            self._close_call()
        if self._cancelled.is_set() or error is None:
            self._created.set()
            return
        if not self._created.is_set():
            self._create_error = error
            self._created.set()
            return
        self._deliver(error)

    def _deliver(self, item: WatchBatch | EtcdError) -> None:
        if self._cancelled.is_set():
            return
        try:
            self._callback(item)
        except Exception:  # the callback's owner logs its own errors; this is a backstop
            _log.exception("watch callback for %r failed", self.prefix)

    def _close_call(self) -> None:
        self._stream_done.set()
        call = self._call
        if call is not None:
            with contextlib.suppress(Exception):  # already finished
                call.cancel()

    def cancel(self) -> None:
        """Stop the watch; no callback runs after this returns (except one already
        running). Idempotent; never raises; safe from the watch's own callback."""
        self._cancelled.set()
        self._close_call()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)


def prefix_bytes(prefix: str) -> bytes:
    return prefix.encode("utf-8")


def _event(e: Any) -> WatchEvent:
    key = bytes(e.kv.key).decode("utf-8", "replace")
    if e.type == kv_pb2.Event.DELETE:
        return WatchEvent(key, None, int(e.kv.mod_revision))
    return WatchEvent(key, bytes(e.kv.value), int(e.kv.mod_revision))


class _KeepAliveStream:
    """One ``LeaseKeepAlive`` bidi stream shared by a client's refreshes.

    ``refresh`` sends one request and waits (bounded by the client timeout) for its
    response, which a reader thread takes off the stream. Any failure resets the stream; the
    next refresh opens a new one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inner: Any = None
        self._call: Any = None
        self._requests: queue.SimpleQueue[Any] | None = None
        self._responses: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def _open(self, inner: Any) -> None:
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        responses: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def send() -> Iterator[Any]:
            while True:
                item = requests.get()
                if item is None:
                    return
                yield item

        stub = etcdrpc.LeaseStub(inner.channel)
        call = stub.LeaseKeepAlive(
            send(), credentials=inner.call_credentials, metadata=inner.metadata
        )

        def read() -> None:
            try:
                for response in call:
                    responses.put(response)
                responses.put(EOFError("the keep-alive stream ended"))
            except Exception as exc:  # the stream broke: the waiting refresh hears of it
                responses.put(exc)

        threading.Thread(target=read, name="dubbok-etcd-keepalive", daemon=True).start()
        self._inner, self._call, self._requests, self._responses = (
            inner,
            call,
            requests,
            responses,
        )

    def refresh(self, inner: Any, lease_id: int, timeout: float) -> int:
        with self._lock:
            if self._call is None or self._inner is not inner:
                self.reset_locked()
                self._open(inner)
            assert self._requests is not None
            self._requests.put(etcdrpc.LeaseKeepAliveRequest(ID=lease_id))
            try:
                item = self._responses.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no keep-alive answer within {timeout:g} s") from None
            if isinstance(item, BaseException):
                raise item
            return int(item.TTL)

    def reset_locked(self) -> None:
        call, requests = self._call, self._requests
        self._inner = self._call = self._requests = None
        if requests is not None:
            requests.put(None)
        if call is not None:
            call.cancel()

    def reset(self) -> None:
        with self._lock:
            self.reset_locked()
