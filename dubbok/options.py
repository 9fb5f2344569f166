"""Options of a reference (the consumer side of one service)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .service import MethodOptions

__all__ = ["ReferenceOptions"]


@dataclass(frozen=True, slots=True)
class ReferenceOptions:
    """How a reference calls its service. Per-method values override reference-wide ones."""

    service: str
    discovery: str
    loadbalance: str = "p2c"
    cluster: str = "failover"
    retries: int = 2
    timeout: float | None = None
    version: str = ""
    group: str = ""
    methods: Mapping[str, MethodOptions] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries must be an int >= 0, got {self.retries!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigurationError(
                f"timeout must be > 0 seconds (or None for no deadline), got {self.timeout!r}"
            )
