"""Options the built-in balancers share, checked once when a balancer is made.

Every built-in balancer takes keyword options only. Three are common to all of them:

=========  ==============================  ===================================================
option     default                         meaning
=========  ==============================  ===================================================
``rng``    a fresh ``random.Random()``     source of randomness (seed one in tests)
``clock``  ``time.time``                   wall clock in seconds; warm-up compares it with
                                           :attr:`Endpoint.started_at`, a UNIX time
``warmup`` ``0`` (off)                     seconds over which a new endpoint's weight ramps
=========  ==============================  ===================================================

A value of the wrong type or out of range, or an option the balancer does not know, raises
:class:`~dubbok.errors.ConfigurationError` naming the balancer and the option.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["DEFAULT_WARMUP", "CommonOptions", "integer_option", "number_option", "reject_unknown"]

DEFAULT_WARMUP = 0.0
"""Warm-up is off unless asked for: CPython has no JIT to warm, and a provider whose caches
or pools need it says so through the governance rules (``warmup: 60``)."""

COMMON = ("rng", "clock", "warmup")


@dataclass(frozen=True, slots=True)
class CommonOptions:
    """The options every built-in balancer takes, validated."""

    rng: random.Random
    clock: Callable[[], float]
    warmup: float

    @classmethod
    def check(
        cls,
        kind: str,
        rng: object,
        clock: object,
        warmup: object,
    ) -> CommonOptions:
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise ConfigurationError(
                f"balancer {kind!r}: option 'rng' must be a random.Random, got {type(rng).__name__}"
            )
        if not callable(clock):
            raise ConfigurationError(
                f"balancer {kind!r}: option 'clock' must be a callable returning seconds, "
                f"got {type(clock).__name__}"
            )
        seconds = number_option(kind, "warmup", warmup, minimum=0.0)
        return cls(rng, clock, seconds)


def number_option(
    kind: str,
    name: str,
    value: object,
    *,
    minimum: float,
    inclusive: bool = True,
) -> float:
    """``value`` as a finite float ``>= minimum`` (``> minimum`` unless ``inclusive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"balancer {kind!r}: option {name!r} must be a number, got {value!r}"
        )
    number = float(value)
    low_ok = number >= minimum if inclusive else number > minimum
    if not math.isfinite(number) or not low_ok:
        bound = ">=" if inclusive else ">"
        raise ConfigurationError(
            f"balancer {kind!r}: option {name!r} must be a finite number {bound} {minimum:g}, "
            f"got {value!r}"
        )
    return number


def integer_option(kind: str, name: str, value: object, *, minimum: int, maximum: int) -> int:
    """``value`` as an int in ``minimum..maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"balancer {kind!r}: option {name!r} must be an integer, got {value!r}"
        )
    if not minimum <= value <= maximum:
        raise ConfigurationError(
            f"balancer {kind!r}: option {name!r} must be in {minimum}..{maximum}, got {value}"
        )
    return value


def reject_unknown(kind: str, unknown: Mapping[str, object], own: Iterable[str] = ()) -> None:
    """Raise if any option is not one the balancer knows; typos must not pass silently."""
    if unknown:
        known = ", ".join(sorted({*COMMON, *own}))
        names = ", ".join(repr(k) for k in sorted(unknown))
        raise ConfigurationError(f"balancer {kind!r} has no option {names}; it takes: {known}")
