"""Breaker settings: frozen, validated dataclasses matching the ``breaker:`` rule section.

::

    breaker:
      instance: {consecutive_failures: 5, base_ejection_time: 10, max_ejection_percent: 50}
      method:   {error_ratio: 0.5, slow_call_ratio: 0.8, slow_call_threshold: 0.5,
                 min_calls: 20, window: 10, reset_timeout: 30, half_open_max_calls: 3}

Build them in code, or from a parsed rule document with :meth:`BreakerPolicy.from_dict`.
A bad value raises :class:`~dubbok.errors.ConfigurationError` naming the field, the value and
the accepted range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from ..errors import ConfigurationError

__all__ = ["BreakerPolicy", "InstanceBreakerPolicy", "MethodBreakerPolicy"]


def check_number(
    where: str,
    name: str,
    value: object,
    *,
    integer: bool = False,
    minimum: float = 0.0,
    above: bool = False,
    maximum: float | None = None,
) -> None:
    """Raise a :class:`ConfigurationError` unless ``value`` is a number in range.

    ``above`` makes ``minimum`` exclusive. Shared by the breaker and limit policies.
    """
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigurationError(f"{where}.{name} must be {kind}, got {value!r}")
    number = float(value)  # type: ignore[arg-type]  # checked just above
    low_ok = number > minimum if above else number >= minimum
    high_ok = maximum is None or number <= maximum
    if not (math.isfinite(number) and low_ok and high_ok):
        low = f"> {minimum:g}" if above else f"≥ {minimum:g}"
        high = "" if maximum is None else f" and ≤ {maximum:g}"
        raise ConfigurationError(f"{where}.{name} must be {kind} {low}{high}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceBreakerPolicy:
    """Outlier ejection of single endpoints (Envoy's outlier detection).

    An endpoint with ``consecutive_failures`` counted failures in a row is ejected for
    ``base_ejection_time`` × the number of times it has been ejected (one less for each
    ``base_ejection_time`` it then stays healthy), at most ``max_ejection_time``; then one
    probe call is let through. At most ``max_ejection_percent`` of a service's endpoints are
    ejected at once.
    """

    consecutive_failures: int = 5
    base_ejection_time: float = 10.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 50.0

    def __post_init__(self) -> None:
        where = "breaker.instance"
        check_number(
            where, "consecutive_failures", self.consecutive_failures, integer=True, minimum=1
        )
        check_number(where, "base_ejection_time", self.base_ejection_time, above=True)
        check_number(where, "max_ejection_time", self.max_ejection_time, above=True)
        check_number(where, "max_ejection_percent", self.max_ejection_percent, maximum=100)
        if self.max_ejection_time < self.base_ejection_time:
            raise ConfigurationError(
                f"{where}.max_ejection_time ({self.max_ejection_time:g} s) is shorter than "
                f"base_ejection_time ({self.base_ejection_time:g} s); raise it or lower "
                "base_ejection_time"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodBreakerPolicy:
    """The per service/method breaker (Sentinel's three strategies, Kitex's service level).

    It opens on whichever trigger fires first:

    * ``consecutive_failures`` counted failures in a row (``None``: off);
    * the share of counted failures among the calls of the last ``window`` seconds reaching
      ``error_ratio`` (``None``: off), once at least ``min_calls`` calls were recorded;
    * the share of calls slower than ``slow_call_threshold`` seconds reaching
      ``slow_call_ratio`` (``None``: off), with the same ``min_calls``.

    ``reset_timeout`` seconds after opening it half-opens and lets ``half_open_max_calls``
    probe calls through: when that many succeed it closes; one counted failure (or a slow
    probe, when the slow-call trigger is on) opens it again. The window is ``buckets`` slices
    of ``window / buckets`` seconds each.
    """

    error_ratio: float | None = 0.5
    slow_call_ratio: float | None = None
    slow_call_threshold: float = 1.0
    consecutive_failures: int | None = None
    min_calls: int = 20
    window: float = 10.0
    buckets: int = 10
    reset_timeout: float = 10.0
    half_open_max_calls: int = 3

    def __post_init__(self) -> None:
        where = "breaker.method"
        if self.error_ratio is not None:
            check_number(where, "error_ratio", self.error_ratio, above=True, maximum=1)
        if self.slow_call_ratio is not None:
            check_number(where, "slow_call_ratio", self.slow_call_ratio, above=True, maximum=1)
        check_number(where, "slow_call_threshold", self.slow_call_threshold, above=True)
        if self.consecutive_failures is not None:
            check_number(
                where, "consecutive_failures", self.consecutive_failures, integer=True, minimum=1
            )
        check_number(where, "min_calls", self.min_calls, integer=True, minimum=1)
        check_number(where, "window", self.window, above=True)
        check_number(where, "buckets", self.buckets, integer=True, minimum=1, maximum=1000)
        check_number(where, "reset_timeout", self.reset_timeout, above=True)
        check_number(
            where, "half_open_max_calls", self.half_open_max_calls, integer=True, minimum=1
        )
        if self.window / self.buckets < 0.001:
            raise ConfigurationError(
                f"{where}: window {self.window:g} s in {self.buckets} buckets makes buckets "
                "shorter than 1 ms; use fewer buckets"
            )
        if (self.error_ratio, self.slow_call_ratio, self.consecutive_failures) == (None,) * 3:
            raise ConfigurationError(
                f"{where} has no trigger: set error_ratio, slow_call_ratio or "
                "consecutive_failures, or leave the method breaker out to disable it"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """Both breaker levels; ``None`` turns a level off."""

    instance: InstanceBreakerPolicy | None = InstanceBreakerPolicy()
    method: MethodBreakerPolicy | None = MethodBreakerPolicy()

    def __post_init__(self) -> None:
        if self.instance is not None and not isinstance(self.instance, InstanceBreakerPolicy):
            raise ConfigurationError(
                f"breaker.instance must be an InstanceBreakerPolicy, got {self.instance!r}"
            )
        if self.method is not None and not isinstance(self.method, MethodBreakerPolicy):
            raise ConfigurationError(
                f"breaker.method must be a MethodBreakerPolicy, got {self.method!r}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerPolicy:
        """Build from the ``breaker:`` section of a rule document.

        A level that is absent keeps its defaults; a level given as ``null`` is off. At
        instance level ``reset_timeout`` is accepted as another name for
        ``base_ejection_time``.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"breaker must be a mapping, got {data!r}")
        unknown = set(data) - {"instance", "method"}
        if unknown:
            raise ConfigurationError(
                f"breaker has unknown keys {sorted(unknown)}; known: ['instance', 'method']"
            )
        instance = _level(
            data, "instance", InstanceBreakerPolicy, aliases={"reset_timeout": "base_ejection_time"}
        )
        method = _level(data, "method", MethodBreakerPolicy, aliases={})
        return cls(instance=instance, method=method)


_P = TypeVar("_P", InstanceBreakerPolicy, MethodBreakerPolicy)


def _level(
    data: Mapping[str, Any], key: str, cls: type[_P], *, aliases: Mapping[str, str]
) -> _P | None:
    if key not in data:
        return cls()
    section = data[key]
    if section is None:
        return None
    return build(cls, section, f"breaker.{key}", aliases=aliases)


_T = TypeVar("_T")


def build(cls: type[_T], section: object, where: str, *, aliases: Mapping[str, str]) -> _T:
    """Instantiate a policy dataclass from a mapping, refusing unknown keys by name.

    ``aliases`` maps accepted other names to field names. Shared with the limit policies.
    """
    if not isinstance(section, Mapping):
        raise ConfigurationError(f"{where} must be a mapping, got {section!r}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
    options: dict[str, Any] = {}
    for raw_key, value in section.items():
        name = aliases.get(raw_key, raw_key)
        if name not in known:
            raise ConfigurationError(
                f"{where} has an unknown key {raw_key!r}; known: {sorted(known | set(aliases))}"
            )
        if name in options:
            raise ConfigurationError(f"{where} sets {name!r} twice (once through an alias)")
        options[name] = value
    return cls(**options)
