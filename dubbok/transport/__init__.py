"""Transport: one gRPC channel per endpoint, shared by every reference of the process.

grpcio has no resolver or balancer plugin API, so dubbok resolves endpoints itself and keeps
one channel per endpoint address in a :class:`ChannelPool`; a call picks an endpoint and
invokes that channel's cached multicallable directly (no client interceptor on the hot
path). The pool is reference-counted: an endpoint that leaves every directory is drained
(in-flight calls finish, up to ``drain_timeout``) and then closed.

The asyncio twin lives in :mod:`dubbok.aio.transport`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc

from ..stub import MethodInfo, MethodKind
from . import _direct

__all__ = [
    "CHANNEL_CLOSED",
    "DEFAULT_CHANNEL_OPTIONS",
    "ChannelPool",
    "Connection",
    "SyncConnection",
    "attempt_status",
    "call_options",
]

# What grpc raises when a call starts on a channel that was closed: a call that read a route
# just before its endpoint left may meet one. The request never left, so it is retryable.
CHANNEL_CLOSED: tuple[type[BaseException], ...] = (ValueError, grpc.aio.UsageError)

# A released channel is closed no sooner than this: a call that read the previous route a
# moment ago may still be about to start on it.
LINGER_SECONDS = 0.5


def attempt_status(exc: BaseException) -> tuple[grpc.StatusCode, str | None]:
    """The status of a failed attempt (a closed channel counts as never sent)."""
    if isinstance(exc, grpc.RpcError):
        return exc.code(), exc.details()
    if isinstance(exc, (grpc.FutureCancelledError, asyncio.CancelledError)):
        return grpc.StatusCode.CANCELLED, "cancelled"
    return grpc.StatusCode.UNAVAILABLE, f"channel closed: the endpoint left the directory ({exc})"


log = logging.getLogger("dubbok.transport")

_NO_OPTIONS: dict[str, Any] = {}


def call_options(
    credentials: grpc.CallCredentials | None,
    wait_for_ready: bool | None,
    compression: grpc.Compression | None,
) -> dict[str, Any]:
    """The per-call options a driver passes on to each attempt: a shared empty dict when
    none is given (the common case; nothing is built per call)."""
    if credentials is None and wait_for_ready is None and compression is None:
        return _NO_OPTIONS
    return {
        "credentials": credentials,
        "wait_for_ready": wait_for_ready,
        "compression": compression,
    }


# dubbok's cluster strategies own retries; grpc's own retry layer would multiply them.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_retries", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


class Connection:
    """A channel to one endpoint and its cached multicallables.

    ``active`` counts calls in flight (read by ``leastactive`` and by draining); it is updated
    without a lock, so it may drift by a call under heavy contention — good enough for both.
    """

    __slots__ = ("_callables", "active", "address", "channel", "draining", "idle", "refs")

    def __init__(self, address: str, channel: Any) -> None:
        self.address = address
        self.channel = channel
        self._callables: dict[str, Any] = {}
        self.active = 0
        self.refs = 0
        self.draining = False
        self.idle = threading.Event()

    def multicallable(self, info: MethodInfo) -> Any:
        mc = self._callables.get(info.path)
        if mc is None:
            factory = getattr(self.channel, info.kind.value)
            mc = factory(
                info.path,
                request_serializer=info.request_serializer,
                response_deserializer=info.response_deserializer,
                _registered_method=True,
            )
            self._callables[info.path] = mc
        return mc

    def done(self) -> None:
        """A call ended; wakes a drain waiting for the last one."""
        self.active -= 1
        if self.draining and self.active <= 0:
            self.idle.set()


class SyncConnection(Connection):
    """A sync ``grpc`` channel's connection: unary-unary methods are
    :class:`~dubbok.transport._direct.DirectUnary` where this grpcio allows and the channel
    has no client interceptors (as from ``grpc.intercept_channel``, or an instrumentation
    that wraps every channel)."""

    __slots__ = ()

    def multicallable(self, info: MethodInfo) -> Any:
        mc = self._callables.get(info.path)
        if mc is None:
            mc = super().multicallable(info)
            if info.kind is MethodKind.UNARY_UNARY and _direct.eligible(mc):
                mc = self._callables[info.path] = _direct.DirectUnary(mc)
        return mc


class ChannelPool:
    """Reference-counted channels keyed by address (sync ``grpc`` channels)."""

    def __init__(
        self,
        *,
        options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        self._options = list(DEFAULT_CHANNEL_OPTIONS) + list(options)
        self._credentials = credentials
        self._drain_timeout = drain_timeout
        self._lock = threading.Lock()
        self._connections: dict[str, Connection] = {}
        self._closers: list[threading.Thread] = []
        self._closing = threading.Event()

    def _open(self, address: str) -> Any:
        if self._credentials is not None:
            return grpc.secure_channel(address, self._credentials, options=self._options)
        return grpc.insecure_channel(address, options=self._options)

    def acquire(self, address: str) -> Connection:
        """The shared connection to ``address``, opening it if needed."""
        with self._lock:
            conn = self._connections.get(address)
            if conn is None or conn.draining:
                conn = SyncConnection(address, self._open(address))
                self._connections[address] = conn
            conn.refs += 1
            return conn

    def release(self, conn: Connection) -> None:
        """Drop one reference; the last one drains and closes the channel in the background."""
        with self._lock:
            conn.refs -= 1
            if conn.refs > 0:
                return
            if self._connections.get(conn.address) is conn:
                del self._connections[conn.address]
            conn.draining = True
            if conn.active <= 0:
                conn.idle.set()
            closer = threading.Thread(
                target=self._drain, args=(conn,), name=f"dubbok-drain-{conn.address}", daemon=True
            )
            self._closers = [t for t in self._closers if t.is_alive()]
            self._closers.append(closer)
        closer.start()

    def _drain(self, conn: Connection) -> None:
        if self._closing.wait(LINGER_SECONDS):
            conn.channel.close()  # the pool is closing: no drain
            return
        deadline = time.monotonic() + self._drain_timeout
        while conn.active > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "closing channel to %s with %d call(s) still in flight after %.1f s of drain",
                    conn.address,
                    conn.active,
                    self._drain_timeout,
                )
                break
            conn.idle.clear()
            if conn.active > 0:
                conn.idle.wait(left)
        conn.channel.close()

    def close(self) -> None:
        """Close every channel now and wait for pending drains."""
        self._closing.set()
        with self._lock:
            conns = list(self._connections.values())
            self._connections.clear()
            closers = list(self._closers)
        for conn in conns:
            conn.draining = True
            conn.channel.close()
        for t in closers:
            t.join(self._drain_timeout + 1.0)

    def __len__(self) -> int:
        return len(self._connections)
