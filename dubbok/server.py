"""The provider side: export servicers on a gRPC server with health and reflection.

Each handler is wrapped once, at export time, so that the incoming deadline is visible to the
calls the handler makes (:mod:`dubbok.context`). Health (``grpc.health.v1``) reports SERVING
only once the port listens, and NOT_SERVING from the first moment of a graceful stop.

The asyncio twin lives in :mod:`dubbok.aio.server`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from ._serving import HandlerPool
from .attachments import EMPTY as NO_ATTACHMENTS
from .attachments import PREFIX as ATTACHMENT_PREFIX
from .attachments import _current as _attachments
from .attachments import decode as decode_attachments
from .attachments import leave as leave_attachments
from .context import incoming_deadline, serving_retry
from .core import ATTEMPT_HEADER
from .endpoint import Endpoint
from .errors import BindError, ServiceDefinitionError
from .invocation import Deadline
from .limit import AdaptiveLimitPolicy, Admission, LimitPolicy, MethodGuard, MethodLimits
from .observe import Observer, ServerObservation
from .routing.tag import TAG_HEADER, enter_tag, leave_tag
from .service import ServiceOptions, method_options, service_options
from .stub import read_servicer

__all__ = ["DEFAULT_SERVER_OPTIONS", "ExportedService", "export", "listen"]

# SO_REUSEPORT would let a second server bind a port that is already in use, silently
# splitting traffic; a port conflict must be an error.
DEFAULT_SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.so_reuseport", 0),)


# grpc reports "no deadline" as about 9.2e18 seconds remaining.
NO_DEADLINE = 1e9

# Consumers recognise a refusal by a provider limit by this prefix: the handler never ran,
# so the call may be retried on another endpoint even when it is not idempotent.
REJECTED_PREFIX = "rejected by provider limit: "


class GuardBox:
    """Holds a method's current limits; handlers read ``guard`` on every call, so live rules
    swap limits with one attribute write."""

    __slots__ = ("guard",)

    def __init__(self, guard: MethodGuard | None = None) -> None:
        self.guard = guard


@dataclass(frozen=True, slots=True)
class ExportedService:
    """A servicer ready to be added to a server and announced to a registry."""

    name: str
    options: ServiceOptions
    handlers: Mapping[str, grpc.RpcMethodHandler]
    method_records: Mapping[str, Mapping[str, object]]
    guards: Mapping[str, GuardBox] = field(default_factory=dict)
    """Per method: the box its handler reads its limits from (swapped by live rules)."""

    def endpoint(self, app: str, host: str, port: int, started_at: float) -> Endpoint:
        return Endpoint(
            host=host,
            port=port,
            weight=self.options.weight,
            version=self.options.version,
            group=self.options.group,
            app=app,
            tags=dict(self.options.tags),
            methods={k: dict(v) for k, v in self.method_records.items()},
            started_at=started_at,
        )


def _remaining(context: Any) -> Deadline | None:
    left = context.time_remaining()
    if left is None or left > NO_DEADLINE:
        return None
    return Deadline(time.monotonic() + left)


def status_of(context: Any, error: BaseException | None) -> tuple[grpc.StatusCode, str]:
    """The status a handled call ends with, from its context and what the handler raised."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        details = context.details() or ""
        return code, details.decode() if isinstance(details, bytes) else str(details)
    if error is None:
        return grpc.StatusCode.OK, ""
    return grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"


CallTokens = tuple[Any, Any, Any, Any]


def enter_call(context: Any, metadata: Any = None) -> CallTokens:
    """Make the incoming call's context current for its handler (and the calls it makes):
    its deadline, whether it is a retry (``x-dubbok-attempt``), its tag lane
    (``x-dubbok-tag``), its attachments (``x-dubbok-att-*``, at most
    :data:`dubbok.attachments.MAX_BYTES`). One pass over the metadata (``metadata``: the
    call's invocation metadata when the caller has read it already)."""
    retry = tag = None
    attached: list[tuple[str, Any]] | None = None
    if metadata is None:
        metadata = context.invocation_metadata() or ()
    for key, value in metadata:
        if key == ATTEMPT_HEADER:
            retry = serving_retry.set(True)
        elif key == TAG_HEADER and isinstance(value, str):
            tag = enter_tag(value)
        # (`in` first: the cheapest "no" for every other key)
        elif ATTACHMENT_PREFIX in key and key.startswith(ATTACHMENT_PREFIX):
            if attached is None:
                attached = []
            attached.append((key, value))
    # The handler sees the caller's attachments and nothing else (not those of the context
    # the server runs in); with none on either side there is nothing to set or undo.
    if attached is not None:
        incoming = _attachments.set(decode_attachments(attached))
    elif _attachments.get().metadata:
        incoming = _attachments.set(NO_ATTACHMENTS)
    else:
        incoming = None
    return incoming_deadline.set(_remaining(context)), retry, tag, incoming


