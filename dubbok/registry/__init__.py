"""Registry: where providers announce themselves and consumers say who they are.

A provider's :class:`~dubbok.App` registers each exported service after its port listens and
its health is SERVING, and unregisters first when it stops. The built-in registry is etcd
(``dubbok.registry.etcd``); :class:`NoopRegistry` stands in when ``App(registry=None)``.

To add a registry, expose a factory ``(ParsedURL, RegistryOptions) -> Registry`` under the
``dubbok.registry`` entry-point group, named by the URL scheme.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from ..endpoint import Endpoint
from ..errors import InvalidURLError
from ..url import ParsedURL, parse_url

__all__ = [
    "ConsumerInfo",
    "NoopRegistry",
    "Registry",
    "RegistryOptions",
    "create_registry",
]


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """What a consumer publishes about itself under ``services/<service>/consumers/``."""

    app: str
    host: str
    pid: int
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)


@runtime_checkable
class Registry(Protocol):
    """Announces providers and consumers.

    Called from the application's thread (the asyncio driver runs these in an executor): each
    call may block on the network for at most a few seconds and raises
    :class:`~dubbok.errors.RegistryError` when the registry cannot be reached. Once a
    registration succeeded, keeping it alive (leases, reconnects) is the registry's own job,
    on its own thread; it never raises from there.
    """

    def register(self, service: str, endpoint: Endpoint) -> None: ...

    def unregister(self, service: str, endpoint: Endpoint) -> None: ...

    def register_consumer(self, service: str, consumer: ConsumerInfo) -> None: ...

    def close(self) -> None:
        """Unregister everything still registered (revoke the lease) and disconnect."""


class NoopRegistry:
    """A registry that records nothing (``App(registry=None)``)."""

    def register(self, service: str, endpoint: Endpoint) -> None:
        pass

    def unregister(self, service: str, endpoint: Endpoint) -> None:
        pass

    def register_consumer(self, service: str, consumer: ConsumerInfo) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """Process-wide settings a registry factory may use."""

    app: str = ""
    lease_ttl: float = 10.0


RegistryFactory = Callable[[ParsedURL, RegistryOptions], Registry]

_BUILTIN: dict[str, str] = {"etcd": "dubbok.registry.etcd:EtcdRegistry.from_url"}


def create_registry(url: str | None, options: RegistryOptions | None = None) -> Registry:
    """The registry a URL names; ``None`` gives a :class:`NoopRegistry`."""
    if url is None:
        return NoopRegistry()
    parsed = parse_url(url)
    opts = options or RegistryOptions()
    if parsed.scheme in _BUILTIN:
        module_name, _, attr = _BUILTIN[parsed.scheme].partition(":")
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        factory: RegistryFactory = obj  # type: ignore[assignment]
        return factory(parsed, opts)
    for ep in entry_points(group="dubbok.registry"):
        if ep.name == parsed.scheme:
            loaded: RegistryFactory = ep.load()
            return loaded(parsed, opts)
    raise InvalidURLError(
        url, f"no registry for scheme {parsed.scheme!r}; use etcd://host:2379/?namespace=NAME"
    )
