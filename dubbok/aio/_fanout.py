"""The asyncio driver of fan-out strategies and failback (twin of :mod:`dubbok._fanout`)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from .._fanout import _Queued, queued
from ..attachments import enter, leave, snapshot
from ..cluster.fanout import Action, FanOut
from ..core import CallPlan
from ..endpoint import Endpoint
from ..invocation import Metadata
from ..observe import CallObservation

__all__ = ["AsyncFailback", "run_fanout_async"]

log = logging.getLogger("dubbok.cluster")


async def run_fanout_async(
    plan: CallPlan,
    info: Any,
    request: Any,
    metadata: Metadata | None,
    call_options: dict[str, Any],
    with_call: bool,
    obs: CallObservation | None,
) -> Any:
    """Drive one fan-out call to its end; returns the winning result or raises.
    (``with_call`` is accepted for the sync driver's signature; asyncio has no such form.)"""
    fan = FanOut(plan, plan.policy.cluster)
    metadata = plan.outgoing or metadata
    route = plan.route
    in_flight: dict[asyncio.Future[Any], tuple[Endpoint, Any, Any, float]] = {}

    def launch(launches: list[tuple[Endpoint, float | None]]) -> None:
        for endpoint, timeout in launches:
            conn: Any = route.connections[endpoint.address]
            md, started = fan.start(endpoint, metadata, obs)
            conn.active += 1
            call = conn.multicallable(info)(request, timeout=timeout, metadata=md, **call_options)
            in_flight[asyncio.ensure_future(call)] = (endpoint, conn, call, started)

    launch(fan.initial())
    try:
        while True:
            wake = fan.wake_at()
            wait = None if wake is None else max(0.0, wake - time.monotonic())
            if not in_flight:
                await asyncio.sleep(wait or 0.0)
                launch(fan.on_timer())
                if not in_flight:
                    raise fan.error()
                continue
            done, _ = await asyncio.wait(
                in_flight.keys(), timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                launch(fan.on_timer())
                continue
            action = Action.WAIT
            for task in done:
                endpoint, conn, _call, started = in_flight.pop(task)
                conn.done()
                exc = asyncio.CancelledError() if task.cancelled() else task.exception()
                if isinstance(exc, (grpc.RpcError, asyncio.CancelledError)):
                    action = fan.failed(endpoint, exc, started, obs)
                    if action is Action.FAIL:
                        raise fan.error() from exc
                elif exc is not None:
                    raise exc
                else:
                    action = fan.succeeded(endpoint, task.result(), started, obs)
                    if action is Action.DONE:
                        return task.result()
            if action is Action.FAIL:
                raise fan.error()
            launch(fan.pending())
    finally:
        for future, (_endpoint, conn, _call, _started) in in_flight.items():
            future.cancel()  # cancels the RPC (a grpc call object, or a DirectUnary call)
            conn.done()


class AsyncFailback:
    """Bounded background retries of failed fire-and-forget calls, on the loop.

    ``queue_size`` bounds the calls waiting or being retried; ``dropped`` and ``delivered``
    count as in :class:`dubbok._fanout.Failback`.
    """

    def __init__(
        self,
        resend: Callable[[Any, Any, Metadata | None], Awaitable[None]],
        *,
        queue_size: int,
        retries: int,
        interval: float,
        name: str,
    ) -> None:
        self._resend = resend
        self._retries = retries
        self._interval = interval
        self._name = name
        self._size = queue_size
        self._outstanding = 0
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.delivered = 0

    def submit(self, info: Any, request: Any, metadata: Metadata | None) -> None:
        if self._outstanding >= self._size:
            self.dropped += 1
            log.warning(
                "%s: failback queue full; call dropped (%d so far)", self._name, self.dropped
            )
            return
        self._outstanding += 1
        self._queue.put_nowait(queued(self._interval, 1, info, request, metadata, snapshot()))
        if self._task is None:
            # In a context of its own, as the sync driver's thread: not the one of the call
            # that happened to start it (its incoming deadline, tag lane, retry flag and
            # current span would hold for every later retry). Each retry carries its own
            # call's attachments.
            loop = asyncio.get_running_loop()
            self._task = contextvars.Context().run(loop.create_task, self._run())

    @property
    def pending(self) -> int:
        return self._outstanding

    async def _run(self) -> None:
        while True:
            due, attempt, info, request, metadata, attached = await self._queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            restore = enter(attached)
            try:
                await self._resend(info, request, metadata)
            except Exception as exc:
                if attempt >= self._retries:
                    self.dropped += 1
                    self._outstanding -= 1
                    log.warning(
                        "%s: failback gave up after %d retries: %s", self._name, attempt, exc
                    )
                else:
                    self._queue.put_nowait(
                        queued(self._interval, attempt + 1, info, request, metadata, attached)
                    )
            else:
                self.delivered += 1
                self._outstanding -= 1
            finally:
                leave(restore)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
