"""The provider-side decorators: ``@dubbok.service`` and ``@dubbok.method``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .endpoint import DEFAULT_WEIGHT
from .errors import ConfigurationError

__all__ = [
    "MethodOptions",
    "ServiceOptions",
    "method",
    "method_options",
    "service",
    "service_options",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_SERVICE_ATTR = "__dubbok_service__"
_METHOD_ATTR = "__dubbok_method__"


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """How a provider exports a service: name (None = the proto's), version, group, weight, tags."""

    name: str | None = None
    version: str = ""
    group: str = ""
    weight: int = DEFAULT_WEIGHT
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.weight, int) or self.weight < 0:
            raise ConfigurationError(f"service weight must be an int >= 0, got {self.weight!r}")
        for k, v in self.tags.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigurationError(f"service tags must map str to str, got {k!r}: {v!r}")


@dataclass(frozen=True, slots=True)
class MethodOptions:
    """Per-method call options. ``None`` means "not set here; use the next level"."""

    timeout: float | None = None
    idempotent: bool | None = None
    retries: int | None = None
    # Provider-side limits (not advertised): QPS token bucket, max concurrency, adaptive.
    qps: float | None = None
    max_concurrency: int | None = None
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigurationError(f"method timeout must be > 0 seconds, got {self.timeout!r}")
        if self.retries is not None and (not isinstance(self.retries, int) or self.retries < 0):
            raise ConfigurationError(f"method retries must be an int >= 0, got {self.retries!r}")

    def as_record(self) -> dict[str, object]:
        """The options worth advertising in a registry record."""
        out: dict[str, object] = {}
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.idempotent is not None:
            out["idempotent"] = self.idempotent
        if self.retries is not None:
            out["retries"] = self.retries
        return out


@overload
def service(cls: type[T], /) -> type[T]: ...


@overload
def service(
    name: str | None = None,
    /,
    *,
    version: str = "",
    group: str = "",
    weight: int = DEFAULT_WEIGHT,
    tags: Mapping[str, str] | None = None,
) -> Callable[[type[T]], type[T]]: ...


def service(
    name: Any = None,
    /,
    *,
    version: str = "",
    group: str = "",
    weight: int = DEFAULT_WEIGHT,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """Mark a generated-servicer subclass as a dubbok service.

    ``name`` is the full proto service name (``"helloworld.Greeter"``); when omitted it is read
    from the generated code. Version, group, weight and tags are published to the registry and
    used by consumers' routing and balancing.
    """
    if isinstance(name, type):
        setattr(name, _SERVICE_ATTR, ServiceOptions())
        return name
    opts = ServiceOptions(name, version, group, weight, dict(tags or {}))

    def decorate(cls: type[T]) -> type[T]:
        setattr(cls, _SERVICE_ATTR, opts)
        return cls

    return decorate


def method(
    *,
    timeout: float | None = None,
    idempotent: bool | None = None,
    retries: int | None = None,
    qps: float | None = None,
    max_concurrency: int | None = None,
    adaptive: bool = False,
) -> Callable[[F], F]:
    """Options for one handler.

    ``timeout``, ``idempotent`` and ``retries`` are advertised to consumers through the
    registry; ``idempotent=True`` lets them retry the method after timeouts and server errors,
    not only when the request certainly never left. ``qps``, ``max_concurrency`` (Dubbo's
    ``executes``) and ``adaptive`` (a latency-driven concurrency limit) protect the provider:
    calls over a limit are refused with RESOURCE_EXHAUSTED before the handler runs, and
    consumers retry them on another endpoint.
    """
    opts = MethodOptions(timeout, idempotent, retries, qps, max_concurrency, adaptive)

    def decorate(fn: F) -> F:
        setattr(fn, _METHOD_ATTR, opts)
        return fn

    return decorate


def service_options(servicer: object) -> ServiceOptions:
    opts = getattr(type(servicer), _SERVICE_ATTR, None)
    return opts if isinstance(opts, ServiceOptions) else ServiceOptions()


def method_options(servicer: object, name: str) -> MethodOptions | None:
    fn = getattr(type(servicer), name, None)
    opts = getattr(fn, _METHOD_ATTR, None)
    return opts if isinstance(opts, MethodOptions) else None
