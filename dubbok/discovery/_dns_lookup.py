"""One DNS lookup: A/AAAA or SRV records in, a sorted endpoint tuple and a TTL out.

:func:`lookup` is called by the DNS watcher thread (and by nothing on the call path). It
talks to DNS only through a :data:`Query` function, so tests can feed it crafted messages;
:func:`resolver_query` builds the real one on a ``dns.resolver.Resolver``. A lookup either
returns a non-empty :class:`LookupResult` or raises :class:`LookupFailure` naming what went
wrong, so the caller can keep its last good set.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from ..endpoint import Endpoint

__all__ = [
    "AAAA",
    "SRV",
    "SRV_ZERO_WEIGHT",
    "A",
    "DnsTarget",
    "LookupFailure",
    "LookupResult",
    "Query",
    "State",
    "lookup",
    "resolver_query",
]

log = logging.getLogger("dubbok.discovery.dns")

A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
SRV = dns.rdatatype.SRV

State = Literal["ok", "empty", "nxdomain", "servfail", "timeout", "error"]
"""Outcome of a lookup. Every state but ``ok`` keeps the last good endpoint set."""

Query = Callable[[dns.name.Name, dns.rdatatype.RdataType], dns.message.QueryMessage]
"""Send one question, return the NOERROR response; raise :class:`LookupFailure` otherwise."""

SRV_ZERO_WEIGHT = 1
"""Weight given to an SRV record of weight 0.

RFC 2782 gives weight-0 records "a very small chance" of selection next to weighted ones,
while dubbok's balancers send no traffic at all to weight 0. Mapping 0 to 1 keeps such
records reachable, rarely chosen next to weighted peers, and evenly chosen when every
record has weight 0.
"""


@dataclass(frozen=True, slots=True)
class DnsTarget:
    """What to look up: ``name`` with ``port`` for A/AAAA, or SRV records when ``port`` is None."""

    name: dns.name.Name
    port: int | None
    families: tuple[dns.rdatatype.RdataType, ...] = (A, AAAA)

    @property
    def srv(self) -> bool:
        return self.port is None

    def __str__(self) -> str:
        text = self.name.to_text(omit_final_dot=True)
        return text if self.port is None else f"{text}:{self.port}"


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A good answer: at least one endpoint, and the smallest TTL among the records used."""

    endpoints: tuple[Endpoint, ...]
    ttl: float


class LookupFailure(Exception):
    """A lookup gave no usable answer; ``state`` says which kind of failure."""

    def __init__(self, state: State, detail: str) -> None:
        super().__init__(detail)
        self.state: State = state
        self.detail = detail


def lookup(target: DnsTarget, query: Query) -> LookupResult:
    """Resolve ``target`` to endpoints sorted by address, or raise :class:`LookupFailure`."""
    if target.port is None:
        return _lookup_srv(target, query)
    addresses, ttl = _addresses(target.name, target.families, query)
    if not addresses:
        kinds = "/".join(dns.rdatatype.to_text(t) for t in target.families)
        raise LookupFailure("empty", f"{target.name} has no {kinds} records")
    endpoints = [Endpoint(ip, target.port) for ip in addresses]
    return LookupResult(_sorted(endpoints), ttl)