def leave_call(tokens: CallTokens) -> None:
    deadline, retry, tag, attached = tokens
    if attached is not None:
        leave_attachments(attached)
    incoming_deadline.reset(deadline)
    if retry is not None:
        serving_retry.reset(retry)
    if tag is not None:
        leave_tag(tag)


_IncomingHook = Callable[[Any, str, str, Any, Any], ServerObservation | None]
_incoming_hooks: dict[type, _IncomingHook | None] = {}
_UNKNOWN: Any = object()  # an observer class not looked at yet


def _incoming_hook(observer: Observer) -> _IncomingHook | None:
    """The observer class's ``handle_incoming`` (see :mod:`dubbok.observe`), looked up once
    per class."""
    cls = type(observer)
    try:
        return _incoming_hooks[cls]
    except KeyError:
        hook = getattr(cls, "handle_incoming", None)
        _incoming_hooks[cls] = hook if callable(hook) else None
        return _incoming_hooks[cls]


class ServedCall:
    """What every wrapped handler does around the servicer's code, sync or asyncio:
    make the call's context current, observe it, apply the method's limits.

    ::

        served = ServedCall(context, service, method, observer)
        refusal = served.admit(box.guard)      # None, or the message to abort with
        ... run the handler ...
        served.end(error_or_None)               # once, in the same thread or task
    """

    __slots__ = ("_admission", "_context", "_started", "_tokens", "obs")

    def __init__(
        self,
        context: Any,
        service: str,
        method: str,
        observer: Observer | None,
        metadata: Any = None,
    ) -> None:
        self._context = context
        # Read once (``metadata``: the driver has it already): an asyncio server builds the
        # tuple anew on every read (about 1 µs).
        if metadata is None:
            metadata = context.invocation_metadata() or ()
        self._tokens = enter_call(context, metadata)
        if observer is None:
            self.obs = None
        else:
            incoming = _incoming_hooks.get(type(observer), _UNKNOWN)
            if incoming is _UNKNOWN:
                incoming = _incoming_hook(observer)
            self.obs = (
                incoming(observer, service, method, context, metadata)
                if incoming is not None
                else observer.handle(service, method, context)
            )
        self._admission: Admission | None = None
        self._started = 0.0

    def admit(self, guard: MethodGuard | None) -> str | None:
        """Ask the method's limits; the abort message when one refuses, else ``None``."""
        if guard is None:
            return None
        admission = guard.enter()
        if not admission:
            if self.obs is not None:
                self.obs.event("rate_limited", {"dubbok.limit": admission.rejection})
            return REJECTED_PREFIX + admission.rejection
        self._admission = admission
        self._started = time.monotonic()
        return None

    def end(self, error: BaseException | None) -> None:
        context = self._context
        if self.obs is not None:
            self.obs.done(*status_of(context, error))
        leave_call(self._tokens)
        if self._admission is not None:
            self._admission.release(time.monotonic() - self._started, dropped(context))


def dropped(context: Any) -> bool:
    """Whether a finished call tells an adaptive limit that the provider was overloaded."""
    return context.code() in (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )


_REFUSED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _wrap_unary_response(
    behavior: Callable[..., Any],
    service: str,
    method: str,
    observer: Observer | None,
    box: GuardBox,
) -> Callable[..., Any]:
    @functools.wraps(behavior)
    def handler(request: Any, context: Any) -> Any:
        served = ServedCall(context, service, method, observer)
        try:
            guard = box.guard
            refusal = None if guard is None else served.admit(guard)
            if refusal is not None:
                context.abort(_REFUSED, refusal)
            reply = behavior(request, context)
        except BaseException as exc:
            served.end(exc)
            raise
        served.end(None)
        return reply

    return handler


