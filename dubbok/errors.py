"""Every error dubbok raises, in one tree.

::

    DubbokError                      root; carries a gRPC status ``code``
    ├── ConfigurationError           bad input from code: URL, option, name (INVALID_ARGUMENT)
    │   ├── InvalidURLError          a discovery / registry URL that cannot be parsed
    │   ├── UnknownExtensionError    a load balancer, cluster or router name nobody registered
    │   ├── ServiceDefinitionError   a service or method the stub / servicer does not have
    │   ├── RuleValidationError      a rule document that does not validate  (dubbok.config)
    │   ├── InvalidKeyError          a config key outside the layout          (dubbok.config)
    │   └── ValueTooLargeError       a config value etcd would refuse          (dubbok.config)
    ├── BindError                    the provider could not listen on host:port
    ├── RegistryError                the registry (etcd) is unreachable or refused a request
    │   ├── RecordError              a registry record that cannot be read  (dubbok.registry)
    │   ├── ConflictError            a compare-and-swap write lost             (dubbok.config)
    │   └── NotFoundError            a config key or revision that does not exist
    ├── NoProviderError              no endpoint left to call (discovery or routing emptied it)
    └── RpcError                     a remote call failed; ``attempts`` lists each try
        ├── DeadlineExceededError    the call's deadline passed
        └── CircuitOpenError         a breaker refused the call without touching the network

Each message says what happened and what to do next. The service, method and endpoints involved
are attributes as well as text, so callers can act on them without parsing strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

__all__ = [
    "AttemptRecord",
    "BindError",
    "CircuitOpenError",
    "ConfigurationError",
    "DeadlineExceededError",
    "DubbokError",
    "InvalidURLError",
    "NoProviderError",
    "RegistryError",
    "RpcError",
    "ServiceDefinitionError",
    "UnknownExtensionError",
]


class DubbokError(Exception):
    """Root of every dubbok error. ``code`` is the gRPC status the error maps to."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigurationError(DubbokError):
    """A value given by code or configuration is not usable."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidURLError(ConfigurationError):
    """A discovery or registry URL that cannot be parsed."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"invalid URL {url!r}: {problem}. Expected one of "
            "'static://host:port[,host:port...]', 'dns:///name:port', "
            "'dns+srv:///_grpc._tcp.name', 'etcd://host:2379[,host:2379...]/?namespace=NAME'"
        )
        self.url = url
        self.problem = problem


class UnknownExtensionError(ConfigurationError):
    """A named extension (load balancer, cluster strategy, router, scheme) is not registered."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        super().__init__(
            f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}. "
            f"Check the spelling, or register yours under the 'dubbok.{kind}' entry point"
        )
        self.kind = kind
        self.name = name
        self.known = tuple(sorted(known))


class ServiceDefinitionError(ConfigurationError):
    """A service or method name that the generated stub or servicer does not define."""


class BindError(DubbokError):
    """The provider could not listen on the requested address."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"cannot listen on {address}: {reason}. Choose another port, pass port=0 to let "
            "the OS pick a free one, or stop the process that holds it"
        )
        self.address = address


class RegistryError(DubbokError):
    """The registry is unreachable or refused a request."""

    code = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try of a call: which endpoint, and the status it ended with."""

    endpoint: str
    code: grpc.StatusCode
    details: str

    def __str__(self) -> str:
        return f"{self.endpoint} → {self.code.name}: {self.details}"


class NoProviderError(DubbokError):
    """Nothing left to call: discovery found no endpoint, or routing removed them all."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, service: str, message: str, *, method: str = "") -> None:
        super().__init__(message)
        self.service = service
        self.method = method


class RpcError(DubbokError):
    """A remote call failed after the cluster strategy was done with it.

    ``attempts`` lists every endpoint tried with its status, in order; ``code`` and
    ``details`` are those of the last attempt. The grpc error is the ``__cause__``.
    """

    def __init__(
        self,
        service: str,
        method: str,
        code: grpc.StatusCode,
        details: str,
        attempts: Sequence[AttemptRecord] = (),
        *,
        hint: str = "",
    ) -> None:
        tried = "; ".join(str(a) for a in attempts) or "no attempt"
        text = f"{service}/{method} failed with {code.name}: {details} (tried: {tried})"
        if hint:
            text += f". {hint}"
        super().__init__(text, code=code)
        self.service = service
        self.method = method
        self.details = details
        self.attempts = tuple(attempts)


class DeadlineExceededError(RpcError):
    """The call's deadline passed before a reply arrived."""


class CircuitOpenError(RpcError):
    """A circuit breaker refused the call; no request was sent."""
