"""Gray release: which instances a gray rule selects.

Each process knows who it is (:class:`InstanceIdentity`: app, instance id, host, tags). A
document's ``gray:`` entries whose ``select`` matches that identity are applied over the
document, in order. ``percent`` picks instances by a stable hash of the gray rule's name and
the instance id, so an instance keeps its answer while it runs, and raising the percentage
(10 → 50) keeps the instances already chosen and adds others.

The default instance id is ``<host>:<pid>``, the same pair a consumer registers under
``services/<service>/consumers/<app>@<host>:<pid>``, so a tool reading the registry can tell
which registered consumers a rule selects.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import ConfigurationError
from .rules import GraySelector

__all__ = ["InstanceIdentity", "selects", "stable_percent"]


@dataclass(frozen=True, slots=True)
class InstanceIdentity:
    """Who this process is, for gray selection."""

    app: str
    instance: str
    host: str = ""
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.instance, str) or not self.instance:
            raise ConfigurationError("an instance identity needs a non-empty instance id")
        for key, value in self.tags.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigurationError(
                    f"instance tags must map text to text, got {key!r}: {value!r}"
                )
        if not isinstance(self.tags, MappingProxyType):
            object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))

    @classmethod
    def local(
        cls,
        app: str,
        *,
        tags: Mapping[str, str] | None = None,
        instance: str | None = None,
    ) -> InstanceIdentity:
        """This process: ``<host>:<pid>`` unless ``instance`` is given."""
        host = socket.gethostname()
        return cls(app, instance or f"{host}:{os.getpid()}", host, dict(tags or {}))


def stable_percent(salt: str, instance: str) -> float:
    """A number in [0, 100) fixed by ``salt`` and ``instance`` (uniform over instances)."""
    digest = hashlib.sha256(f"{salt}\x00{instance}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def selects(selector: GraySelector, name: str, identity: InstanceIdentity) -> bool:
    """Whether the gray rule ``name`` with ``selector`` applies to ``identity``."""
    if selector.apps is not None and identity.app not in selector.apps:
        return False
    if selector.instances is not None and not (
        identity.instance in selector.instances
        or (identity.host and identity.host in selector.instances)
    ):
        return False
    if selector.tags is not None:
        for key, value in selector.tags.items():
            if identity.tags.get(key) != value:
                return False
    return selector.percent is None or stable_percent(name, identity.instance) < selector.percent
