"""The pure helpers of the benchmark harness: percentiles, summaries, medians, tables."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pytest

# bench/ is not an installed package; make the repository root importable when pytest
# is started without it on sys.path.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench.harness import (  # noqa: E402
    LoadResult,
    LoadSpec,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    int_list,
    median_result,
    mode_list,
    paired_ratio,
    percentile,
    percentiles,
    ratio,
    render_table,
    summarize,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0, 5.0], 25, 2.0),
        ([0.0, 10.0], 99, 9.9),
        (list(map(float, range(1, 101))), 99, 99.01),
        (list(map(float, range(1, 101))), 50, 50.5),
    ],
)
def test_percentile_interpolates_linearly_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentiles_answers_several_quantiles_in_order() -> None:
    assert percentiles([3.0, 1.0, 2.0], (0, 50, 100)) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("values", "q", "message"),
    [
        ([], 50, "empty"),
        ([1.0], -1, "between 0 and 100"),
        ([1.0], 100.5, "between 0 and 100"),
        ([1.0], math.nan, "between 0 and 100"),
    ],
)
def test_percentile_refuses_bad_input(values: list[float], q: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        percentile(values, q)


def test_summarize_counts_rate_and_latency() -> None:
    latencies = [0.001 * i for i in range(1, 101)]
    result = summarize(concurrency=4, latencies=latencies, errors=2, window=2.0, cpu_seconds=0.05)
    assert result.calls == 100
    assert result.errors == 2
    assert result.qps == pytest.approx(50.0)
    assert result.p50 == pytest.approx(0.0505)
    assert result.p99 == pytest.approx(0.09901)
    assert result.max == pytest.approx(0.1)
    assert result.cpu_per_call == pytest.approx(0.0005)


def test_summarize_without_completed_calls_has_no_latency() -> None:
    result = summarize(concurrency=1, latencies=[], errors=7, window=1.0, first_error="boom")
    assert result.qps == 0.0
    assert math.isnan(result.p99)
    assert math.isnan(result.cpu_per_call)
    assert result.to_dict()["p99"] is None
    assert result.to_dict()["first_error"] == "boom"


def test_summarize_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError, match="window"):
        summarize(concurrency=1, latencies=[0.1], errors=0, window=0.0)


def _result(qps: float, p99: float, errors: int = 0, concurrency: int = 16) -> LoadResult:
    return LoadResult(
        concurrency=concurrency,
        calls=int(qps),
        errors=errors,
        window=1.0,
        qps=qps,
        p50=p99 / 2,
        p90=p99 * 0.9,
        p99=p99,
        max=p99 * 2,
        cpu_per_call=0.0002,
        first_error="e" if errors else None,
    )


def test_median_result_takes_each_field_median_and_sums_counts() -> None:
    combined = median_result([_result(100, 0.03), _result(300, 0.01, errors=1), _result(200, 0.02)])
    assert combined.qps == 200
    assert combined.p99 == 0.02
    assert combined.calls == 600
    assert combined.errors == 1
    assert combined.window == 3.0
    assert combined.first_error == "e"


def test_median_result_ignores_repeats_without_latency() -> None:
    empty = summarize(concurrency=16, latencies=[], errors=3, window=1.0)
    combined = median_result([_result(100, 0.03), empty])
    assert combined.p99 == 0.03
    assert combined.qps == 50.0


def test_median_result_refuses_mixed_or_missing_input() -> None:
    with pytest.raises(ValueError, match="no results"):
        median_result([])
    with pytest.raises(ValueError, match="one concurrency"):
        median_result([_result(1, 1, concurrency=1), _result(1, 1, concurrency=16)])


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (90.0, 100.0, 0.9),
        (1.0, 0.0, math.nan),
        (math.nan, 1.0, math.nan),
        (1.0, math.nan, math.nan),
    ],
)
def test_ratio(numerator: float, denominator: float, expected: float) -> None:
    got = ratio(numerator, denominator)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_paired_ratio_is_the_median_of_per_pair_ratios() -> None:
    # Load drifting between pairs (x2, x0.5) cancels inside each pair.
    assert paired_ratio([(90.0, 100.0), (180.0, 200.0), (50.0, 50.0)]) == pytest.approx(0.9)
    assert paired_ratio([(1.0, 0.0), (2.0, 4.0)]) == 0.5
    assert math.isnan(paired_ratio([]))
    assert math.isnan(paired_ratio([(math.nan, 1.0)]))


def test_render_table_aligns_columns() -> None:
    table = render_table(["mode", "qps"], [["sync", "12"], ["aio", "1234"]])
    assert table.splitlines() == [
        "mode   qps",
        "----  ----",
        "sync    12",
        "aio   1234",
    ]


def test_render_table_honours_explicit_alignment() -> None:
    table = render_table(["a", "b"], [["x", "yy"]], align="rl")
    assert table.splitlines()[2] == "x  yy"


@pytest.mark.parametrize(
    ("rows", "align", "message"),
    [
        ([["only one"]], None, "row 0 has 1 cells"),
        ([["a", "b"]], "l", "one 'l' or 'r' per column"),
        ([["a", "b"]], "lc", "one 'l' or 'r' per column"),
    ],
)
def test_render_table_refuses_ragged_input(
    rows: list[list[str]], align: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_table(["h1", "h2"], rows, align=align)


def test_formatters_show_units_and_missing_values() -> None:
    assert fmt_ms(0.0012345) == "1.23"
    assert fmt_us(0.000123) == "123"
    assert fmt_rate(1234.56) == "1235"
    assert fmt_ratio(0.9149) == "0.91"
    assert {fmt_ms(math.nan), fmt_us(math.nan), fmt_rate(math.nan), fmt_ratio(math.nan)} == {"-"}


def test_cli_list_types() -> None:
    assert int_list("1,16,64") == [1, 16, 64]
    assert mode_list("aio") == ["aio"]
    for bad in ("", "1,x", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            int_list(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="sync, aio"):
        mode_list("sync,threads")


def test_load_spec_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        LoadSpec(0, 1.0, 1.0)
    with pytest.raises(ValueError, match="duration"):
        LoadSpec(1, 1.0, 0.0)
    assert LoadSpec(1, 1.0, 2.0, call_timeout=3.0).deadline == 6.0
