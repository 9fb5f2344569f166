"""A ``grpc`` (sync) server whose unary methods receive their request before a handler
thread takes them.

grpc's sync server hands a unary call to its thread pool as soon as the call arrives. The
pool thread then asks for the request message and parks on a condition until the serving
thread, which polls grpc's completion queue, wakes it with the message: two thread hand-offs
per call, each a wake-up and a wait for the GIL. On the development machine that was about a
quarter of a raw grpc provider's instructions per unary call (``bench instructions --modes
sync --impls raw,raw-fast``) and more of its CPU time.

:func:`start` starts grpc's own server with its own serving thread replaced by one that
differs for unary-unary registered methods only: the serving thread asks for the request
itself, and when it arrives hands the call to a handler thread, which runs it through grpc's
own code (``_unary_response_in_pool``: the same servicer context, deadlines, cancellation,
status, errors and abort). Every other event — streaming methods, unknown methods, shutdown,
the calls' own completions — goes to grpc's own event handling, unchanged.

:class:`HandlerPool` is the provider's handler threads: a fixed maximum of threads on one
``queue.SimpleQueue``, with ``submit`` (a ``concurrent.futures.Future``) for grpc's own
paths and ``run`` (no future) for the unary path above. ``concurrent.futures``'s
``ThreadPoolExecutor`` spends a Future, a work item, a semaphore check and a done callback on
every call.

It uses grpc internals of ``grpc._server``, checked at import: the functions it calls, by
their parameters (``_NEEDED``); the functions it stands in for, by their source
(``_COPIED``) and the names they use (``_start``, ``_serve``), so that a grpc that does
more there is not stood in for. Without them, with a server interceptor or a concurrent-RPC
limit, or with ``DUBBOK_SERVING=grpc`` in the environment, :func:`start` is
``server.start()``. A call is served the same as grpc would, with one addition: a call no
handler thread can take (the pool shut down, or no thread could start) gets UNAVAILABLE and
serving goes on.
"""

from __future__ import annotations

import inspect
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from dubbok._fingerprint import fingerprint

__all__ = ["ENV", "SUPPORTED", "HandlerPool", "enabled", "start"]

log = logging.getLogger(__name__)

ENV = "DUBBOK_SERVING"  # "grpc": grpc's own serving, in both drivers


