"""Application settings: resolving a name across scopes, and values bound to a model.

A setting ``NAME`` is looked up in ``global/NAME`` < ``apps/<app>/NAME`` <
``services/<service>/NAME`` (the last only when a service is given). Keys below the name
(``NAME/a/b``) contribute as nested fields (``{"a": {"b": …}}``), so a model can be bound
to a whole document or assembled from one key per field. Mappings merge across scopes,
field by field and recursively; anything else is replaced by the higher scope.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["MISSING", "Bound", "deep_merge", "resolve_setting"]

_log = logging.getLogger("dubbok.config")

M = TypeVar("M")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Marks "no value" (``None`` is a value a document may hold)."""


def deep_merge(low: Any, high: Any) -> Any:
    """``high`` over ``low``: mappings merge recursively, anything else is replaced."""
    if isinstance(low, Mapping) and isinstance(high, Mapping):
        out = dict(low)
        for key, value in high.items():
            out[key] = deep_merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(high)


def resolve_setting(
    values: Mapping[str, Any], scopes: Sequence[str], name: str
) -> tuple[Any, list[str]]:
    """The value of setting ``name``, and the keys it came from (lowest scope first).

    ``values`` maps config keys (``apps/shop/db``) to parsed values; ``scopes`` are the scope
    paths from the lowest (``global/``, ``apps/shop/``, …). Within a scope the document of
    an enclosing name contributes first (``db`` holding ``{pool: {size: 5}}`` gives
    ``db/pool/size`` the value 5), then the key itself, then keys below it. Returns
    :data:`MISSING` when nothing has it.
    """
    result: Any = MISSING
    sources: list[str] = []
    parts = name.split("/")
    below = f"{name}/"
    for scope in scopes:
        layer: Any = MISSING
        for cut in range(1, len(parts) + 1):
            key = scope + "/".join(parts[:cut])
            if key not in values:
                continue
            found = _dig(values[key], parts[cut:])
            if found is not MISSING:
                layer = found if layer is MISSING else deep_merge(layer, found)
                sources.append(key)
        for key in sorted(k for k in values if k.startswith(scope + below)):
            nested: Any = values[key]
            for part in reversed(key[len(scope + below) :].split("/")):
                nested = {part: nested}
            layer = nested if layer is MISSING else deep_merge(layer, nested)
            sources.append(key)
        if layer is not MISSING:
            result = layer if result is MISSING else deep_merge(result, layer)
    return result, sources


def _dig(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


Listener = Callable[[Any], None]


class Bound(Generic[M]):
    """A value that follows the configuration: :attr:`value` is always the latest value that
    validated. Attribute access falls through to it (``bound.pool_size``); use ``value``
    where the type matters.

    Updated by the config center's thread; reading ``value`` takes no lock. Listeners added
    with :meth:`on_change` run on that thread with the new value and must not block.
    """

    def __init__(self, name: str, value: M, sources: Sequence[str]) -> None:
        self._name = name
        self._value = value
        self._sources = tuple(sources)
        self._listeners: list[Callable[[M], None]] = []
        self._lock = threading.Lock()
        self._closer: Callable[[], None] | None = None

    @property
    def value(self) -> M:
        return self._value

    @property
    def name(self) -> str:
        return self._name

    @property
    def sources(self) -> tuple[str, ...]:
        """The config keys the current value was assembled from."""
        return self._sources

    def on_change(self, listener: Callable[[M], None]) -> None:
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def _update(self, value: M, sources: Sequence[str]) -> None:
        self._value = value
        self._sources = tuple(sources)
        for listener in self._listeners:
            try:
                listener(value)
            except Exception:  # a listener's bug must not stop the others or the watcher
                _log.exception("a listener of setting %r failed", self._name)

    def close(self) -> None:
        """Stop following changes; :attr:`value` keeps the last one."""
        closer, self._closer = self._closer, None
        if closer is not None:
            closer()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._value, name)

    def __repr__(self) -> str:
        return f"Bound({self._name!r}, {self._value!r})"
