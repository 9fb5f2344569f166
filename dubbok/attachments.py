"""Attachments: key/values that travel with calls, like Dubbo's implicit parameters.

Set them on the calling thread or task; every dubbok call made from there carries them as
gRPC metadata (``x-dubbok-att-<key>``) on each of its attempts; the provider reads them back
while its handler runs, and the calls *that* handler makes carry them further::

    from dubbok import attachments

    attachments.set("tenant", "acme")          # on the consumer
    greeter.SayHello(request)                   # carries x-dubbok-att-tenant: acme

    attachments.get("tenant")                   # in the provider's handler → "acme"

They live in a :mod:`contextvars` variable — per thread, per asyncio task (a task copies the
context it was created in), and per handled call on a provider. Values are immutable
snapshots: setting one copies the small mapping, so a watcher or another task never sees a
half-made change. A call reads them once, when it starts: its retries, hedges and stream
carry what was current then.

Size is bounded: all attachments together, names with prefix included, may take at most
:data:`MAX_BYTES` (8 KiB) of metadata; :func:`set` refuses more with a
:class:`~dubbok.errors.ConfigurationError`. A provider keeps at most that much of what a
caller sent and ignores the rest.

They are part of the call path itself, observer or not: the consumer pipeline
(:class:`~dubbok.core.CallPlan`) adds them to every call and the provider side
(:mod:`dubbok.server`) makes them current for every handler. This module needs nothing
but the standard library (no OpenTelemetry); :mod:`dubbok.tracing.attachments` is the same
API under its earlier name.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .errors import ConfigurationError

__all__ = [
    "MAX_BYTES",
    "PREFIX",
    "Attachments",
    "attached",
    "clear",
    "current",
    "get",
    "remove",
    "set",
]

PREFIX = "x-dubbok-att-"
MAX_BYTES = 8192

log = logging.getLogger(__name__)

# gRPC metadata keys are lower-case; "-bin" keys carry bytes, which attachments do not.
_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
# Printable ASCII: what gRPC allows in a text metadata value.
_VALUE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class Attachments:
    """An immutable set of attachments and the metadata that carries it."""

    values: Mapping[str, str]
    metadata: tuple[tuple[str, str], ...]
    size: int

    def __bool__(self) -> bool:
        return bool(self.metadata)

    @classmethod
    def of(cls, values: Mapping[str, str]) -> Attachments:
        metadata = tuple((PREFIX + k, v) for k, v in values.items())
        size = sum(len(k) + len(v) for k, v in metadata)
        return cls(MappingProxyType(dict(values)), metadata, size)


EMPTY = Attachments(MappingProxyType({}), (), 0)

_current: contextvars.ContextVar[Attachments] = contextvars.ContextVar(
    "dubbok_attachments", default=EMPTY
)


def _check(key: str, value: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key) or key.endswith("-bin"):
        raise ConfigurationError(
            f"attachment name {key!r} is not usable: use 1-128 lower-case letters, digits, "
            "'-', '_' or '.', starting with a letter or digit, not ending in '-bin'"
        )
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise ConfigurationError(
            f"attachment {key!r}: the value must be printable ASCII text, got {value!r}; "
            "encode anything else (e.g. base64) first"
        )


def _replace(values: Mapping[str, str]) -> Attachments:
    result = Attachments.of(values)
    if result.size > MAX_BYTES:
        raise ConfigurationError(
            f"attachments would take {result.size} bytes of metadata, more than the "
            f"{MAX_BYTES} allowed; keep them to small identifiers (tenant, user id, flags) "
            "and pass data in the request"
        )
    return result


def current() -> Mapping[str, str]:
    """The attachments of this thread or task (a read-only mapping)."""
    return _current.get().values


def get(key: str, default: str | None = None) -> str | None:
    """One attachment's value, or ``default``."""
    return _current.get().values.get(key, default)


def set(key: str, value: str) -> None:
    """Set ``key`` for the calls made from this thread or task from now on.

    Raises :class:`~dubbok.errors.ConfigurationError` for a name or value gRPC metadata
    cannot carry, or when the attachments would exceed :data:`MAX_BYTES`.
    """
    _check(key, value)
    values = dict(_current.get().values)
    values[key] = value
    _current.set(_replace(values))


def remove(key: str) -> None:
    """Stop sending ``key`` (no error when it is not set)."""
    now = _current.get()
    if key in now.values:
        values = dict(now.values)
        del values[key]
        _current.set(Attachments.of(values))


def clear() -> None:
    """Send no attachments from this thread or task."""
    _current.set(EMPTY)


@contextlib.contextmanager
def attached(values: Mapping[str, str]) -> Iterator[Mapping[str, str]]:
    """Add ``values`` for the duration of a ``with`` block, then restore what was before."""
    for key, value in values.items():
        _check(key, value)
    token = _current.set(_replace({**_current.get().values, **values}))
    try:
        yield _current.get().values
    finally:
        _current.reset(token)


# -- used by the call path (dubbok.core, dubbok.server, failback) ---------------------------


def snapshot() -> Attachments:
    """What an outgoing call carries (read once per call)."""
    return _current.get()


def enter(incoming: Attachments) -> contextvars.Token[Attachments] | None:
    """Make ``incoming`` current for a handled call; ``None`` when there is nothing to undo."""
    if not incoming.metadata and not _current.get().metadata:  # (no __bool__ call: hot path)
        return None
    return _current.set(incoming)


def leave(token: contextvars.Token[Attachments] | None) -> None:
    if token is not None:
        # A response stream closed by the garbage collector runs its cleanup in another
        # context; that context dies with the call, so there is nothing to restore.
        with contextlib.suppress(ValueError):
            _current.reset(token)


def decode(pairs: Iterable[tuple[str, str | bytes]]) -> Attachments:
    """The attachments in incoming metadata, keeping at most :data:`MAX_BYTES`."""
    values: dict[str, str] = {}
    size = 0
    dropped = 0
    for key, value in pairs:
        if not isinstance(value, str):
            continue
        size += len(key) + len(value)
        if size > MAX_BYTES:
            dropped += 1
            continue
        values[key[len(PREFIX) :]] = value
    if dropped:
        log.warning(
            "a caller sent more than %d bytes of attachments; ignored %d of them",
            MAX_BYTES,
            dropped,
        )
    return Attachments.of(values) if values else EMPTY
