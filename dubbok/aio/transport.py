"""Per-endpoint ``grpc.aio`` channels, reference-counted (asyncio twin of
:mod:`dubbok.transport`).

Channels belong to the event loop that created them, so the pool is used only from that
loop's thread. A released channel closes with ``channel.close(grace=drain_timeout)``, which
lets in-flight calls finish before cancelling the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc

from ..transport import DEFAULT_CHANNEL_OPTIONS, LINGER_SECONDS, Connection

__all__ = ["AsyncChannelPool"]


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
            conn = Connection(address, channel)
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
        await conn.channel.close(self._drain_timeout)

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
        await asyncio.gather(*(c.channel.close(None) for c in conns), return_exceptions=True)

    def __len__(self) -> int:
        return len(self._connections)