def _parameters(fn: object) -> tuple[str, ...] | None:
    try:
        return tuple(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# What this module calls, and the parameters it passes them.
_NEEDED: dict[str, tuple[str, ...] | None] = {
    "_unary_response_in_pool": (
        "rpc_event",
        "state",
        "behavior",
        "argument_thunk",
        "request_deserializer",
        "response_serializer",
    ),
    "_receive_close_on_server": ("state",),
    "_abort": ("state", "call", "code", "details"),
    "_is_rpc_state_active": ("state",),
    "_process_event_and_continue": ("state", "event"),
    "_request_registered_call": ("state", "method"),
    "_request_call": ("state",),
    "_stop_serving": ("state",),
    "_begin_shutdown_once": ("state",),
}
# What grpc's own _start and _serve use: a grpc whose versions use more is not built around.
_START_NAMES = {
    "lock",
    "stage",
    "_ServerStage",
    "STOPPED",
    "STARTED",
    "ValueError",
    "server",
    "start",
    "registered_method_handlers",
    "_request_registered_call",
    "_request_call",
    "threading",
    "Thread",
    "_serve",
    "daemon",
}
_SERVE_NAMES = {
    "time",
    "_DEALLOCATED_SERVER_CHECK_PERIOD_S",
    "completion_queue",
    "poll",
    "server_deallocated",
    "_begin_shutdown_once",
    "completion_type",
    "cygrpc",
    "CompletionType",
    "queue_timeout",
    "_process_event_and_continue",
}

# What this module does in their place, fingerprinted by their source
# (``dubbok._fingerprint``): a grpc whose versions differ may do more, and gets its own
# serving. (From grpcio 1.85.3.)
_COPIED = {
    "_process_event_and_continue": "527f3a8d7ef119fb",
    "_handle_call": "35be644c036d5739",
    "_handle_with_method_handler": "bff14a0b4d1fe6b8",
    "_handle_unary_unary": "a987b3a1429346be",
    "_select_thread_pool_for_behavior": "2ca2a472e66cea55",
    "_unary_request": "f365f3703a601d0d",
    "_receive_message": "2612012ac051b47a",
}


try:
    from grpc import _common as _grpc_common
    from grpc import _server as _grpc_server
    from grpc._cython import cygrpc

    _probe = _grpc_server._RPCState()
    SUPPORTED = (
        all(
            _parameters(getattr(_grpc_server, name, None)) == params
            for name, params in _NEEDED.items()
        )
        and all(fingerprint(getattr(_grpc_server, name)) == fp for name, fp in _COPIED.items())
        and _grpc_server._Server.start.__code__.co_names == ("_start", "_state")
        and set(_grpc_server._start.__code__.co_names) <= _START_NAMES
        and set(_grpc_server._serve.__code__.co_names) <= _SERVE_NAMES
        and all(
            hasattr(_probe, name) for name in ("context", "condition", "due", "client", "callbacks")
        )
        and all(
            isinstance(getattr(_grpc_server, name, None), str)
            for name in (
                "_RECEIVE_MESSAGE_TOKEN",
                "_RECEIVE_CLOSE_ON_SERVER_TOKEN",
                "_OPEN",
                "_CLOSED",
            )
        )
        and isinstance(getattr(_grpc_server, "_DEALLOCATED_SERVER_CHECK_PERIOD_S", None), float)
        and callable(getattr(_grpc_common, "deserialize", None))
        and callable(getattr(cygrpc, "ReceiveMessageOperation", None))
        and callable(getattr(cygrpc, "ReceiveCloseOnServerOperation", None))
    )
    del _probe
except Exception:  # pragma: no cover - another grpcio, whatever it lacks
    SUPPORTED = False


def enabled() -> bool:
    """Whether :func:`start` serves unary methods on the serving thread."""
    return SUPPORTED and os.environ.get(ENV, "").strip().lower() != "grpc"


_STOP = object()


class HandlerPool:
    """Up to ``max_workers`` handler threads on one queue, started as calls need them."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "dubbok-handler") -> None:
        if max_workers <= 0:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # Threads waiting for a call no one has counted on them for, and calls queued when
        # every thread was busy: each call is counted once, so none waits while a thread idles.
        self._idle = 0
        self._backlog = 0
        self._shutdown = False

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a handler thread; what it raises is logged. Raises
        ``RuntimeError`` after :meth:`shutdown`, or when a needed thread cannot start (the
        call is then not queued)."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("the handler pool is shut down; no call can be scheduled")
            if self._idle > 0:
                self._idle -= 1  # a waiting thread takes it
            elif len(self._threads) >= self.max_workers:
                self._backlog += 1  # the next thread to finish takes it
            else:
                thread = threading.Thread(
                    target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True
                )
                thread.start()  # before it counts: a thread that failed to start is not one
                self._threads.append(thread)
            self._queue.put((fn, args))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        """``concurrent.futures.Executor.submit``: grpc's own paths use the future."""
        future: futures.Future[Any] = futures.Future()
        self.run(_complete, future, fn, args, kwargs)
        return future

    def shutdown(self, wait: bool = True) -> None:
        """No new calls; each thread ends after the calls queued before this."""
        with self._lock:
            if self._shutdown:
                threads: list[threading.Thread] = []
            else:
                self._shutdown = True
                threads = list(self._threads)
                for _ in threads:
                    self._queue.put(_STOP)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    @property
    def threads(self) -> int:
        """Threads started so far (at most ``max_workers``)."""
        return len(self._threads)

    @property
    def idle(self) -> int:
        """Threads waiting for a call that no queued call is counted on."""
        return self._idle

    def _work(self) -> None:
        get = self._queue.get
        lock = self._lock
        while True:
            item = get()
            if item is _STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:
                log.exception("a handler thread's call raised")
            del item, fn, args
            with lock:
                if self._backlog > 0:
                    self._backlog -= 1
                else:
                    self._idle += 1


def _complete(
    future: futures.Future[Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def start(server: grpc.Server) -> bool:
    """Start ``server`` (from ``grpc.server``, not started); ``True`` when its unary methods
    are served as the module text says, ``False`` when it is grpc's own ``start()``."""
    state = getattr(server, "_state", None)
    if (
        not enabled()
        or state is None
        or getattr(state, "interceptor_pipeline", True) is not None
        or getattr(state, "maximum_concurrent_rpcs", True) is not None
    ):
        server.start()
        return False
    _Serving(state).start()
    return True


class _Serving:
    """grpc's ``_start`` and ``_serve`` for one server's state, with the unary path."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.unary = {
            method: handler
            for method, handler in state.registered_method_handlers.items()
            if not handler.request_streaming
            and not handler.response_streaming
            # a behaviour with a pool of its own (grpc's experimental_thread_pool) keeps it
            and getattr(handler.unary_unary, "experimental_thread_pool", None) is None
        }
        pool = state.thread_pool
        self.run: Callable[..., Any] = pool.run if isinstance(pool, HandlerPool) else pool.submit

    def start(self) -> None:
        state = self.state
        g = _grpc_server
        with state.lock:
            if state.stage is not g._ServerStage.STOPPED:
                raise ValueError("Cannot start already-started server!")
            state.server.start()
            state.stage = g._ServerStage.STARTED
            for method in state.registered_method_handlers:
                g._request_registered_call(state, method)
            g._request_call(state)
            thread = threading.Thread(target=self._serve, name="dubbok-serving", daemon=True)
            thread.start()

    def _serve(self) -> None:
        state = self.state
        g = _grpc_server
        poll = state.completion_queue.poll
        timed_out = cygrpc.CompletionType.queue_timeout
        process = g._process_event_and_continue
        unary = self.unary
        while True:
            event = poll(time.time() + g._DEALLOCATED_SERVER_CHECK_PERIOD_S)
            if state.server_deallocated:
                g._begin_shutdown_once(state)
            if event.completion_type == timed_out:
                continue
            tag = event.tag
            handler = unary.get(tag) if tag.__class__ is str else None
            if handler is None:
                if not process(state, event):
                    return
            elif not self._arrived(event, tag, handler):
                return
            # Let go of the event before polling again, as grpc does (a shut-down call it
            # holds can make the next poll spin).
            event = None

    def _arrived(self, event: Any, method: str, handler: grpc.RpcMethodHandler) -> bool:
        """A call to a unary method: ask for its request and for its close, and for the
        method's next call. ``False`` when the server is done."""
        state = self.state
        g = _grpc_server
        with state.lock:
            state.due.remove(method)
            if event.success:
                rpc_state = g._RPCState()
                call = event.call
                call.start_server_batch(
                    (cygrpc.ReceiveCloseOnServerOperation(0),),
                    g._receive_close_on_server(rpc_state),
                )
                rpc_state.due.add(g._RECEIVE_CLOSE_ON_SERVER_TOKEN)
                call.start_server_batch(
                    (cygrpc.ReceiveMessageOperation(0),),
                    self._received(event, rpc_state, method, handler),
                )
                rpc_state.due.add(g._RECEIVE_MESSAGE_TOKEN)
                state.rpc_states.add(rpc_state)
            if state.stage is g._ServerStage.STARTED:
                g._request_registered_call(state, method)
                return True
            return not g._stop_serving(state)

    def _received(
        self, rpc_event: Any, rpc_state: Any, method: str, handler: grpc.RpcMethodHandler
    ) -> Callable[[Any], Any]:
        """The request's completion: the call goes to a handler thread (grpc's
        ``_receive_message`` and ``_unary_request``, without the thread in between)."""
        run = self.run
        g = _grpc_server
        deserializer = handler.request_deserializer

        def received(event: Any) -> Any:
            serialized = event.batch_operations[0].message()
            with rpc_state.condition:
                rpc_state.due.remove(g._RECEIVE_MESSAGE_TOKEN)
                if serialized is None:
                    # No message: the caller closed (or cancelled) without one.
                    if rpc_state.client is g._OPEN:
                        rpc_state.client = g._CLOSED
                    if rpc_state.client is g._CLOSED:
                        details = f'"{method}" requires exactly one request message.'
                        g._abort(
                            rpc_state,
                            rpc_event.call,
                            cygrpc.StatusCode.unimplemented,
                            details.encode(),
                        )
                if serialized is None or not g._is_rpc_state_active(rpc_state):
                    # Nothing to run (a cancelled call's close may have come first).
                    if not g._is_rpc_state_active(rpc_state) and not rpc_state.due:
                        callbacks, rpc_state.callbacks = rpc_state.callbacks, None
                        return rpc_state, callbacks
                    return None, ()

            def argument() -> Any:
                with rpc_state.condition:
                    if not g._is_rpc_state_active(rpc_state):
                        return None  # cancelled or past its deadline while it queued
                request = _grpc_common.deserialize(serialized, deserializer)
                if request is None:
                    with rpc_state.condition:
                        g._abort(
                            rpc_state,
                            rpc_event.call,
                            cygrpc.StatusCode.internal,
                            b"Exception deserializing request!",
                        )
                return request

            try:
                run(
                    rpc_state.context.run,
                    g._unary_response_in_pool,
                    rpc_event,
                    rpc_state,
                    handler.unary_unary,
                    argument,
                    deserializer,
                    handler.response_serializer,
                )
            except Exception:  # no handler thread for it: refuse this call, serve the next
                log.exception("no handler thread could take a call to %s", method)
                with rpc_state.condition:
                    g._abort(
                        rpc_state,
                        rpc_event.call,
                        cygrpc.StatusCode.unavailable,
                        b"the server could not schedule the call",
                    )
            return None, ()

        return received
