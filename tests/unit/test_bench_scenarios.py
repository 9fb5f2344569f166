"""The pure parts of the ``balancing`` and ``resilience`` benchmark scenarios: how arms become
reference options, and how counts and latencies fold into the reported rows."""

from __future__ import annotations

import argparse
import math

import pytest

from bench.balancing import (
    Arm,
    BurstResult,
    Measured,
    Sample,
    available,
    balance_arms,
    balance_row,
    budget_arms,
    budget_bound,
    budget_row,
    diff,
    part_list,
    retry_ratio,
    share,
)
from bench.harness import summarize
from bench.resilience import (
    DegradeRow,
    SuccessRow,
    timed_result,
)


def burst(calls: int = 100, ok: int = 100, elapsed: float = 2.0) -> BurstResult:
    return BurstResult(calls, ok, calls - ok, elapsed, 0.001, 0.002)


def test_arm_options_name_every_provider_and_only_the_options_it_sets() -> None:
    plain = Arm("rr", (0, 2)).options([5001, 5002, 5003])
    assert plain["discovery"] == "static://127.0.0.1:5001,127.0.0.1:5003"
    assert "methods" not in plain and "cluster_options" not in plain
    assert "fallbacks" not in plain

    hedged = Arm(
        "h", (1,), cluster="hedging", idempotent=True, hedge_delay=0.01, retry_budget=False
    ).options([5001, 5002])
    assert hedged["methods"] == {"Echo": {"idempotent": True}}
    assert hedged["cluster_options"] == {"hedge_delay": 0.01}
    assert hedged["retry_budget"] is False


def test_arm_fallback_answers_with_its_text() -> None:
    options = Arm("f", (0,), fallback_text="later").options([5001])
    reply = options["fallbacks"]["Echo"](object(), RuntimeError("down"))
    assert reply.text == "later"


def test_arms_cover_each_balancer_and_hedging_with_and_without_budget() -> None:
    arms = balance_arms(0.01)
    assert [a.loadbalance for a in arms[:4]] == ["roundrobin", "random", "leastactive", "p2c"]
    hedging = [a for a in arms if a.cluster == "hedging"]
    assert [a.retry_budget for a in hedging] == [True, False]
    assert all(a.idempotent and a.hedge_delay == 0.01 for a in hedging)
    assert {(a.breaker, a.retry_budget) for a in budget_arms()} == {
        (False, True),
        (False, False),
        (True, True),
        (True, False),
    }


def test_available_skips_balancers_the_library_lacks() -> None:
    keep, missing = available([Arm("rr", (0,)), Arm("nope", (0,), loadbalance="no-such-lb")])
    assert [a.label for a in keep] == ["rr"]
    assert missing == ["no-such-lb"]


def test_counts_and_ratios() -> None:
    assert diff([10, 25, 7], [4, 5, 7]) == [6, 20, 0]
    assert retry_ratio(133, 100) == pytest.approx(0.33)
    assert math.isnan(retry_ratio(0, 0))
    assert share(1, 4) == 0.25
    assert math.isnan(share(1, 0))
    # 100 banked + a tenth of 1000 calls + 10 per second for 2 s
    assert budget_bound(1000, 2.0, ratio=0.1, per_second=10.0, initial=100.0) == 220.0


def test_balance_row_takes_medians_of_shares_and_attempts() -> None:
    result = summarize(concurrency=16, latencies=[0.001, 0.05], errors=0, window=1.0)
    samples = [
        Sample(Measured(result, started=100), handled=(40, 40, 20)),
        Sample(Measured(result, started=100), handled=(45, 45, 30)),
        Sample(Measured(result, started=200), handled=(90, 90, 20)),
    ]
    row = balance_row("sync", 16, "rr", samples, slow=2)
    assert row.slow_share == pytest.approx(0.2)  # median of 0.2, 0.25, 0.1
    assert row.attempts_per_call == pytest.approx(1.0)  # median of 1.0, 1.2, 1.0
    assert row.result.calls == 6


def test_budget_row_bounds_only_arms_with_a_budget() -> None:
    with_budget = Arm("on", (0, 1, 2), retry_budget=True)
    without = Arm("off", (0, 1, 2), retry_budget=False)
    row = budget_row(with_budget, burst(1000, 900, 2.0), [400, 400, 320], failing=2)
    assert row.attempts == 1120
    assert row.failing_calls == 320
    assert row.retry_ratio == pytest.approx(0.12)
    assert row.bound_ratio == pytest.approx((100 + 0.1 * 1000 + 10 * 2.0) / 1000)
    assert math.isnan(budget_row(without, burst(1000), [400, 400, 333], 2).bound_ratio)


def test_success_verdict_applies_the_target_to_the_default_arm_only() -> None:
    def row(ok: int, target: bool) -> SuccessRow:
        return SuccessRow("sync", "a", burst(10_000, ok), 10_000, 0, 5, target)

    assert row(9_990, True).verdict == "ok"
    assert row(9_989, True).verdict == "MISS"
    assert row(5_000, False).verdict == "-"


def test_degraded_call_verdict_needs_fast_right_answers_without_provider_calls() -> None:
    fast = timed_result([0.00001] * 99 + [0.0005], elapsed=0.01, wrong=0)
    slow = timed_result([0.00001] * 90 + [0.002] * 10, elapsed=0.03, wrong=0)
    assert DegradeRow("sync", "a", fast, 0, True).verdict == "ok"
    assert DegradeRow("sync", "a", slow, 0, True).verdict == "MISS"
    assert DegradeRow("sync", "a", fast, 3, True).verdict == "MISS"  # the provider was called
    wrong = timed_result([0.00001] * 10, elapsed=0.001, wrong=1)
    assert DegradeRow("sync", "a", wrong, 0, True).verdict == "MISS"
    assert DegradeRow("sync", "a", slow, -1, False).verdict == "-"


def test_timed_result_percentiles_and_rate() -> None:
    result = timed_result([i / 1e6 for i in range(1, 101)], elapsed=0.5, wrong=0)
    assert result.calls == 100
    assert result.p50 == pytest.approx(50.5e-6)
    assert result.max == pytest.approx(100e-6)
    assert result.rate == pytest.approx(200.0)


def test_part_list_keeps_the_scenario_order_and_refuses_unknown_parts() -> None:
    assert part_list("budget, balance") == ["balance", "budget"]
    with pytest.raises(argparse.ArgumentTypeError, match="parts are balance, budget"):
        part_list("balance,nope")


def test_tracing_ratios_are_medians_of_bracketed_ratios_skipping_missing_ones() -> None:
    from collections import defaultdict

    from bench.tracing import _bracketed

    brackets: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    brackets["aio", 16, "dubbok-all"] += [0.7, math.nan, 0.9, 0.8]
    assert _bracketed(brackets, "aio", 16, "dubbok-all") == pytest.approx(0.8)
    assert _bracketed(brackets, "aio", 16, "raw") == 1.0
    assert math.isnan(_bracketed(brackets, "sync", 16, "dubbok-all"))
