"""Degradation: answers given instead of (or after) a failed remote call.

Two sources, consulted after the cluster strategy has given up or a breaker refused:

* **Mock rules** (Dubbo's ``mock=force:`` / ``mock=fail:``), switchable at runtime:
  ``force`` never calls the remote — it returns the rule's value or raises its status;
  ``fail`` calls, and on a counted failure (never a business error) returns the value.
  Values are JSON mapped onto the method's response message and validated when the rule is
  loaded, so a value that does not fit is refused with a message naming the field.
* **Fallbacks in code**: a function ``(request, error) -> response`` (sync, or ``async`` for
  ``dubbok.aio``) registered for a reference's method with :func:`fallback`.

A degraded reply is visible: the observer gets a ``fallback`` event, and ``with_call``
returns a :class:`DegradedCall` whose trailing metadata carries ``x-dubbok-degraded``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from .errors import ConfigurationError
from .stub import MethodInfo

__all__ = ["DEGRADED_HEADER", "DegradeMode", "DegradeRule", "DegradedCall", "FallbackFunc"]

DEGRADED_HEADER = "x-dubbok-degraded"

FallbackFunc = Callable[[Any, BaseException], Any]
"""``(request, error) -> response``; for ``dubbok.aio`` it may be ``async``."""


class DegradeMode(enum.Enum):
    FORCE = "force"
    FAIL = "fail"


def response_class(info: MethodInfo) -> type[Message] | None:
    deser = info.response_deserializer
    owner = getattr(deser, "__self__", None)
    return owner if isinstance(owner, type) and issubclass(owner, Message) else None


def _status(name: object, where: str) -> grpc.StatusCode:
    if isinstance(name, grpc.StatusCode):
        return name
    if isinstance(name, str):
        try:
            return grpc.StatusCode[name.strip().upper()]
        except KeyError:
            pass
    known = ", ".join(c.name for c in grpc.StatusCode if c is not grpc.StatusCode.OK)
    raise ConfigurationError(f"{where}.throw: {name!r} is not a gRPC status; use one of {known}")


@dataclass(frozen=True, slots=True)
class DegradeRule:
    """A validated mock rule for one method."""

    method: str
    mode: DegradeMode
    value: Message | None = None
    status: grpc.StatusCode | None = None
    message: str = ""

    @classmethod
    def parse(cls, info: MethodInfo, spec: Mapping[str, Any]) -> DegradeRule:
        """Validate ``{mode: force|fail, return: {...}}`` or ``{mode, throw: STATUS}``."""
        where = f"degrade.{info.name}"
        if not isinstance(spec, Mapping):
            raise ConfigurationError(
                f"{where} must be a mapping like {{mode: force, return: {{}}}}"
            )
        unknown = set(spec) - {"mode", "return", "throw", "message"}
        if unknown:
            raise ConfigurationError(
                f"{where} has unknown keys {sorted(unknown)}; known: mode, return, throw, message"
            )
        try:
            mode = DegradeMode(str(spec.get("mode", "")).lower())
        except ValueError:
            raise ConfigurationError(
                f"{where}.mode must be 'force' or 'fail', got {spec.get('mode')!r}"
            ) from None
        if ("return" in spec) == ("throw" in spec):
            raise ConfigurationError(f"{where} needs exactly one of 'return' (a value) or 'throw'")
        message = str(spec.get("message", "degraded"))
        if "throw" in spec:
            status = _status(spec["throw"], where)
            return cls(info.name, mode, None, status, message)
        if info.kind.response_streaming:
            raise ConfigurationError(
                f"{where}: a streaming method cannot return a mock value; use throw"
            )
        resp_cls = response_class(info)
        if resp_cls is None:
            raise ConfigurationError(f"{where}: cannot find the response message type")
        value = spec["return"]
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"{where}.return must be a JSON object for {resp_cls.DESCRIPTOR.full_name}"
            )
        try:
            msg = json_format.ParseDict(dict(value), resp_cls())
        except json_format.ParseError as exc:
            raise ConfigurationError(
                f"{where}.return does not fit {resp_cls.DESCRIPTOR.full_name}: {exc}"
            ) from None
        return cls(info.name, mode, msg, None, message)

    def answer(self) -> Any:
        """A fresh copy of the value (callers may mutate what they get)."""
        assert self.value is not None
        copy = type(self.value)()
        copy.CopyFrom(self.value)
        return copy


class DegradedCall:
    """What ``with_call`` returns in place of a grpc call when the reply was degraded."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.degraded = True

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    def details(self) -> str:
        return self.reason

    def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((DEGRADED_HEADER, self.reason),)

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False
