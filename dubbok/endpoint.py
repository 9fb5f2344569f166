"""Endpoints: what discovery finds and what a balancer picks.

An :class:`Endpoint` is one provider instance of one service: an address plus what the
registry says about it. It is frozen and hashable — directories are diffed by address, and
snapshots are shared between threads without copying.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import ConfigurationError

__all__ = ["DEFAULT_WEIGHT", "Endpoint", "format_address", "split_address"]

DEFAULT_WEIGHT = 100

_EMPTY: Mapping[str, str] = MappingProxyType({})


def split_address(address: str) -> tuple[str, int]:
    """``"10.0.0.1:50051"`` → ``("10.0.0.1", 50051)``; IPv6 as ``"[::1]:50051"``.

    Raises :class:`ConfigurationError` naming what is wrong.
    """
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigurationError(
                f"bad address {address!r}: write IPv6 addresses as '[::1]:50051'"
            )
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigurationError(f"bad address {address!r}: expected 'host:port'")
        if ":" in host:
            raise ConfigurationError(
                f"bad address {address!r}: write IPv6 addresses as '[{host}]:{port_text}'"
            )
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(
            f"bad address {address!r}: port {port_text!r} is not a number"
        ) from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"bad address {address!r}: port {port} is not in 1..65535")
    return host, port


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`split_address` (brackets IPv6 literals)."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One provider instance of a service.

    ``weight`` is relative (Dubbo's default is 100); ``started_at`` is a UNIX time used for
    warm-up; ``tags`` carry routing labels such as ``{"zone": "a", "track": "canary"}``;
    ``methods`` maps a method name to options the provider advertises (``idempotent``,
    ``timeout``).
    """

    host: str
    port: int
    weight: int = DEFAULT_WEIGHT
    version: str = ""
    group: str = ""
    app: str = ""
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    methods: Mapping[str, Mapping[str, object]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    started_at: float = 0.0
    address: str = field(init=False, compare=False, hash=False, repr=False)
    """``host:port`` (IPv6 bracketed) — the endpoint's identity within a service."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigurationError("an endpoint needs a host")
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"endpoint {self.host}:{self.port}: port must be in 1..65535")
        if self.weight < 0:
            raise ConfigurationError(
                f"endpoint {self.host}:{self.port}: weight must be >= 0, got {self.weight}"
            )
        if not isinstance(self.tags, MappingProxyType):
            object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        if not isinstance(self.methods, MappingProxyType):
            object.__setattr__(self, "methods", MappingProxyType(dict(self.methods)))
        object.__setattr__(self, "address", format_address(self.host, self.port))

    @classmethod
    def parse(cls, address: str, **attrs: object) -> Endpoint:
        """Build an endpoint from ``"host:port"`` plus any other attribute."""
        host, port = split_address(address)
        return cls(host, port, **attrs)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.address


def unique_by_address(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """Keep the last record per address, in first-seen order."""
    seen: dict[str, Endpoint] = {}
    for ep in endpoints:
        seen[ep.address] = ep
    return tuple(seen.values())
