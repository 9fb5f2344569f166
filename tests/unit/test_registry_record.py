"""Provider and consumer records: key layout, encode/decode round trips, corrupt input."""

from __future__ import annotations

import json

import pytest

from dubbok.endpoint import Endpoint
from dubbok.errors import ConfigurationError, RegistryError
from dubbok.registry import ConsumerInfo
from dubbok.registry.record import (
    MAX_RECORD_BYTES,
    RecordError,
    consumer_key,
    consumers_prefix,
    decode_consumer,
    decode_provider,
    encode_consumer,
    encode_provider,
    provider_key,
    providers_prefix,
    validate_name,
)

KEY = "/dubbok/default/services/helloworld.Greeter/providers/10.0.0.7:50051"


def test_key_layout() -> None:
    assert providers_prefix("shop", "helloworld.Greeter") == (
        "/dubbok/shop/services/helloworld.Greeter/providers/"
    )
    assert provider_key("default", "helloworld.Greeter", "10.0.0.7:50051") == KEY
    assert consumers_prefix("shop", "a.B") == "/dubbok/shop/services/a.B/consumers/"
    assert (
        consumer_key("shop", "a.B", ConsumerInfo(app="web", host="10.0.0.9", pid=42))
        == "/dubbok/shop/services/a.B/consumers/web@10.0.0.9:42"
    )


@pytest.mark.parametrize("name", ["", "a/b", "../x", " a", "a b", "-a", "é"])
def test_names_that_would_break_the_key_layout_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid namespace"):
        validate_name("namespace", name)


def test_provider_round_trip_keeps_every_field() -> None:
    endpoint = Endpoint(
        "10.0.0.7",
        50051,
        weight=20,
        version="1.2.0",
        group="blue",
        app="shop",
        tags={"zone": "a"},
        methods={"SayHello": {"idempotent": True, "timeout": 0.2}},
        started_at=1718000000.5,
    )
    raw = encode_provider(endpoint, pid=4242, started_at=1718000000.5)
    record = json.loads(raw)
    assert record["pid"] == 4242
    assert set(record) == {
        "app",
        "version",
        "group",
        "weight",
        "tags",
        "methods",
        "started_at",
        "pid",
        "host",
        "port",
    }
    decoded = decode_provider(KEY, raw)
    assert decoded == endpoint
    assert dict(decoded.tags) == {"zone": "a"}
    assert dict(decoded.methods["SayHello"]) == {"idempotent": True, "timeout": 0.2}


def test_ipv6_provider_key_and_record_agree() -> None:
    endpoint = Endpoint("::1", 50051)
    key = provider_key("default", "a.B", endpoint.address)
    assert key.endswith("/[::1]:50051")
    assert decode_provider(key, encode_provider(endpoint, pid=1, started_at=0.0)) == endpoint


def test_only_host_and_port_are_required_and_unknown_fields_are_ignored() -> None:
    raw = json.dumps({"host": "10.0.0.7", "port": 50051, "future_field": [1, 2]}).encode()
    endpoint = decode_provider(KEY, raw)
    assert (endpoint.weight, endpoint.version, endpoint.app, endpoint.started_at) == (
        100,
        "",
        "",
        0.0,
    )


def _record(**changes: object) -> bytes:
    base: dict[str, object] = {"host": "10.0.0.7", "port": 50051, "weight": 100}
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "JSON list, expected an object"),
        (_record(host=...), "'host' must be a non-empty string"),
        (_record(port=...), "missing field 'port'"),
        (_record(port="50051"), "'port' must be an integer"),
        (_record(port=0), "port 0 is not in 1..65535"),
        (_record(port=70000), "port 70000 is not in 1..65535"),
        (_record(port=True), "'port' must be an integer"),
        (_record(weight=-1), "weight -1 is negative"),
        (_record(weight=1.5), "'weight' must be an integer"),
        (_record(tags={"a": 1}), "'tags' must map strings to strings"),
        (_record(methods=["SayHello"]), "'methods' must map method names"),
        (_record(version=3), "'version' must be a string"),
        (_record(started_at="yesterday"), "'started_at' must be a UNIX time"),
        (_record(port=50052), "does not match its key"),
    ],
)
def test_corrupt_provider_records_name_the_key_and_the_problem(raw: bytes, problem: str) -> None:
    with pytest.raises(RecordError) as info:
        decode_provider(KEY, raw)
    assert problem in info.value.message
    assert info.value.key == KEY
    assert KEY in str(info.value)
    assert isinstance(info.value, RegistryError)


def test_records_too_big_for_etcd_are_refused_before_writing() -> None:
    endpoint = Endpoint("10.0.0.7", 50051, tags={"blob": "x" * MAX_RECORD_BYTES})
    with pytest.raises(ConfigurationError, match=r"over the \d+-byte limit"):
        encode_provider(endpoint, pid=1, started_at=0.0)


def test_method_options_that_are_not_json_are_refused() -> None:
    endpoint = Endpoint("10.0.0.7", 50051, methods={"SayHello": {"timeout": object()}})
    with pytest.raises(ConfigurationError, match="cannot be written as JSON"):
        encode_provider(endpoint, pid=1, started_at=0.0)


def test_consumer_round_trip() -> None:
    consumer = ConsumerInfo(app="web", host="10.0.0.9", pid=42, extra={"version": "2"})
    key = consumer_key("default", "a.B", consumer)
    decoded = decode_consumer(key, encode_consumer(consumer, started_at=5.0))
    assert (decoded.app, decoded.host, decoded.pid) == ("web", "10.0.0.9", 42)
    assert decoded.extra == {"version": "2", "started_at": 5.0}


def test_corrupt_consumer_record() -> None:
    with pytest.raises(RecordError, match="missing field 'pid'"):
        decode_consumer("k", json.dumps({"host": "h"}).encode())
