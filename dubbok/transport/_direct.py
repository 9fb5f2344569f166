"""Sync unary-unary calls made on grpc's segregated call, without the multicallable's
per-call bookkeeping (see :class:`DirectUnary`)."""

from __future__ import annotations

import time
import types
from typing import Any

import grpc

from dubbok._fingerprint import fingerprint, lookup

__all__ = ["SUPPORTED", "DirectUnary", "eligible"]

# What grpc's sync unary call does, as read for this module (grpcio 1.85.3): the functions
# it stands in for and the ones whose behaviour it relies on, by their source
# (``dubbok._fingerprint``). A grpc that changed any of them is not stood in for.
_READ = {
    "_channel._UnaryUnaryMultiCallable.__init__": "8118a3349fccbadd",
    "_channel._UnaryUnaryMultiCallable._prepare": "de8f27d497929d02",
    "_channel._UnaryUnaryMultiCallable._blocking": "2544e3e9fbe7fba4",
    "_channel._UnaryUnaryMultiCallable.__call__": "4d22bcfb2ce62d49",
    "_channel._start_unary_request": "fe6aa5d5a67487e2",
    "_channel._handle_event": "c019cad95ec5a9f9",
    "_channel._end_unary_response_blocking": "4c0fc9dec5e8037b",
    "_channel._RPCState.__init__": "5b2e1be440e20f87",
    "_channel._InactiveRpcError.__init__": "de85a785c9acb341",
    "_channel._determine_deadline": "f8288c88fdb8600f",
    "_channel._deadline": "69ae2d8cac4de3ea",
    "_channel._abort": "07b78197a2110cf5",
    "_channel._InitialMetadataFlags.with_wait_for_ready": "6e1bfa8bbf5b7ba5",
    "_compression.augment_metadata": "f7535ff32e32ede0",
    "_common.serialize": "defc13a08373ca7d",
    "_common.deserialize": "e9289d82ebef45df",
    "_common._transform": "6466529fbae7744a",
    "_common.decode": "be53f998b38672a5",
    "_observability.maybe_record_rpc_latency": "113aa96d2f2029fe",
}

# The functions a call would have gone through, as grpc defines them. An APM agent or a test
# that replaces one on grpc's class or module (``wrapt``, ``mock.patch``) must see the call:
# a multicallable is only called directly while they are these very functions.
_STOOD_IN = (
    "_channel._UnaryUnaryMultiCallable.__call__",
    "_channel._UnaryUnaryMultiCallable._blocking",
    "_channel._UnaryUnaryMultiCallable._prepare",
    "_channel._start_unary_request",
    "_channel._end_unary_response_blocking",
    "_channel._handle_event",
    "_channel._determine_deadline",
    "_channel._deadline",
    "_channel._abort",
    "_compression.augment_metadata",
    "_common.serialize",
    "_common.deserialize",
    "_observability.maybe_record_rpc_latency",
)


def _defined(path: str) -> Any:
    """What ``path`` is as defined: a class attribute from the class's own ``__dict__``."""
    owner, _, name = path.rpartition(".")
    return lookup(grpc, owner).__dict__[name]


try:
    from grpc import _channel, _common, _observability
    from grpc._cython import cygrpc

    _ORIGINALS = tuple(_defined(path) for path in _STOOD_IN)
    _METHODS = _channel._UnaryUnaryMultiCallable.__dict__
    # The class's methods, checked on every call (a dict lookup and an identity test
    # each): a patch of the class reaches multicallables that already exist, so it must
    # reach direct calls made from them too. A patch of a module function (say
    # ``_channel._start_unary_request``) is checked by :func:`eligible` only, when a
    # multicallable is wrapped: calls made directly before it go on being direct.
    _CALL, _BLOCKING, _PREPARE = (_METHODS[n] for n in ("__call__", "_blocking", "_prepare"))
    # If dubbok is imported while one of them is already replaced (an agent loaded first,
    # a test's ``mock.patch`` active), the check below fails and no call is direct for the
    # life of the process: grpc's own function cannot be told from the replacement then.
    SUPPORTED = (
        all(fingerprint(lookup(grpc, path)) == fp for path, fp in _READ.items())
        # a function already wrapped (by an agent imported first) is not grpc's own
        and all(
            type(fn) is types.FunctionType and not hasattr(fn, "__wrapped__") for fn in _ORIGINALS
        )
        and hasattr(_observability, "_OBSERVABILITY_PLUGIN")
        and isinstance(_channel._UNARY_UNARY_INITIAL_DUE, tuple)
        and all(
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
    )
except Exception:  # pragma: no cover - another grpcio, whatever it lacks
    SUPPORTED = False


def _unpatched() -> bool:
    return all(_defined(path) is fn for path, fn in zip(_STOOD_IN, _ORIGINALS, strict=True))


def eligible(multicallable: Any) -> bool:
    """Whether ``multicallable`` (of a sync channel) can be called as a :class:`DirectUnary`:
    grpc's own, not one of a channel with client interceptors, which must run, and while
    none of the grpc functions a call goes through has been replaced."""
    return SUPPORTED and type(multicallable) is _channel._UnaryUnaryMultiCallable and _unpatched()


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

    Calls with compression, every call while grpc's observability plugin is installed,
    and every call while grpc's ``_UnaryUnaryMultiCallable.__call__``, ``_blocking`` or
    ``_prepare`` is not grpc's own (an APM agent or a test patched the class) go through the
    multicallable. ``with_call`` and
    ``future`` are the multicallable's own.
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

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        # grpc starts the deadline's clock before it serializes the request
        deadline = None if timeout is None else time.time() + timeout
        if (
            compression is not None
            or _observability._OBSERVABILITY_PLUGIN is not None
            or _METHODS["__call__"] is not _CALL
            or _METHODS["_blocking"] is not _BLOCKING
            or _METHODS["_prepare"] is not _PREPARE
        ):
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
        # as grpc: the metadata, read once (it may be an iterator), after serializing and
        # whether or not that worked
        initial = tuple(metadata) if metadata else None
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
            cygrpc.SendInitialMetadataOperation(initial, flags),
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
            _channel._determine_deadline(deadline),
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
            _channel._abort(state, grpc.StatusCode.INTERNAL, "Exception deserializing response!")
            state.trailing_metadata = operations[5].trailing_metadata()
            raise _channel._InactiveRpcError(state)
        state = _channel._RPCState(_channel._UNARY_UNARY_INITIAL_DUE, None, None, None, None)
        state.method, state.target = self._names
        state.rpc_start_time = time.perf_counter()
        _channel._handle_event(event, state, self._deserializer)
        raise _channel._InactiveRpcError(state)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable.with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable.future(*args, **kwargs)
