"""The sync driver of fan-out strategies (forking, broadcast, hedging) and of failback.

Attempts run as grpc futures; their completions arrive on a queue, so the caller's thread
waits on one queue with at most the hedge timer as timeout — no polling, no extra threads.
The decisions are :class:`~dubbok.cluster.fanout.FanOut`'s.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from .attachments import Attachments, enter, leave, snapshot
from .cluster.fanout import Action, FanOut
from .core import CallPlan
from .endpoint import Endpoint
from .invocation import Metadata
from .observe import CallObservation

__all__ = ["Failback", "run_fanout"]

log = logging.getLogger("dubbok.cluster")

# A failback call waiting for its next try: when, which try, what to send, and the
# attachments of the call that failed (a retry carries those, not its thread's or task's).
_Queued = tuple[float, int, Any, Any, Metadata | None, Attachments]


def queued(
    interval: float,
    attempt: int,
    info: Any,
    request: Any,
    metadata: Metadata | None,
    attached: Attachments,
) -> _Queued:
    """A failback call waiting for try number ``attempt``, due ``interval`` seconds from now
    (the queue entry of both drivers' failback)."""
    return (time.monotonic() + interval, attempt, info, request, metadata, attached)


def run_fanout(
    plan: CallPlan,
    info: Any,
    request: Any,
    metadata: Metadata | None,
    call_options: dict[str, Any],
    with_call: bool,
    obs: CallObservation | None,
) -> Any:
    """Drive one fan-out call to its end; returns the winning result or raises."""
    fan = FanOut(plan, plan.policy.cluster)
    metadata = plan.outgoing or metadata
    route = plan.route
    done: queue.SimpleQueue[tuple[Endpoint, Any, float]] = queue.SimpleQueue()
    in_flight: dict[str, tuple[Any, Any]] = {}

    def launch(launches: list[tuple[Endpoint, float | None]]) -> None:
        for endpoint, timeout in launches:
            conn: Any = route.connections[endpoint.address]
            md, started = fan.start(endpoint, metadata, obs)
            conn.active += 1
            future = conn.multicallable(info).future(
                request, timeout=timeout, metadata=md, **call_options
            )
            in_flight[endpoint.address] = (future, conn)
            future.add_done_callback(lambda f, ep=endpoint, t=started: done.put((ep, f, t)))

    launch(fan.initial())
    try:
        while True:
            wake = fan.wake_at()
            try:
                wait = None if wake is None else max(0.0, wake - time.monotonic())
                endpoint, future, started = done.get(timeout=wait)
            except queue.Empty:
                launch(fan.on_timer())
                continue
            entry = in_flight.pop(endpoint.address, None)
            if entry is None or entry[0] is not future:
                continue  # a cancelled loser reporting in
            entry[1].done()
            try:
                result = future.result()
            except (grpc.RpcError, grpc.FutureCancelledError) as exc:
                if fan.failed(endpoint, exc, started, obs) is Action.FAIL:
                    raise fan.error() from exc
            else:
                action = fan.succeeded(endpoint, result, started, obs)
                if action is Action.DONE:
                    return (result, future) if with_call else result
                if action is Action.FAIL:  # broadcast: the last one in, after a failure
                    raise fan.error()
            launch(fan.pending())
    finally:
        for future, conn in in_flight.values():
            future.cancel()
            conn.done()


class Failback:
    """A bounded queue of failed fire-and-forget calls, retried in the background.

    One daemon thread per reference, started on first use. ``queue_size`` bounds the calls
    waiting or being retried; ``dropped`` counts calls given up: queue full, or every retry
    failed. ``delivered`` counts background retries that got through.
    """

    def __init__(
        self,
        resend: Callable[[Any, Any, Metadata | None], None],
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
        self._queue: queue.Queue[_Queued] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.delivered = 0

    def submit(self, info: Any, request: Any, metadata: Metadata | None) -> None:
        with self._lock:
            if self._outstanding >= self._size:
                self.dropped += 1
                log.warning(
                    "%s: failback queue full; call dropped (%d so far)", self._name, self.dropped
                )
                return
            self._outstanding += 1
            self._queue.put_nowait(queued(self._interval, 1, info, request, metadata, snapshot()))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"dubbok-failback-{self._name}", daemon=True
                )
                self._thread.start()

    @property
    def pending(self) -> int:
        return self._outstanding

    def _settle(self, delivered: bool) -> None:
        with self._lock:
            self._outstanding -= 1
            if delivered:
                self.delivered += 1
            else:
                self.dropped += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                due, attempt, info, request, metadata, attached = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            restore = enter(attached)
            try:
                self._resend(info, request, metadata)
            except Exception as exc:
                if attempt >= self._retries:
                    self._settle(delivered=False)
                    log.warning(
                        "%s: failback gave up after %d retries: %s", self._name, attempt, exc
                    )
                else:
                    self._queue.put_nowait(
                        queued(self._interval, attempt + 1, info, request, metadata, attached)
                    )
            else:
                self._settle(delivered=True)
            finally:
                leave(restore)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(2.0)
