"""What one call is: :class:`Invocation`, and its :class:`Deadline`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Clock", "Deadline", "Invocation", "Metadata"]

Metadata = Sequence[tuple[str, str | bytes]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True, init=False)
class Deadline:
    """An absolute point on a monotonic clock by which a call must end."""

    at: float

    def __init__(self, at: float) -> None:
        # Made on every call: set the slot directly (a frozen dataclass's own __init__ goes
        # through object.__setattr__, several times slower).
        _set_at(self, at)

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds)

    def time_remaining(self, clock: Clock = time.monotonic) -> float:
        return self.at - clock()

    def expired(self, clock: Clock = time.monotonic) -> bool:
        return clock() >= self.at


@dataclass(frozen=True, slots=True, init=False)
class Invocation:
    """One logical call, as the core sees it: no channel, no grpc objects.

    ``request`` is the request message for unary-request methods and ``None`` for
    client-streaming ones. ``metadata`` is what the caller passed.
    """

    service: str
    method: str
    request: object
    metadata: Metadata
    deadline: Deadline | None
    idempotent: bool = False

    def __init__(
        self,
        service: str,
        method: str,
        request: object,
        metadata: Metadata,
        deadline: Deadline | None,
        idempotent: bool = False,
    ) -> None:
        # As Deadline's: one per call, slots set directly.
        _set_service(self, service)
        _set_method(self, method)
        _set_request(self, request)
        _set_metadata(self, metadata)
        _set_deadline(self, deadline)
        _set_idempotent(self, idempotent)

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    def header(self, name: str) -> str | None:
        """The first value of a metadata key (lower-case), as text."""
        for key, value in self.metadata:
            if key == name:
                return value.decode() if isinstance(value, bytes) else value
        return None


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    setter: Callable[[object, object], None] = cls.__dict__[name].__set__
    return setter


_set_at = _slot_setter(Deadline, "at")
(
    _set_service,
    _set_method,
    _set_request,
    _set_metadata,
    _set_deadline,
    _set_idempotent,
) = (
    _slot_setter(Invocation, name)
    for name in ("service", "method", "request", "metadata", "deadline", "idempotent")
)
