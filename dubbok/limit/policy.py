"""Limit settings: frozen, validated dataclasses matching the ``limits:`` rule section.

::

    limits:                          # provider side, per method; "*" for every other method
      SayHello: {qps: 2000, burst: 200, max_concurrency: 64}
      Search:   {adaptive: {initial_limit: 20, max_limit: 200}}   # or adaptive: true
      "*":      {max_concurrency: 256}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..breaker.policy import build, check_number
from ..errors import ConfigurationError

__all__ = ["AdaptiveLimitPolicy", "LimitPolicy", "MethodLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveLimitPolicy:
    """Settings of :class:`~dubbok.limit.adaptive.AdaptiveLimiter` (a gradient limit).

    The limit starts at ``initial_limit`` and stays within ``[min_limit, max_limit]``. Each
    finished call moves it by ``smoothing`` of the way towards ``limit × gradient +
    √limit``, where the gradient is ``tolerance × min RTT / latency`` clamped to [0.5, 1]: it
    grows while latency stays within ``tolerance`` × the minimum round-trip time and shrinks
    as latency rises above it. A dropped call (timed out, shed) multiplies the limit by
    ``backoff_ratio``. The minimum RTT is re-learnt every ``min_rtt_window`` seconds so a
    lasting change in a method's cost is accepted as the new normal.
    """

    initial_limit: int = 20
    min_limit: int = 1
    max_limit: int = 1000
    smoothing: float = 0.2
    tolerance: float = 1.5
    backoff_ratio: float = 0.9
    min_rtt_window: float = 30.0

    def __post_init__(self) -> None:
        where = "limits.adaptive"
        check_number(where, "min_limit", self.min_limit, integer=True, minimum=1)
        check_number(where, "max_limit", self.max_limit, integer=True, minimum=1)
        check_number(where, "initial_limit", self.initial_limit, integer=True, minimum=1)
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ConfigurationError(
                f"{where}: need min_limit ≤ initial_limit ≤ max_limit, got "
                f"{self.min_limit} / {self.initial_limit} / {self.max_limit}"
            )
        check_number(where, "smoothing", self.smoothing, above=True, maximum=1)
        check_number(where, "tolerance", self.tolerance, minimum=1)
        check_number(where, "backoff_ratio", self.backoff_ratio, minimum=0.5, maximum=1)
        check_number(where, "min_rtt_window", self.min_rtt_window, above=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodLimits:
    """What a provider admits for one method; ``None`` means no such limit.

    ``qps`` is enforced by a token bucket holding at most ``burst`` tokens (default: a tenth
    of a second's worth, at least 1), so over any second at most ``qps + burst`` calls pass.
    ``max_concurrency`` is a fixed cap on calls in progress (Dubbo's ``executes``);
    ``adaptive`` adds a gradient limit that follows latency.
    """

    qps: float | None = None
    burst: float | None = None
    max_concurrency: int | None = None
    adaptive: AdaptiveLimitPolicy | None = None

    def __post_init__(self) -> None:
        where = "limits"
        if self.qps is not None:
            check_number(where, "qps", self.qps, above=True)
        if self.burst is not None:
            check_number(where, "burst", self.burst, minimum=1)
            if self.qps is None:
                raise ConfigurationError(f"{where}.burst is set without qps; set qps too")
        if self.max_concurrency is not None:
            check_number(where, "max_concurrency", self.max_concurrency, integer=True, minimum=1)
        if self.adaptive is not None and not isinstance(self.adaptive, AdaptiveLimitPolicy):
            raise ConfigurationError(
                f"{where}.adaptive must be an AdaptiveLimitPolicy, true or a mapping, "
                f"got {self.adaptive!r}"
            )

    @property
    def effective_burst(self) -> float:
        """The bucket size used: ``burst``, or a tenth of ``qps`` but at least 1."""
        if self.burst is not None:
            return float(self.burst)
        return max(1.0, (self.qps or 0.0) / 10)

    @property
    def empty(self) -> bool:
        return self.qps is None and self.max_concurrency is None and self.adaptive is None


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """Limits per method name; the ``"*"`` entry applies to every method not listed."""

    methods: Mapping[str, MethodLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, limits in self.methods.items():
            if not isinstance(name, str) or not name:
                raise ConfigurationError(
                    f"limits: method names must be non-empty text, got {name!r}"
                )
            if not isinstance(limits, MethodLimits):
                raise ConfigurationError(f"limits.{name} must be MethodLimits, got {limits!r}")
        object.__setattr__(self, "methods", MappingProxyType(dict(self.methods)))

    def for_method(self, method: str) -> MethodLimits | None:
        """The limits that apply to ``method`` (bare name, e.g. ``SayHello``), if any."""
        found = self.methods.get(method)
        return found if found is not None else self.methods.get("*")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LimitPolicy:
        """Build from the ``limits:`` section of a rule document."""
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"limits must be a mapping of method name to limits, got {data!r}"
            )
        methods: dict[str, MethodLimits] = {}
        for name, section in data.items():
            where = f"limits.{name}"
            if not isinstance(section, Mapping):
                raise ConfigurationError(f"{where} must be a mapping, got {section!r}")
            try:
                methods[str(name)] = _method_limits(section, where)
            except ConfigurationError as error:
                # The dataclasses do not know the method name: put it into the field path.
                if error.message.startswith("limits.") and not error.message.startswith(where):
                    raise ConfigurationError(
                        where + error.message.removeprefix("limits")
                    ) from error
                raise
        return cls(methods)


def _method_limits(section: Mapping[str, Any], where: str) -> MethodLimits:
    options = dict(section)
    adaptive = options.pop("adaptive", None)
    limits = build(MethodLimits, options, where, aliases={"executes": "max_concurrency"})
    if adaptive is True:
        return replace(limits, adaptive=AdaptiveLimitPolicy())
    if isinstance(adaptive, Mapping):
        policy = build(AdaptiveLimitPolicy, adaptive, f"{where}.adaptive", aliases={})
        return replace(limits, adaptive=policy)
    if adaptive not in (None, False):
        raise ConfigurationError(
            f"{where}.adaptive must be true, false or a mapping, got {adaptive!r}"
        )
    return limits
