"""Version and group matching: a consumer only sees the providers it asked for.

``version``: ``"*"`` accepts any; a pattern with ``*``, ``?`` or ``[...]`` is a glob matched
against the whole version (``"1.*"`` accepts ``1.0`` and ``1.2.3``, not ``11.0``); anything
else must be equal. ``""`` accepts only providers that declare no version.

``group``: ``"*"`` accepts any; otherwise it must be equal — ``""`` accepts only providers
with no group, so a grouped provider is never called by accident.

Both depend on the snapshot only: applied once per snapshot.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence

from ..endpoint import Endpoint
from ..errors import ConfigurationError
from ..invocation import Invocation
from .step import FixedStep, mask_of, members, route_prepared

__all__ = ["VersionRouter", "version_matcher"]

_GLOB = re.compile(r"[*?\[]")


def version_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate for ``pattern`` (see the module docstring)."""
    if pattern == "*":
        return lambda version: True
    if _GLOB.search(pattern):
        compiled = re.compile(fnmatch.translate(pattern))
        return lambda version: compiled.match(version) is not None
    return lambda version: version == pattern


def _text(option: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(
            f"version router: {option} must be a string ('*' for any), got {value!r}"
        )
    return value.strip()


class VersionRouter:
    """Keeps endpoints whose version matches ``version`` and whose group matches ``group``."""

    __slots__ = ("_accepts_group", "_accepts_version", "group", "version")

    name = "version"

    def __init__(self, version: str = "*", group: str = "*") -> None:
        self.version = _text("version", version)
        self.group = _text("group", group)
        self._accepts_version = version_matcher(self.version)
        wanted = self.group
        self._accepts_group: Callable[[str], bool] = (
            (lambda group: True) if wanted == "*" else (lambda group: group == wanted)
        )

    def accepts(self, endpoint: Endpoint) -> bool:
        return self._accepts_version(endpoint.version) and self._accepts_group(endpoint.group)

    def prepare(self, endpoints: Sequence[Endpoint]) -> FixedStep:
        snapshot = tuple(endpoints)

        def describe(mask: int) -> str:
            present = members(snapshot, mask)
            versions = _listing(ep.version for ep in present)
            groups = _listing(ep.group for ep in present)
            return (
                f"wants version {self.version!r} and group {self.group!r}; "
                f"providers have versions {versions} and groups {groups}"
            )

        return FixedStep(mask_of(snapshot, self.accepts), describe)

    def route(self, endpoints: Sequence[Endpoint], invocation: Invocation) -> Sequence[Endpoint]:
        return route_prepared(self, endpoints, invocation)


def _listing(values: Iterable[str]) -> str:
    distinct = sorted(set(values))
    shown = ", ".join(repr(v) for v in distinct[:5])
    return shown + (", ..." if len(distinct) > 5 else "")
