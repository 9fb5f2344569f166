"""Disabled endpoints: addresses a governance rule took out of rotation.

``DisabledRouter(["10.0.0.9:50051", "10.0.0.12"])`` never lets the first address, nor any
port of the second host, be picked. It depends on the snapshot only: applied once per
snapshot, before every call-dependent router.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from ..endpoint import Endpoint, format_address, split_address
from ..errors import ConfigurationError
from ..invocation import Invocation
from .step import FixedStep, mask_of, route_prepared

__all__ = ["AddressSet", "DisabledRouter"]


class AddressSet:
    """Endpoint addresses (``host:port``) and hosts (any port), as rules write them.

    An entry with a port is an address (IPv6 bracketed: ``[::1]:50051``); an entry without
    one is a host (``10.0.0.7``, ``::1``, ``pod-3.svc``).
    """

    __slots__ = ("addresses", "entries", "hosts")

    def __init__(self, entries: Iterable[str], *, owner: str) -> None:
        addresses: set[str] = set()
        hosts: set[str] = set()
        normalized: list[str] = []
        for entry in entries:
            if not isinstance(entry, str) or not entry.strip():
                raise ConfigurationError(
                    f"{owner}: an address must be 'host:port' or a host, got {entry!r}"
                )
            text = entry.strip()
            if _is_host(text):
                hosts.add(text.strip("[]"))
                normalized.append(text)
            else:
                host, port = split_address(text)  # raises ConfigurationError naming the entry
                address = format_address(host, port)
                addresses.add(address)
                normalized.append(address)
        self.addresses = frozenset(addresses)
        self.hosts = frozenset(hosts)
        self.entries = tuple(normalized)

    def __contains__(self, endpoint: object) -> bool:
        if not isinstance(endpoint, Endpoint):
            return False
        return endpoint.address in self.addresses or endpoint.host in self.hosts

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __str__(self) -> str:
        shown = ", ".join(self.entries[:5])
        return shown + (f", ... ({len(self.entries)} in all)" if len(self.entries) > 5 else "")


def _is_host(text: str) -> bool:
    if text.startswith("["):
        return text.endswith("]")
    if text.count(":") == 0:
        return True
    if text.count(":") == 1:
        return False
    try:  # several colons and no brackets: a bare IPv6 literal, or a mistake
        ipaddress.IPv6Address(text)
    except ValueError:
        raise ConfigurationError(
            f"bad address {text!r}: write IPv6 addresses as '[::1]:50051', or a bare host"
        ) from None
    return True


class DisabledRouter:
    """Removes the endpoints ``addresses`` names (see :class:`AddressSet`)."""

    __slots__ = ("disabled",)

    name = "disabled"

    def __init__(self, addresses: Iterable[str]) -> None:
        if isinstance(addresses, str):
            raise ConfigurationError("disabled router: pass a list of addresses, not one string")
        self.disabled = AddressSet(addresses, owner="disabled router")

    def prepare(self, endpoints: Sequence[Endpoint]) -> FixedStep:
        snapshot = tuple(endpoints)
        disabled = self.disabled

        def describe(mask: int) -> str:
            return f"every endpoint left is disabled by rule: {disabled}"

        return FixedStep(mask_of(snapshot, lambda ep: ep not in disabled), describe)

    def route(self, endpoints: Sequence[Endpoint], invocation: Invocation) -> Sequence[Endpoint]:
        return route_prepared(self, endpoints, invocation)
