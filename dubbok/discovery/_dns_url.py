"""Reading ``dns:///`` and ``dns+srv:///`` URLs into a :class:`DnsTarget` and :class:`DnsOptions`.

Called by :meth:`DnsDiscovery.from_url <dubbok.discovery.dns.DnsDiscovery.from_url>` when an
application configures discovery; every problem raises
:class:`~dubbok.errors.InvalidURLError` saying what is wrong and how to write it instead.
The parameters and their defaults are documented in :mod:`dubbok.discovery.dns`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

import dns.exception
import dns.name
import dns.rdatatype

from ..errors import ConfigurationError, InvalidURLError
from ..url import ParsedURL
from ._dns_lookup import AAAA, A, DnsTarget
from ._dns_schedule import ResolveSchedule

__all__ = [
    "DEFAULT_MAX_TTL",
    "DEFAULT_MIN_TTL",
    "DEFAULT_TIMEOUT",
    "DnsOptions",
    "parse_dns_url",
]

DEFAULT_MIN_TTL = 1.0
DEFAULT_MAX_TTL = 30.0
DEFAULT_TIMEOUT = 2.0

_FAMILIES: dict[str, tuple[dns.rdatatype.RdataType, ...]] = {
    "any": (A, AAAA),
    "ipv4": (A,),
    "ipv6": (AAAA,),
}
_PARAMS = ("nameserver", "min_ttl", "max_ttl", "timeout", "family")
_LABELS = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")


@dataclass(frozen=True, slots=True)
class DnsOptions:
    """How to ask: nameservers (empty: the system's configuration), TTL clamp and timeout."""

    nameservers: tuple[tuple[str, int], ...] = ()
    min_ttl: float = DEFAULT_MIN_TTL
    max_ttl: float = DEFAULT_MAX_TTL
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        ResolveSchedule(self.min_ttl, self.max_ttl)  # validates the clamp
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, got {self.timeout}"
            )
        for host, port in self.nameservers:
            if not _is_ip(host):
                raise ConfigurationError(f"nameserver {host!r} is not an IP address")
            if not 0 < port < 65536:
                raise ConfigurationError(f"nameserver {host}: port {port} is not in 1..65535")


def parse_dns_url(url: ParsedURL) -> tuple[DnsTarget, DnsOptions]:
    """Read a ``dns`` / ``dns+srv`` URL; raise :class:`InvalidURLError` saying what is wrong."""

    def bad(problem: str) -> InvalidURLError:
        return InvalidURLError(url.redacted(), problem)

    if url.scheme not in ("dns", "dns+srv"):
        raise bad(f"scheme {url.scheme!r} is not 'dns' or 'dns+srv'")
    unknown = sorted(set(url.params) - set(_PARAMS))
    if unknown:
        raise bad(f"unknown parameter {', '.join(unknown)} (known: {', '.join(_PARAMS)})")
    srv = url.scheme == "dns+srv"
    text = url.path.strip()
    if not text:
        example = "dns+srv:///_grpc._tcp.NAME" if srv else "dns:///NAME:PORT"
        raise bad(f"no DNS name in the path; write {example}")
    port: int | None = None
    if srv:
        if ":" in text:
            raise bad(
                f"{text!r}: dns+srv takes the ports from the SRV records; drop the ':port' "
                "or use dns:///NAME:PORT for A/AAAA records"
            )
    else:
        text, sep, port_text = text.rpartition(":")
        if not sep:
            raise bad(
                f"{url.path!r} has no port; write dns:///NAME:PORT, or dns+srv:///NAME to take "
                "ports from SRV records"
            )
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise bad(f"port {port_text!r} is not a number in 1..65535")
        port = int(port_text)
    name = _parse_name(text, bad)
    families = _family(url, bad)
    nameservers = _nameservers(url, bad)
    min_ttl = _seconds(url, "min_ttl", DEFAULT_MIN_TTL, bad)
    max_ttl = _seconds(url, "max_ttl", DEFAULT_MAX_TTL, bad)
    if max_ttl < min_ttl:
        raise bad(f"max_ttl ({max_ttl:g}) is below min_ttl ({min_ttl:g}); raise max_ttl")
    timeout = _seconds(url, "timeout", DEFAULT_TIMEOUT, bad)
    options = DnsOptions(nameservers, min_ttl, max_ttl, timeout)
    return DnsTarget(name, port, families), options


class _Bad(Protocol):
    def __call__(self, problem: str) -> InvalidURLError: ...


def _parse_name(text: str, bad: _Bad) -> dns.name.Name:
    if ":" in text or _is_ip(text):
        raise bad(f"{text!r} is an IP address, not a DNS name; use static://ADDRESS:PORT")
    if not _LABELS.match(text):
        raise bad(f"{text!r} is not a DNS name (letters, digits, '-', '_' in dot-separated labels)")
    try:
        return dns.name.from_text(text, origin=None)
    except dns.exception.DNSException as exc:
        raise bad(f"{text!r} is not a valid DNS name: {exc}") from None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _nameservers(url: ParsedURL, bad: _Bad) -> tuple[tuple[str, int], ...]:
    # ParsedURL.params keeps one value per name; nameserver may repeat, so read the raw query.
    query = url.raw.partition("?")[2]
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "nameserver"]
    entries = [*url.hosts, *(e.strip() for v in values for e in v.split(","))]
    servers: list[tuple[str, int]] = []
    for entry in entries:
        if not entry:
            raise bad("empty nameserver; write nameserver=IP or nameserver=IP:PORT")
        servers.append(_nameserver(entry, bad))
    return tuple(servers)


def _nameserver(entry: str, bad: _Bad) -> tuple[str, int]:
    host, port_text = entry, "53"
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise bad(f"nameserver {entry!r}: write IPv6 servers as [::1]:53")
        port_text = rest[1:] or "53"
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    if not _is_ip(host):
        raise bad(
            f"nameserver {entry!r} is not an IP address; write nameserver=IP or IP:PORT "
            "(a nameserver cannot be looked up by name)"
        )
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"nameserver {entry!r}: port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


def _seconds(url: ParsedURL, name: str, default: float, bad: _Bad) -> float:
    text = url.param(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise bad(f"{name}={text!r} is not a positive number of seconds (e.g. {name}={default:g})")
    return value


def _family(url: ParsedURL, bad: _Bad) -> tuple[dns.rdatatype.RdataType, ...]:
    text = url.param("family", "any") or "any"
    if text not in _FAMILIES:
        raise bad(f"family={text!r}; choose one of {', '.join(_FAMILIES)}")
    return _FAMILIES[text]
