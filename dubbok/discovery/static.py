"""``static://host:port[,host:port...]`` — a fixed endpoint list (direct connection, tests)."""

from __future__ import annotations

from collections.abc import Sequence

from ..endpoint import Endpoint, unique_by_address
from ..errors import InvalidURLError
from ..url import ParsedURL
from . import DiscoveryOptions, Listener

__all__ = ["StaticDiscovery"]


class _StaticSubscription:
    __slots__ = ()

    def cancel(self) -> None:
        pass

    def refresh(self) -> None:
        pass


class StaticDiscovery:
    """Every service resolves to the same fixed list of endpoints."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = unique_by_address(endpoints)

    @classmethod
    def from_url(cls, url: ParsedURL, options: DiscoveryOptions) -> StaticDiscovery:
        if not url.hosts:
            raise InvalidURLError(url.raw, "a static URL needs at least one host:port")
        if url.path:
            raise InvalidURLError(
                url.raw, f"unexpected path {url.path!r}; list endpoints as static://a:1,b:2"
            )
        return cls([Endpoint.parse(h) for h in url.hosts])

    def subscribe(self, service: str, listener: Listener) -> _StaticSubscription:
        listener(self.endpoints)
        return _StaticSubscription()

    def close(self) -> None:
        pass
