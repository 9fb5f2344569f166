"""dns:/// and dns+srv:/// URLs: what they mean, and clear errors for what they cannot mean."""

from __future__ import annotations

import threading

import dns.name
import dns.rdatatype
import pytest

from dubbok.discovery import Discovery, DiscoveryOptions, create_discovery
from dubbok.discovery._dns_lookup import AAAA, A
from dubbok.discovery.dns import (
    DEFAULT_MAX_TTL,
    DEFAULT_MIN_TTL,
    DEFAULT_TIMEOUT,
    DnsDiscovery,
    DnsOptions,
    DnsTarget,
    parse_dns_url,
)
from dubbok.errors import ConfigurationError, InvalidURLError
from dubbok.url import parse_url

NAME = "greeter.shop.svc.cluster.local"


def parse(url: str) -> tuple[DnsTarget, DnsOptions]:
    return parse_dns_url(parse_url(url))


def test_a_records_url_with_defaults() -> None:
    target, options = parse(f"dns:///{NAME}:50051")
    assert target == _target(NAME, 50051)
    assert str(target) == f"{NAME}:50051"
    assert options == DnsOptions()
    assert (options.min_ttl, options.max_ttl, options.timeout) == (
        DEFAULT_MIN_TTL,
        DEFAULT_MAX_TTL,
        DEFAULT_TIMEOUT,
    )
    assert options.nameservers == ()  # the system's resolver configuration


def test_srv_url_takes_no_port() -> None:
    target, _ = parse(f"dns+srv:///_grpc._tcp.{NAME}")
    assert target == _target(f"_grpc._tcp.{NAME}", None)
    assert target.srv


def test_parameters() -> None:
    _, options = parse(
        f"dns:///{NAME}:50051?nameserver=127.0.0.1:5353,10.0.0.10&nameserver=[::1]:53"
        "&min_ttl=0.5&max_ttl=10&timeout=0.25"
    )
    assert options == DnsOptions(
        nameservers=(("127.0.0.1", 5353), ("10.0.0.10", 53), ("::1", 53)),
        min_ttl=0.5,
        max_ttl=10.0,
        timeout=0.25,
    )


def test_authority_names_the_nameserver_as_in_grpc() -> None:
    _, options = parse(f"dns://10.96.0.10:53/{NAME}:50051")
    assert options.nameservers == (("10.96.0.10", 53),)


@pytest.mark.parametrize(
    ("family", "types"), [("any", (A, AAAA)), ("ipv4", (A,)), ("ipv6", (AAAA,))]
)
def test_family(family: str, types: tuple[dns.rdatatype.RdataType, ...]) -> None:
    target, _ = parse(f"dns:///{NAME}:50051?family={family}")
    assert target.families == types


def test_trailing_dot_makes_the_name_absolute() -> None:
    absolute, _ = parse(f"dns:///{NAME}.:50051")
    relative, _ = parse("dns:///greeter:50051")
    assert absolute.name.is_absolute()
    assert not relative.name.is_absolute()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"dns:///{NAME}", "has no port; write dns:///NAME:PORT, or dns+srv:///NAME"),
        (f"dns:///{NAME}:http", "port 'http' is not a number"),
        (f"dns:///{NAME}:0", "port '0' is not a number in 1..65535"),
        (f"dns:///{NAME}:70000", "port '70000'"),
        ("dns:///:50051", "is not a DNS name"),
        ("dns:///", "no DNS name in the path; write dns:///NAME:PORT"),
        ("dns+srv:///", "write dns+srv:///_grpc._tcp.NAME"),
        (f"dns+srv:///_grpc._tcp.{NAME}:50051", "dns+srv takes the ports from the SRV records"),
        ("dns:///10.0.0.1:50051", "is an IP address, not a DNS name; use static://"),
        ("dns:///[::1]:50051", "is an IP address, not a DNS name"),
        ("dns:///bad name:50051", "is not a DNS name"),
        ("dns:///a..b:50051", "is not a DNS name"),
        (f"dns:///{'x' * 64}.svc:50051", "is not a valid DNS name"),
        (f"dns:///{NAME}:50051?nameserver=dns.google", "is not an IP address"),
        (f"dns:///{NAME}:50051?nameserver=10.0.0.1:99999", "port '99999'"),
        (f"dns:///{NAME}:50051?nameserver=", "empty nameserver"),
        (f"dns:///{NAME}:50051?nameserver=[::1", "write IPv6 servers as [::1]:53"),
        (f"dns:///{NAME}:50051?min_ttl=0", "min_ttl='0' is not a positive number of seconds"),
        (f"dns:///{NAME}:50051?max_ttl=soon", "max_ttl='soon' is not a positive number"),
        (f"dns:///{NAME}:50051?timeout=-1", "timeout='-1'"),
        (f"dns:///{NAME}:50051?max_ttl=inf", "max_ttl='inf'"),
        (f"dns:///{NAME}:50051?min_ttl=10&max_ttl=5", "max_ttl (5) is below min_ttl (10)"),
        (f"dns:///{NAME}:50051?family=ipv5", "family='ipv5'; choose one of any, ipv4, ipv6"),
        (f"dns:///{NAME}:50051?min-ttl=1", "unknown parameter min-ttl (known: nameserver,"),
    ],
)
def test_invalid_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        DnsDiscovery.from_url(parse_url(url), DiscoveryOptions())
    assert problem in info.value.problem
    assert url in str(info.value)


def test_create_discovery_maps_both_schemes() -> None:
    threads = threading.active_count()
    for url in (
        f"dns:///{NAME}:50051?nameserver=127.0.0.1:5353",
        f"dns+srv:///_grpc._tcp.{NAME}?nameserver=127.0.0.1:5353",
    ):
        discovery = create_discovery(url)
        assert isinstance(discovery, DnsDiscovery)
        assert isinstance(discovery, Discovery)
        assert discovery.endpoints == ()
        assert discovery.state is None
        discovery.close()
    assert threading.active_count() == threads  # no thread before a subscription


def test_system_configuration_is_used_without_a_nameserver() -> None:
    discovery = create_discovery(f"dns:///{NAME}:50051")
    assert isinstance(discovery, DnsDiscovery)
    assert discovery.options.nameservers == ()
    discovery.close()


def test_options_validate_in_code_too() -> None:
    with pytest.raises(ConfigurationError, match="timeout must be a positive"):
        DnsOptions(timeout=0)
    with pytest.raises(ConfigurationError, match="not an IP address"):
        DnsOptions(nameservers=(("ns.example", 53),))


def _target(name: str, port: int | None) -> DnsTarget:
    return DnsTarget(dns.name.from_text(name, origin=None), port)
