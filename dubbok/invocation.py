"""What one call is: :class:`Invocation`, and its :class:`Deadline`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Clock", "Deadline", "Invocation", "Metadata"]

Metadata = Sequence[tuple[str, str | bytes]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point on a monotonic clock by which a call must end."""

    at: float

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds)

    def time_remaining(self, clock: Clock = time.monotonic) -> float:
        return self.at - clock()

    def expired(self, clock: Clock = time.monotonic) -> bool:
        return clock() >= self.at


@dataclass(frozen=True, slots=True)
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

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    def header(self, name: str) -> str | None:
        """The first value of a metadata key (lower-case), as text."""
        for key, value in self.metadata:
            if key == name:
                return value.decode() if isinstance(value, bytes) else value
        return None
