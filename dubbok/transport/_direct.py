"""Sync unary-unary calls made on grpc's segregated call, without the multicallable's
per-call bookkeeping (see :class:`DirectUnary`)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import grpc

__all__ = ["SUPPORTED", "DirectUnary", "eligible"]


def _fingerprint(fn: Any) -> str:
    """The names a function's code uses (nested code included): they change when what
    the function does changes."""
    names: set[str] = set()
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    return hashlib.sha256(" ".join(sorted(names)).encode()).hexdigest()[:16]


# What grpc's sync unary call does, as read for this module (grpcio 1.85): the call is
# prepared, made and ended by these; a grpc that changed them is not stood in for.
_READ = {
    "_UnaryUnaryMultiCallable._prepare": "b863e3d270c96c5a",
    "_UnaryUnaryMultiCallable._blocking": "03c67237451a6c62",
    "_UnaryUnaryMultiCallable.__call__": "cd67095b95ebbdba",
    "_start_unary_request": "efb744dbd6e5ee94",
    "_handle_event": "22062451066aa6cc",
    "_end_unary_response_blocking": "4bcdfca50242a24b",
    "_RPCState.__init__": "69d1c681a3535243",
    "_InactiveRpcError.__init__": "60d7e95bc193c8b7",
    "_determine_deadline": "a5f670cada11d88a",
    "_InitialMetadataFlags.with_wait_for_ready": "c02a488c95bbc288",
}

try:
    from grpc import _channel, _common, _observability
    from grpc._cython import cygrpc

    def _read(path: str) -> Any:
        target: Any = _channel
        for part in path.split("."):
            target = getattr(target, part)
        return target

    SUPPORTED = all(_fingerprint(_read(path)) == fp for path, fp in _READ.items()) and all(
        hasattr(cygrpc, name)
        for name in (
            "SendInitialMetadataOperation",
            "SendMessageOperation",
            "SendCloseFromClientOperation",
            "ReceiveInitialMetadataOperation",
            "ReceiveMessageOperation",
            "ReceiveStatusOnClientOperation",
            "PropagationConstants",
        )
    )
except (ImportError, AttributeError):  # pragma: no cover - another grpcio
    SUPPORTED = False


def eligible(multicallable: Any) -> bool:
    """Whether ``multicallable`` (of a sync channel) can be called as a :class:`DirectUnary`:
    grpc's own, not one of a channel with client interceptors, which must run."""
    return SUPPORTED and type(multicallable) is _channel._UnaryUnaryMultiCallable


_OK = 0  # grpc_status_code GRPC_STATUS_OK
_NO_FLAGS = 0


class DirectUnary:
    """A sync unary-unary method of one channel, called on grpc's segregated call.

    grpc's multicallable builds, for every call, a state object with its own condition
    variable and bookkeeping sets, runs the batch's results through a generic event
    handler, and enters grpc's observability hooks. The RPC itself is one batch of six
    operations on a segregated call, which this makes and reads directly: about 75,000
    instructions a call less (``bench instructions``), with the same request, metadata,
    deadline (a propagated parent deadline included), wait-for-ready, credentials, reply
    and errors. A failed call raises the very error grpc raises (``_InactiveRpcError``,
    built by grpc's own event handling).

    Calls with compression, and every call while grpc's observability plugin is
    installed, go through the multicallable. ``with_call`` and ``future`` are the
    multicallable's own.
    """

    __slots__ = (
        "_channel",
        "_context",
        "_deserializer",
        "_handle",
        "_method",
        "_multicallable",
        "_names",
        "_serializer",
        "future",
        "with_call",
    )

    def __init__(self, multicallable: Any) -> None:
        self._multicallable = multicallable
        self._channel = multicallable._channel
        self._method = multicallable._method
        self._context = multicallable._context
        self._handle = multicallable._registered_call_handle
        self._serializer = multicallable._request_serializer
        self._deserializer = multicallable._response_deserializer
        # what grpc's error path reads (its latency hook): method and target, decoded
        self._names = (
            _common.decode(multicallable._method),
            _common.decode(multicallable._target),
        )
        self.with_call = multicallable.with_call
        self.future = multicallable.future

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        if compression is not None or _observability._OBSERVABILITY_PLUGIN is not None:
            return self._multicallable(
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        serializer = self._serializer
        serialized = request if serializer is None else _common.serialize(request, serializer)
        if serialized is None:  # grpc's own error for a request that does not serialize
            raise _channel._InactiveRpcError(
                _channel._RPCState(
                    (), (), (), grpc.StatusCode.INTERNAL, "Exception serializing request!"
                )
            )
        flags = (
            _NO_FLAGS
            if wait_for_ready is None
            else _channel._InitialMetadataFlags().with_wait_for_ready(wait_for_ready)
        )
        operations = (
            cygrpc.SendInitialMetadataOperation(metadata, flags),
            cygrpc.SendMessageOperation(serialized, _NO_FLAGS),
            cygrpc.SendCloseFromClientOperation(_NO_FLAGS),
            cygrpc.ReceiveInitialMetadataOperation(_NO_FLAGS),
            cygrpc.ReceiveMessageOperation(_NO_FLAGS),
            cygrpc.ReceiveStatusOnClientOperation(_NO_FLAGS),
        )
        call = self._channel.segregated_call(
            cygrpc.PropagationConstants.GRPC_PROPAGATE_DEFAULTS,
            self._method,
            None,
            _channel._determine_deadline(None if timeout is None else time.time() + timeout),
            metadata,
            None if credentials is None else credentials._credentials,
            ((operations, None),),
            self._context,
            self._handle,
        )
        event = call.next_event()
        if operations[5].code() == _OK:
            message = operations[4].message()
            if message is None:
                return None  # as grpc: an OK status without a message
            deserializer = self._deserializer
            if deserializer is None:
                return message
            response = _common.deserialize(message, deserializer)
            if response is not None:
                return response
            # grpc's abort for a reply that does not deserialize (logged just above)
            state = _channel._RPCState((), None, None, None, None)
            state.initial_metadata = operations[3].initial_metadata()
            state.trailing_metadata = operations[5].trailing_metadata()
            state.code = grpc.StatusCode.INTERNAL
            state.details = "Exception deserializing response!"
            raise _channel._InactiveRpcError(state)
        state = _channel._RPCState(_channel._UNARY_UNARY_INITIAL_DUE, None, None, None, None)
        state.method, state.target = self._names
        state.rpc_start_time = time.perf_counter()
        _channel._handle_event(event, state, self._deserializer)
        raise _channel._InactiveRpcError(state)
