"""The pure parts of the ``registry`` benchmark scenario: how references are spread over
processes, how etcd's metrics are read and differenced, and when a change counts as
applied by a reference."""

from __future__ import annotations

import argparse

import pytest

from bench.registry import (
    AppliedLog,
    by_method,
    counter_delta,
    expected_keepalives,
    fake_address,
    keepalives_ok,
    latency_row,
    parse_metrics,
    part_list,
    split,
    spread_text,
)


def _sample(name: str, value: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value}"


_KV = {"grpc_service": "etcdserverpb.KV", "grpc_type": "unary"}
METRICS = "\n".join(
    [
        "# HELP grpc_server_msg_received_total Total number of RPC stream messages received.",
        "# TYPE grpc_server_msg_received_total counter",
        _sample(
            "grpc_server_msg_received_total",
            "12",
            grpc_method="LeaseKeepAlive",
            grpc_service="etcdserverpb.Lease",
            grpc_type="bidi_stream",
        ),
        _sample("grpc_server_msg_received_total", "1000", grpc_method="Put", **_KV),
        _sample("grpc_server_handled_total", "998", grpc_code="OK", grpc_method="Put", **_KV),
        _sample("grpc_server_handled_total", "2", grpc_code="Unknown", grpc_method="Put", **_KV),
        "etcd_debugging_lease_renewed_total 7",
        "go_memstats_heap_released_bytes 5.6901632e+07",
    ]
)


def test_parse_metrics_reads_labels_and_values() -> None:
    samples = parse_metrics(METRICS)
    key = (
        "grpc_server_msg_received_total",
        (
            ("grpc_method", "Put"),
            ("grpc_service", "etcdserverpb.KV"),
            ("grpc_type", "unary"),
        ),
    )
    assert samples[key] == 1000
    assert samples[("etcd_debugging_lease_renewed_total", ())] == 7
    assert samples[("go_memstats_heap_released_bytes", ())] == 56901632.0
    assert not any(name.startswith("#") for name, _ in samples)


def test_by_method_folds_codes_and_the_delta_keeps_what_grew() -> None:
    samples = parse_metrics(METRICS)
    assert by_method(samples, "grpc_server_handled_total") == {"Put": 1000}
    before = {"LeaseKeepAlive": 10.0, "Put": 5.0, "Range": 3.0}
    after = {"LeaseKeepAlive": 16.0, "Put": 5.0, "Range": 3.0, "Watch": 2.0}
    assert counter_delta(before, after) == {"LeaseKeepAlive": 6.0, "Watch": 2.0}


def test_keepalive_expectation_is_one_per_third_of_the_rounded_ttl() -> None:
    assert expected_keepalives(20, 30.0, 10.0) == pytest.approx(180.0)
    assert expected_keepalives(1, 4.0, 3.0) == pytest.approx(4.0)
    assert expected_keepalives(1, 3.0, 2.5) == pytest.approx(3.0)  # etcd's TTL is 3 s


@pytest.mark.parametrize(
    ("keepalives", "other", "ok"),
    [(180, 0, True), (165, 0, True), (201, 0, False), (180, 1, False), (150, 0, False)],
)
def test_idle_traffic_is_keepalives_within_one_per_provider(
    keepalives: float, other: float, ok: bool
) -> None:
    assert keepalives_ok(keepalives, other, providers=20, expected=180.0) is ok


def test_split_is_even_larger_first_and_never_empty() -> None:
    assert split(100, 4) == [25, 25, 25, 25]
    assert split(10, 4) == [3, 3, 2, 2]
    assert split(3, 8) == [1, 1, 1]
    with pytest.raises(ValueError):
        split(0, 4)


def test_fake_addresses_are_distinct_loopback() -> None:
    addresses = {fake_address(i) for i in range(1000)}
    assert len(addresses) == 1000
    assert all(host.startswith("127.1.") for host, _ in addresses)
    assert fake_address(0, block=3) == ("127.3.0.1", 50051)
    with pytest.raises(ValueError):
        fake_address(62500)


def test_applied_log_keeps_the_first_time_an_address_came_and_went() -> None:
    log = AppliedLog()
    log.observe(["a:1", "b:1"], at=10)
    log.observe(["a:1", "b:1", "c:1"], at=20)
    log.observe(["a:1", "b:1", "c:1"], at=25)  # same set again: nothing new
    log.observe(["a:1", "b:1"], at=30)
    assert log.when("c:1", True) == 20
    assert log.when("c:1", False) == 30
    assert log.when("a:1", True) == 10
    assert log.when("a:1", False) is None


def test_part_list_keeps_run_order_and_names_the_choices() -> None:
    assert part_list("idle,first") == ["first", "idle"]
    with pytest.raises(argparse.ArgumentTypeError, match="first, spread, lease, idle"):
        part_list("first,nope")


def test_latency_row_in_ms() -> None:
    assert latency_row("x", [0.001, 0.002, 0.003]) == ["x", "3", "2.00", "2.80", "2.98", "3.00"]
    assert latency_row("x", []) == ["x", "0", "-", "-", "-", "-"]


def test_spread_text_names_processes_and_apps() -> None:
    assert spread_text([25, 25, 25, 25]) == "4 processes × 25 Apps"
    assert spread_text([1]) == "1 process × 1 App"
    assert spread_text([3, 3, 2]) == "3 processes with 3+3+2 Apps"