def _lookup_srv(target: DnsTarget, query: Query) -> LookupResult:
    response = query(target.name, SRV)
    chain = response.resolve_chaining()
    if chain.answer is None or len(chain.answer) == 0:
        raise LookupFailure("empty", f"{target.name} has no SRV records")
    ttl = float(chain.minimum_ttl)
    glue = _glue(response, target.families)
    # RFC 2782: lowest priority first, then heaviest; the first record for an address wins.
    records = sorted(chain.answer, key=lambda r: (r.priority, -r.weight))
    resolved: dict[dns.name.Name, tuple[list[str], float]] = {}
    endpoints: dict[str, Endpoint] = {}
    for record in records:
        srv_target: dns.name.Name = record.target
        if srv_target == dns.name.root:
            continue  # "." means "no service at this name" (RFC 2782)
        if record.port == 0:
            log.debug("DNS %s: skipping SRV record %s with port 0", target, record)
            continue
        if srv_target not in resolved:
            resolved[srv_target] = glue.get(srv_target) or _target_addresses(
                srv_target, target.families, query
            )
        ips, target_ttl = resolved[srv_target]
        ttl = min(ttl, target_ttl)
        tags = {
            "dns.target": srv_target.to_text(omit_final_dot=True),
            "dns.priority": str(record.priority),
        }
        for ip in ips:
            ep = Endpoint(ip, record.port, weight=record.weight or SRV_ZERO_WEIGHT, tags=tags)
            endpoints.setdefault(ep.address, ep)
    if not endpoints:
        raise LookupFailure("empty", f"no SRV target of {target.name} has an address")
    return LookupResult(_sorted(endpoints.values()), ttl)


def _target_addresses(
    name: dns.name.Name, families: Sequence[dns.rdatatype.RdataType], query: Query
) -> tuple[list[str], float]:
    try:
        return _addresses(name, families, query)
    except LookupFailure as exc:
        if exc.state != "nxdomain":
            raise
        # The SRV answer may be a little older than the pod records: a target that no
        # longer exists is dropped; a target we could not ask about fails the lookup.
        log.debug("DNS: SRV target %s does not exist; skipping it", name)
        return [], float("inf")


def _addresses(
    name: dns.name.Name, families: Sequence[dns.rdatatype.RdataType], query: Query
) -> tuple[list[str], float]:
    ips: list[str] = []
    ttl = float("inf")
    for rdtype in families:
        chain = query(name, rdtype).resolve_chaining()
        if chain.answer is not None and len(chain.answer) > 0:
            ips.extend(r.address for r in chain.answer)
            ttl = min(ttl, float(chain.minimum_ttl))
    return ips, ttl


def _glue(
    response: dns.message.Message, families: Sequence[dns.rdatatype.RdataType]
) -> dict[dns.name.Name, tuple[list[str], float]]:
    """Addresses of SRV targets that the server put in the additional section."""
    found: dict[dns.name.Name, tuple[list[str], float]] = {}
    for rrset in response.additional:
        if rrset.rdtype not in families or rrset.rdclass != dns.rdataclass.IN:
            continue
        ips, ttl = found.get(rrset.name, ([], float("inf")))
        found[rrset.name] = ([*ips, *(r.address for r in rrset)], min(ttl, float(rrset.ttl)))
    return found


def _sort_key(ep: Endpoint) -> tuple[int, int, int]:
    ip = ipaddress.ip_address(ep.host)
    return ip.version, int(ip), ep.port


def _sorted(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return tuple(sorted(endpoints, key=_sort_key))


def resolver_query(resolver: dns.resolver.Resolver, *, search: bool, timeout: float) -> Query:
    """A :data:`Query` on ``resolver``; each question may take up to ``timeout`` seconds."""

    def query(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.QueryMessage:
        what = f"{dns.rdatatype.to_text(rdtype)} {name}"
        try:
            answer = resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=search, lifetime=timeout
            )
        except dns.resolver.NXDOMAIN:
            raise LookupFailure("nxdomain", f"{name} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoNameservers as exc:
            state: State = "servfail" if _any_servfail(exc) else "error"
            raise LookupFailure(state, f"no nameserver answered {what}: {exc}") from None
        except dns.exception.Timeout:
            raise LookupFailure("timeout", f"no answer to {what} within {timeout:g}s") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise LookupFailure("error", f"{what} failed: {exc}") from None
        response = answer.response
        assert isinstance(response, dns.message.QueryMessage)
        return response

    return query


def _any_servfail(exc: dns.resolver.NoNameservers) -> bool:
    for error in exc.kwargs.get("errors", ()):
        response = error[4] if len(error) > 4 else None
        if isinstance(response, dns.message.Message) and response.rcode() == dns.rcode.SERVFAIL:
            return True
    return False
