"""The fixed concurrency cap: exact admission, release, messages."""

from __future__ import annotations

import pytest

from dubbok.errors import ConfigurationError
from dubbok.limit import ConcurrencyLimiter


@pytest.mark.parametrize("limit", [1, 2, 64])
def test_exactly_limit_holders(limit: int) -> None:
    limiter = ConcurrencyLimiter("SayHello", limit)
    assert [limiter.try_acquire() for _ in range(limit)] == [True] * limit
    assert not limiter.try_acquire()
    assert limiter.active == limit and limiter.rejected == 1
    limiter.release()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    for _ in range(limit):
        limiter.release()
    assert limiter.active == 0


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("SayHello", "max_concurrency", "SayHello: max_concurrency 64 reached"),
        ("SayHello", "actives", "SayHello: actives 64 reached"),
        ("helloworld.Greeter", "bulkhead", "helloworld.Greeter: bulkhead 64 reached"),
    ],
)
def test_rejection_names_the_limit(name: str, kind: str, message: str) -> None:
    assert ConcurrencyLimiter(name, 64, kind=kind).rejection == message


def test_release_without_acquire_is_an_error() -> None:
    limiter = ConcurrencyLimiter("SayHello", 1)
    with pytest.raises(ValueError, match="released more often than acquired"):
        limiter.release()


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_bad_limit(limit: object) -> None:
    with pytest.raises(ConfigurationError, match=r"SayHello\.max_concurrency must be an integer"):
        ConcurrencyLimiter("SayHello", limit)  # type: ignore[arg-type]
