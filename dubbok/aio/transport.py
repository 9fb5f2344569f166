"""Per-endpoint ``grpc.aio`` channels, reference-counted (asyncio twin of
:mod:`dubbok.transport`).

Channels belong to the event loop that created them, so the pool is used only from that
loop's thread. A released channel closes with ``channel.close(grace=drain_timeout)``, which
lets in-flight calls finish before cancelling the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc

from ..stub import MethodInfo, MethodKind
from ..transport import DEFAULT_CHANNEL_OPTIONS, LINGER_SECONDS, Connection

__all__ = ["AsyncChannelPool", "AsyncConnection", "DirectUnary"]

try:  # grpc's own call object and error builder: see DirectUnary
    from grpc import _observability
    from grpc._cython import cygrpc
    from grpc.aio._call import _create_rpc_error

    _DIRECT = all(
        hasattr(cygrpc, name) for name in ("AioChannel", "_AioCall", "AioRpcStatus")
    ) and all(
        hasattr(cygrpc._AioCall, name)
        for name in ("unary_unary", "cancel", "done", "is_ok", "status")
    )
except ImportError:  # pragma: no cover - a grpcio without these internals
    _DIRECT = False

_CANCELLED_DETAILS = "Locally cancelled by application!"  # grpc.aio's own text


class DirectUnary:
    """A unary-unary method of one channel, called on grpc's Cython call object.

    ``grpc.aio``'s multicallable wraps every unary call in a ``UnaryUnaryCall`` that runs the
    RPC in a Task of its own, which the caller then awaits: a task created and scheduled, an
    extra turn of the event loop, and a call object, per call. The RPC itself is one batch on
    the Cython call object, which this awaits directly: about 60,000 instructions a call
    less than the multicallable (``bench instructions``), with the same request, metadata,
    deadline, wait-for-ready, status and errors (``grpc.aio.AioRpcError``).

    Calls with per-call credentials or compression, and every call while grpc's
    observability plugin is installed, go through the multicallable as before. A call in
    flight is tracked so that closing the channel can wait for it and then cancel it, as
    ``grpc.aio.Channel.close(grace)`` does for its own calls.
    """

    __slots__ = (
        "_channel",
        "_deserialize",
        "_handle",
        "_method",
        "_multicallable",
        "_serialize",
        "calls",
    )

    def __init__(self, multicallable: Any) -> None:
        self._multicallable = multicallable
        self._channel = multicallable._channel
        self._method = multicallable._method
        self._handle = multicallable._registered_call_handle
        self._serialize = multicallable._request_serializer or _same
        self._deserialize = multicallable._response_deserializer or _same
        self.calls: set[Any] = set()

    async def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        if (
            credentials is not None
            or compression is not None
            or _observability._OBSERVABILITY_PLUGIN is not None
        ):
            return await self._multicallable(
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        call = self._channel.call(
            self._method,
            None if timeout is None else time.time() + timeout,
            None,
            wait_for_ready,
            self._handle,
        )
        calls = self.calls
        calls.add(call)
        try:
            reply = await call.unary_unary(
                self._serialize(request), tuple(metadata) if metadata else (), None
            )
        except asyncio.CancelledError:
            if not call.done():
                call.cancel(_CANCELLED_DETAILS)
            raise
        finally:
            calls.discard(call)
        if call.is_ok():
            return self._deserialize(reply)
        # Also a call that drain() cancelled: it fails with CANCELLED, as an RpcError. (grpc's
        # own call raises CancelledError there, into a task that asked for no such thing.)
        raise _create_rpc_error(call._initial_metadata, call._status)


def _same(value: Any) -> Any:
    return value


class AsyncConnection(Connection):
    """A ``grpc.aio`` channel's connection: unary-unary methods are :class:`DirectUnary`."""

    __slots__ = ()

    def multicallable(self, info: MethodInfo) -> Any:
        mc = self._callables.get(info.path)
        if mc is None:
            mc = super().multicallable(info)
            # Not on a channel with client interceptors: they run in grpc's call objects.
            if (
                _DIRECT
                and info.kind is MethodKind.UNARY_UNARY
                and not getattr(mc, "_interceptors", True)
            ):
                mc = self._callables[info.path] = DirectUnary(mc)
        return mc

    async def drain(self, grace: float | None) -> None:
        """Let direct calls in flight finish for up to ``grace`` seconds, then cancel the
        rest (the channel's own ``close(grace)`` does the same for the calls it tracks)."""
        direct = [mc for mc in self._callables.values() if isinstance(mc, DirectUnary)]
        calls = [call for mc in direct for call in mc.calls]
        if not calls:
            return
        if grace:
            waits = [asyncio.ensure_future(call.status()) for call in calls]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for wait in pending:
                wait.cancel()
        for call in calls:
            if not call.done():
                call.cancel(_CANCELLED_DETAILS)


class AsyncChannelPool:
    """Reference-counted ``grpc.aio`` channels keyed by address. Loop thread only."""

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
        self._connections: dict[str, Connection] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._lingering: set[Connection] = set()

    def acquire(self, address: str) -> Connection:
        conn = self._connections.get(address)
        if conn is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials, options=self._options)
            else:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            conn = AsyncConnection(address, channel)
            self._connections[address] = conn
        conn.refs += 1
        return conn

    def release(self, conn: Connection) -> None:
        conn.refs -= 1
        if conn.refs > 0:
            return
        if self._connections.get(conn.address) is conn:
            del self._connections[conn.address]
        conn.draining = True
        self._lingering.add(conn)
        task = asyncio.get_running_loop().create_task(self._linger_then_close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _linger_then_close(self, conn: Connection) -> None:
        # A call that read the previous route a moment ago may still start on this channel.
        await asyncio.sleep(LINGER_SECONDS)
        self._lingering.discard(conn)
        started = time.monotonic()
        if isinstance(conn, AsyncConnection):
            await conn.drain(self._drain_timeout)
        left = max(0.0, self._drain_timeout - (time.monotonic() - started))
        await conn.channel.close(left)

    async def aclose(self) -> None:
        conns = list(self._connections.values())
        self._connections.clear()
        for conn in conns:
            conn.draining = True
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*list(self._closing), return_exceptions=True)
        conns += list(self._lingering)
        self._lingering.clear()
        for conn in conns:
            if isinstance(conn, AsyncConnection):
                await conn.drain(None)
        await asyncio.gather(*(c.channel.close(None) for c in conns), return_exceptions=True)

    def __len__(self) -> int:
        return len(self._connections)
