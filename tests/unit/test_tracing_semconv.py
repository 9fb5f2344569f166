"""Which conventions the observer emits, and the tables it builds from them (no sockets)."""

from __future__ import annotations

import grpc
import pytest

from dubbok.tracing._semconv import (
    Semconv,
    is_error,
    metric_old,
    metric_stable,
    semconv_from_env,
    span_base,
    span_end,
    split_peer,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", Semconv.OLD),
        ("http", Semconv.OLD),
        ("rpc", Semconv.STABLE),
        ("http, rpc", Semconv.STABLE),
        ("rpc/dup", Semconv.DUP),
        ("rpc,rpc/dup", Semconv.DUP),  # dup wins over rpc
        (" RPC ", Semconv.STABLE),
    ],
)
def test_opt_in_values(value: str, expected: Semconv) -> None:
    assert semconv_from_env(value) is expected


def test_the_environment_is_read_when_no_value_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "rpc/dup")
    assert semconv_from_env() is Semconv.DUP
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN")
    assert semconv_from_env() is Semconv.OLD


def test_client_errors_are_every_non_ok_code_and_server_errors_only_server_faults() -> None:
    codes = set(grpc.StatusCode)
    assert {c for c in codes if is_error(c, server=False)} == codes - {grpc.StatusCode.OK}
    assert {c.name for c in codes if is_error(c, server=True)} == {
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    }


def test_old_stable_and_dup_span_attributes() -> None:
    assert span_base(Semconv.OLD, "a.B", "Get") == {
        "rpc.system": "grpc",
        "rpc.service": "a.B",
        "rpc.method": "Get",
    }
    assert span_base(Semconv.STABLE, "a.B", "Get") == {
        "rpc.system.name": "grpc",
        "rpc.method": "a.B/Get",
    }
    # Both, with the stable (fully qualified) rpc.method where the two would clash.
    assert span_base(Semconv.DUP, "a.B", "Get") == {
        "rpc.system": "grpc",
        "rpc.service": "a.B",
        "rpc.method": "a.B/Get",
        "rpc.system.name": "grpc",
    }


def test_status_attributes_per_convention() -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    assert span_end(Semconv.OLD, unavailable, server=False) == {"rpc.grpc.status_code": 14}
    assert span_end(Semconv.STABLE, unavailable, server=True) == {
        "rpc.response.status_code": "UNAVAILABLE",
        "error.type": "UNAVAILABLE",
    }
    # A business error is not a server fault: no error.type on the server side.
    not_found = grpc.StatusCode.NOT_FOUND
    assert span_end(Semconv.STABLE, not_found, server=True) == {
        "rpc.response.status_code": "NOT_FOUND"
    }
    assert span_end(Semconv.STABLE, not_found, server=False)["error.type"] == "NOT_FOUND"


def test_each_histogram_keeps_its_own_conventions_attributes() -> None:
    ok = grpc.StatusCode.OK
    assert metric_old("a.B", "Get", ok) == {
        "rpc.system": "grpc",
        "rpc.service": "a.B",
        "rpc.method": "Get",
        "rpc.grpc.status_code": 0,
    }
    assert metric_stable("a.B", "Get", ok, server=False) == {
        "rpc.system.name": "grpc",
        "rpc.method": "a.B/Get",
        "rpc.response.status_code": "OK",
    }


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("ipv6:[::1]:5000", ("::1", 5000)),
        ("unix:/tmp/s.sock", ("/tmp/s.sock", None)),
        ("weird", ("weird", None)),
        ("ipv4:host:notaport", ("host:notaport", None)),
    ],
)
def test_peer_strings(peer: str, expected: tuple[str, int | None]) -> None:
    assert split_peer(peer) == expected