def _wrap_stream_response(
    behavior: Callable[..., Any],
    service: str,
    method: str,
    observer: Observer | None,
    box: GuardBox,
) -> Callable[..., Any]:
    @functools.wraps(behavior)
    def handler(request: Any, context: Any) -> Iterator[Any]:
        served = ServedCall(context, service, method, observer)
        try:
            guard = box.guard
            refusal = None if guard is None else served.admit(guard)
            if refusal is not None:
                context.abort(_REFUSED, refusal)
            yield from behavior(request, context)
        except BaseException as exc:
            served.end(exc)
            raise
        served.end(None)

    return handler


def _wrap_handler(
    h: grpc.RpcMethodHandler,
    service: str,
    method: str,
    observer: Observer | None,
    box: GuardBox,
) -> grpc.RpcMethodHandler:
    args = (service, method, observer, box)
    if h.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(h.unary_unary, *args),
            h.request_deserializer,
            h.response_serializer,
        )
    if h.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(h.stream_unary, *args),
            h.request_deserializer,
            h.response_serializer,
        )
    if h.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(h.unary_stream, *args),
            h.request_deserializer,
            h.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream_response(h.stream_stream, *args),
        h.request_deserializer,
        h.response_serializer,
    )


def method_limits(servicer: object, name: str, limits: LimitPolicy | None) -> MethodLimits | None:
    """The limits of one method: the App's ``limits`` over ``@dubbok.method`` options."""
    if limits is not None:
        found = limits.for_method(name)
        if found is not None:
            return None if found.empty else found
    opts = method_options(servicer, name)
    if opts is None or (opts.qps is None and opts.max_concurrency is None and not opts.adaptive):
        return None
    return MethodLimits(
        qps=opts.qps,
        max_concurrency=opts.max_concurrency,
        adaptive=AdaptiveLimitPolicy() if opts.adaptive else None,
    )


def update_limits(exported: ExportedService, servicer: object, limits: LimitPolicy | None) -> None:
    """Swap the exported methods' limits (live rules); calls in progress keep theirs."""
    for name, box in exported.guards.items():
        found = method_limits(servicer, name, limits)
        current = box.guard
        if found is None:
            box.guard = None
        elif current is None or current.limits != found:
            box.guard = MethodGuard(name, found)


def export(
    servicer: object,
    *,
    wrap: bool = True,
    observer: Observer | None = None,
    limits: LimitPolicy | None = None,
) -> ExportedService:
    """Read a servicer's service and handlers, and its ``@dubbok`` options.

    With ``wrap`` (the sync server), each handler is wrapped for deadline propagation and
    observation; the asyncio server wraps them itself.
    """
    proto_name, handlers = read_servicer(servicer)
    options = service_options(servicer)
    if options.name is not None and options.name != proto_name:
        raise ServiceDefinitionError(
            f"@dubbok.service names {options.name!r} but {type(servicer).__name__} implements "
            f"{proto_name!r}; use the proto's full service name or omit it"
        )
    records: dict[str, Mapping[str, object]] = {}
    for name in handlers:
        mopts = method_options(servicer, name)
        if mopts is not None and mopts.as_record():
            records[name] = mopts.as_record()
    guards: dict[str, GuardBox] = {}
    for name in handlers:
        found = method_limits(servicer, name, limits)
        guards[name] = GuardBox(MethodGuard(name, found) if found is not None else None)
    if wrap:
        handlers = {
            name: _wrap_handler(h, proto_name, name, observer, guards[name])
            for name, h in handlers.items()
        }
    return ExportedService(proto_name, options, handlers, records, guards)


def listen(server: Any, host: str, port: int) -> int:
    """Bind ``host:port`` (insecure); return the bound port or raise :class:`BindError`."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise BindError(address, str(exc) or "the address is in use or not local") from exc
    if not bound:
        raise BindError(address, "the address is in use or not local")
    return int(bound)


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) * 8)


def new_server(
    max_workers: int | None, options: tuple[tuple[str, Any], ...] = ()
) -> tuple[Any, HandlerPool]:
    """A ``grpc`` server (not started: see :func:`dubbok._serving.start`) and its handler
    threads, at most ``max_workers`` of them."""
    pool = HandlerPool(max_workers or default_workers(), thread_name_prefix="dubbok-handler")
    server = grpc.server(pool, options=list(DEFAULT_SERVER_OPTIONS) + list(options))
    return server, pool
