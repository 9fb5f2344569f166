"""Discovery: where a service's endpoints come from.

A :class:`Discovery` turns a service name into a stream of endpoint sets. Each scheme of
discovery URL names one implementation:

==============  ==================================================  ===========================
scheme          implementation                                      module
==============  ==================================================  ===========================
``static``      a fixed list                                        ``dubbok.discovery.static``
``dns``         headless-service A/AAAA records                     ``dubbok.discovery.dns``
``dns+srv``     SRV records                                         ``dubbok.discovery.dns``
``etcd``        the etcd registry                                   ``dubbok.registry.etcd``
==============  ==================================================  ===========================

To add a scheme, expose a factory ``(ParsedURL, DiscoveryOptions) -> Discovery`` under the
``dubbok.discovery`` entry-point group, named by the scheme.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..endpoint import Endpoint
from ..errors import InvalidURLError
from ..url import ParsedURL, parse_url

__all__ = [
    "Discovery",
    "DiscoveryFactory",
    "DiscoveryOptions",
    "Listener",
    "Subscription",
    "create_discovery",
]

Listener = Callable[[Sequence[Endpoint]], None]
"""Receives the complete current endpoint set of one service, each time it changes.

Called from the discovery's own thread (or synchronously inside ``subscribe`` for the first
set when it is known at once). It must be quick and must not raise; a listener that raises is
logged and the discovery carries on.
"""


@runtime_checkable
class Subscription(Protocol):
    """A live subscription to one service's endpoints."""

    def cancel(self) -> None:
        """Stop delivering updates. Idempotent; never raises."""

    def refresh(self) -> None:
        """Hint that every known endpoint is failing: look again soon (rate-limited).

        Never blocks, never raises. Schemes with push updates may ignore it.
        """


@runtime_checkable
class Discovery(Protocol):
    """Source of endpoint sets for services.

    Called from application threads or an event loop; ``subscribe`` must not block for long
    (it may do one initial lookup bounded by a timeout) and reports later changes from a
    background thread. ``close`` stops every subscription and releases connections.
    """

    def subscribe(self, service: str, listener: Listener) -> Subscription:
        """Deliver ``service``'s endpoints to ``listener`` now (if known) and on each change.

        Raises :class:`~dubbok.errors.DubbokError` only for problems the caller must fix
        (bad URL parameters); an unreachable backend is retried in the background.
        """

    def close(self) -> None:
        """Cancel all subscriptions and release resources. Idempotent."""


@dataclass(frozen=True, slots=True)
class DiscoveryOptions:
    """Process-wide context a discovery factory may use."""

    app: str = ""
    namespace: str = "default"
    snapshot_dir: Path | None = None


DiscoveryFactory = Callable[[ParsedURL, DiscoveryOptions], Discovery]

# Built-ins load lazily so that `import dubbok` does not import etcd or dnspython.
_BUILTIN: dict[str, str] = {
    "static": "dubbok.discovery.static:StaticDiscovery.from_url",
    "dns": "dubbok.discovery.dns:DnsDiscovery.from_url",
    "dns+srv": "dubbok.discovery.dns:DnsDiscovery.from_url",
    "etcd": "dubbok.registry.etcd:EtcdDiscovery.from_url",
}


def _load(target: str) -> DiscoveryFactory:
    module_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def factory_for(scheme: str) -> DiscoveryFactory | None:
    """The factory registered for ``scheme``: built-ins first, then entry points."""
    if scheme in _BUILTIN:
        return _load(_BUILTIN[scheme])
    for ep in entry_points(group="dubbok.discovery"):
        if ep.name == scheme:
            loaded: DiscoveryFactory = ep.load()
            return loaded
    return None


def create_discovery(url: str, options: DiscoveryOptions | None = None) -> Discovery:
    """Build the discovery a URL names; :class:`InvalidURLError` if it names none."""
    parsed = parse_url(url)
    factory = factory_for(parsed.scheme)
    if factory is None:
        known = sorted({*_BUILTIN, *(ep.name for ep in entry_points(group="dubbok.discovery"))})
        raise InvalidURLError(url, f"unknown scheme {parsed.scheme!r} (known: {', '.join(known)})")
    return factory(parsed, options or DiscoveryOptions())
