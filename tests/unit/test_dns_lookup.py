"""From DNS answers to endpoints: crafted responses through a fake query function, no sockets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from dubbok.discovery._dns_lookup import (
    AAAA,
    SRV_ZERO_WEIGHT,
    A,
    DnsTarget,
    LookupFailure,
    lookup,
)
from dubbok.endpoint import Endpoint

NAME = "greeter.shop.svc.cluster.local."
SRV_NAME = f"_grpc._tcp.{NAME}"

Records = Mapping[tuple[str, str], tuple[int, Sequence[str]]]


class FakeDns:
    """Answers from a table of (name, type) → (ttl, rdata texts); records every question."""

    def __init__(
        self,
        records: Records,
        *,
        glue: Records | None = None,
        failures: Mapping[str, LookupFailure] | None = None,
    ) -> None:
        self.records = records
        self.glue = glue or {}
        self.failures = failures or {}
        self.asked: list[tuple[str, str]] = []

    def __call__(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.QueryMessage:
        text, kind = name.to_text(), dns.rdatatype.to_text(rdtype)
        self.asked.append((text, kind))
        if text in self.failures:
            raise self.failures[text]
        if not any(n == text for n, _ in self.records):
            raise LookupFailure("nxdomain", f"{text} does not exist")
        query = dns.message.make_query(name, rdtype)
        response = dns.message.make_response(query)
        assert isinstance(response, dns.message.QueryMessage)
        if (text, kind) in self.records:
            response.answer.append(_rrset(text, kind, *self.records[text, kind]))
        for (glue_name, glue_kind), (ttl, texts) in self.glue.items():
            response.additional.append(_rrset(glue_name, glue_kind, ttl, texts))
        return _over_the_wire(response)


def _over_the_wire(response: dns.message.Message) -> dns.message.QueryMessage:
    # As a client sees it: parsing also builds the section indexes that lookups search.
    parsed = dns.message.from_wire(response.to_wire())
    assert isinstance(parsed, dns.message.QueryMessage)
    return parsed


def _rrset(name: str, kind: str, ttl: int, texts: Sequence[str]) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(name, ttl, dns.rdataclass.IN, kind, list(texts))


def a_target(
    port: int = 50051, families: tuple[dns.rdatatype.RdataType, ...] = (A, AAAA)
) -> DnsTarget:
    return DnsTarget(dns.name.from_text(NAME), port, families)


SRV_TARGET = DnsTarget(dns.name.from_text(SRV_NAME), None)


def test_a_and_aaaa_records_become_sorted_endpoints_with_the_url_port() -> None:
    fake = FakeDns(
        {
            (NAME, "A"): (5, ["127.0.0.10", "127.0.0.2", "127.0.0.3"]),
            (NAME, "AAAA"): (3, ["::1"]),
        }
    )
    result = lookup(a_target(), fake)
    assert [e.address for e in result.endpoints] == [
        "127.0.0.2:50051",
        "127.0.0.3:50051",
        "127.0.0.10:50051",  # numeric order, not text order
        "[::1]:50051",
    ]
    assert result.ttl == 3  # the smallest TTL among the records used
    assert all(e.weight == Endpoint("h", 1).weight for e in result.endpoints)


def test_a_name_without_aaaa_is_fine() -> None:
    fake = FakeDns({(NAME, "A"): (5, ["127.0.0.2"])})
    result = lookup(a_target(), fake)
    assert [e.address for e in result.endpoints] == ["127.0.0.2:50051"]
    assert result.ttl == 5


def test_family_limits_the_questions() -> None:
    fake = FakeDns({(NAME, "A"): (5, ["127.0.0.2"]), (NAME, "AAAA"): (5, ["::1"])})
    result = lookup(a_target(families=(A,)), fake)
    assert [e.host for e in result.endpoints] == ["127.0.0.2"]
    assert fake.asked == [(NAME, "A")]


def test_a_name_without_addresses_is_an_empty_failure() -> None:
    fake = FakeDns({(NAME, "TXT"): (5, ['"hello"'])})
    with pytest.raises(LookupFailure) as info:
        lookup(a_target(), fake)
    assert info.value.state == "empty"
    assert "has no A/AAAA records" in info.value.detail


def test_nxdomain_stops_at_the_first_question() -> None:
    fake = FakeDns({})
    with pytest.raises(LookupFailure) as info:
        lookup(a_target(), fake)
    assert info.value.state == "nxdomain"
    assert fake.asked == [(NAME, "A")]


def test_a_cname_chain_counts_toward_the_ttl() -> None:
    real = "greeter-v2.shop.svc.cluster.local."

    def query(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.QueryMessage:
        response = dns.message.make_response(dns.message.make_query(name, rdtype))
        assert isinstance(response, dns.message.QueryMessage)
        if rdtype == A:
            response.answer.append(_rrset(NAME, "CNAME", 2, [real]))
            response.answer.append(_rrset(real, "A", 30, ["127.0.0.2"]))
        return _over_the_wire(response)

    result = lookup(a_target(), query)
    assert [e.host for e in result.endpoints] == ["127.0.0.2"]
    assert result.ttl == 2


def test_srv_records_carry_ports_weights_and_use_glue() -> None:
    fake = FakeDns(
        {
            (SRV_NAME, "SRV"): (
                10,
                [
                    f"0 50 50051 pod-a.{NAME}",
                    f"0 0 50052 pod-b.{NAME}",
                    f"1 10 50053 pod-c.{NAME}",
                ],
            ),
            (f"pod-c.{NAME}", "A"): (4, ["127.0.0.4"]),
        },
        glue={
            (f"pod-a.{NAME}", "A"): (7, ["127.0.0.2"]),
            (f"pod-b.{NAME}", "A"): (8, ["127.0.0.3"]),
        },
    )
    result = lookup(SRV_TARGET, fake)
    summary = [(e.address, e.weight, dict(e.tags)) for e in result.endpoints]
    assert summary == [
        ("127.0.0.2:50051", 50, {"dns.target": f"pod-a.{NAME}"[:-1], "dns.priority": "0"}),
        (
            "127.0.0.3:50052",
            SRV_ZERO_WEIGHT,
            {"dns.target": f"pod-b.{NAME}"[:-1], "dns.priority": "0"},
        ),
        ("127.0.0.4:50053", 10, {"dns.target": f"pod-c.{NAME}"[:-1], "dns.priority": "1"}),
    ]
    assert SRV_ZERO_WEIGHT > 0  # weight 0 would get no traffic at all
    assert result.ttl == 4
    # Glue saved the questions for pod-a and pod-b; only pod-c was asked about.
    assert fake.asked == [(SRV_NAME, "SRV"), (f"pod-c.{NAME}", "A"), (f"pod-c.{NAME}", "AAAA")]


def test_srv_skips_gone_targets_port_zero_and_the_root_target() -> None:
    fake = FakeDns(
        {
            (SRV_NAME, "SRV"): (
                5,
                [
                    f"0 10 50051 pod-a.{NAME}",
                    f"0 10 50051 gone.{NAME}",  # pod deleted after the SRV answer was cached
                    f"0 10 0 pod-a.{NAME}",
                    "0 10 50051 .",
                ],
            ),
            (f"pod-a.{NAME}", "A"): (5, ["127.0.0.2"]),
        }
    )
    result = lookup(SRV_TARGET, fake)
    assert [e.address for e in result.endpoints] == ["127.0.0.2:50051"]


def test_srv_keeps_the_preferred_record_for_a_shared_address() -> None:
    fake = FakeDns(
        {
            (SRV_NAME, "SRV"): (5, [f"1 90 50051 b.{NAME}", f"0 10 50051 a.{NAME}"]),
            (f"a.{NAME}", "A"): (5, ["127.0.0.2"]),
            (f"b.{NAME}", "A"): (5, ["127.0.0.2"]),
        }
    )
    (only,) = lookup(SRV_TARGET, fake).endpoints
    assert (only.weight, only.tags["dns.priority"]) == (10, "0")


def test_a_target_that_cannot_be_asked_about_fails_the_whole_lookup() -> None:
    # Dropping the pod would shrink the set because of a DNS hiccup: the lookup fails instead.
    fake = FakeDns(
        {
            (SRV_NAME, "SRV"): (5, [f"0 10 50051 pod-a.{NAME}", f"0 10 50051 pod-b.{NAME}"]),
            (f"pod-a.{NAME}", "A"): (5, ["127.0.0.2"]),
        },
        failures={f"pod-b.{NAME}": LookupFailure("servfail", "SERVFAIL")},
    )
    with pytest.raises(LookupFailure) as info:
        lookup(SRV_TARGET, fake)
    assert info.value.state == "servfail"


@pytest.mark.parametrize(
    "records",
    [
        {(SRV_NAME, "TXT"): (5, ['"x"'])},  # the name exists, no SRV
        {(SRV_NAME, "SRV"): (5, [f"0 10 50051 gone.{NAME}"])},  # no target resolves
    ],
)
def test_srv_without_usable_records_is_empty(records: Records) -> None:
    with pytest.raises(LookupFailure) as info:
        lookup(SRV_TARGET, FakeDns(records))
    assert info.value.state == "empty"
