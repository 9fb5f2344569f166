"""Parsing of discovery and registry URLs.

=====================================================  =======================================
``static://10.0.0.1:50051,10.0.0.2:50051``             a fixed list
``dns:///greeter.shop.svc.cluster.local:50051``        A/AAAA records, port from the URL
``dns+srv:///_grpc._tcp.greeter.shop.svc``             SRV records carry ports and weights
``etcd://h1:2379,h2:2379/?namespace=shop``             etcd registry (and config center)
=====================================================  =======================================

Query parameters are kept as a plain mapping for the scheme's own factory to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from .endpoint import split_address
from .errors import ConfigurationError, InvalidURLError

__all__ = ["ParsedURL", "parse_url"]


@dataclass(frozen=True, slots=True)
class ParsedURL:
    """A URL split into scheme, authority hosts, path and query parameters."""

    raw: str
    scheme: str
    hosts: tuple[str, ...]
    path: str
    params: dict[str, str] = field(hash=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def param(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def redacted(self) -> str:
        """The URL without its password, for logs and error messages."""
        if self.password is None:
            return self.raw
        scheme, _, rest = self.raw.partition("://")
        creds, _, tail = rest.partition("@")
        return f"{scheme}://{creds.partition(':')[0]}:***@{tail}"


def parse_url(url: str) -> ParsedURL:
    """Split ``url``; raise :class:`InvalidURLError` saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidURLError(str(url), "empty URL")
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise InvalidURLError(url, "missing '://' after the scheme")
    scheme = scheme.lower()
    if not scheme:
        raise InvalidURLError(url, "missing scheme")
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    username = password = None
    if "@" in authority:
        creds, _, authority = authority.rpartition("@")
        user, _, pw = creds.partition(":")
        username, password = unquote(user), unquote(pw) if pw else None
    hosts = tuple(h for h in (p.strip() for p in authority.split(",")) if h)
    for h in hosts:
        try:
            split_address(h)
        except ConfigurationError as exc:
            raise InvalidURLError(url, exc.message) from None
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise InvalidURLError(url, f"malformed query string {query!r}") from None
    return ParsedURL(
        raw=text,
        scheme=scheme,
        hosts=hosts,
        path=unquote(path) if slash else "",
        params=params,
        username=username,
        password=password,
    )
