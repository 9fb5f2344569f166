"""Tag routing: lanes of providers (canary, a tenant, a developer's branch) chosen per call.

A provider joins a lane through its tags: ``Endpoint.tags["tag"] == "canary"`` (the tag key
is an option). A call's tag comes from request metadata ``x-dubbok-tag``, or else from
:func:`use_tag` in the calling context::

    with use_tag("canary"):
        greeter.SayHello(request)        # goes to providers tagged canary, if any

Rules (Dubbo's): a tagged call goes to the providers of its lane; when the lane has none it
falls back to untagged providers, unless forced (``force=True`` on the router or in
:func:`use_tag`), in which case it fails. An untagged call goes to untagged providers only —
lanes never receive traffic that did not ask for them.

The tag header is also how a lane survives a hop: a provider that received a tagged call
sets the same tag on the calls it makes while serving it (the drivers do this with
:func:`use_tag`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ..endpoint import Endpoint
from ..errors import ConfigurationError
from ..invocation import Invocation
from .step import members, route_prepared

__all__ = [
    "TAG_HEADER",
    "TAG_KEY",
    "RequestTag",
    "TagRouter",
    "current_tag",
    "request_tag",
    "use_tag",
]

TAG_HEADER = "x-dubbok-tag"
"""Request metadata carrying the call's tag."""

TAG_KEY = "tag"
"""The endpoint tag whose value names the endpoint's lane."""


@dataclass(frozen=True, slots=True)
class RequestTag:
    """A call's tag; ``force`` forbids falling back to untagged providers."""

    value: str
    force: bool = False


_current: contextvars.ContextVar[RequestTag | None] = contextvars.ContextVar(
    "dubbok_tag", default=None
)


@contextmanager
def use_tag(tag: str, *, force: bool = False) -> Iterator[RequestTag]:
    """Tag the calls made inside the block (this thread, or this asyncio task and the tasks
    it starts). ``use_tag("")`` makes them untagged."""
    if not isinstance(tag, str):
        raise ConfigurationError(f"a tag must be a string, got {type(tag).__name__}")
    value = RequestTag(tag.strip(), force)
    token = _current.set(value)
    try:
        yield value
    finally:
        _current.reset(token)


def enter_tag(value: str) -> contextvars.Token[RequestTag | None]:
    """Make an incoming call's tag current (the provider side does this per handled call)."""
    return _current.set(RequestTag(value.strip()))


def leave_tag(token: contextvars.Token[RequestTag | None]) -> None:
    _current.reset(token)


def current_tag() -> RequestTag | None:
    """The tag :func:`use_tag` set in this context, if any."""
    return _current.get()


def request_tag(invocation: Invocation, header: str = TAG_HEADER) -> RequestTag | None:
    """The call's tag: its metadata header first (set by the caller for this call), else the
    context's :func:`use_tag`."""
    value = invocation.header(header)
    if value is not None:
        return RequestTag(value.strip())
    return _current.get()


class _TagStep:
    __slots__ = ("_by_tag", "_endpoints", "_force", "_header", "_key", "_untagged", "invariant")

    def __init__(self, router: TagRouter, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._header = router.header
        self._key = router.key
        self._force = router.force
        by_tag: dict[str, int] = {}
        untagged = 0
        for i, ep in enumerate(self._endpoints):
            lane = ep.tags.get(self._key, "")
            if lane:
                by_tag[lane] = by_tag.get(lane, 0) | 1 << i
            else:
                untagged |= 1 << i
        self._by_tag = by_tag
        self._untagged = untagged
        # No endpoint carries a lane: every call goes to all of them, so the step needs no
        # per-call work (a call forced into a lane by use_tag(force=True) is not refused).
        self.invariant = not by_tag and not self._force

    def select(self, invocation: Invocation | None, mask: int) -> int:
        # request_tag(), inlined: this runs on every call.
        value: str | bytes | None = None
        force = self._force
        if invocation is not None:
            header = self._header
            for key, found in invocation.metadata:
                if key == header:
                    value = found
                    break
        if value is None:
            tag = _current.get()
            if tag is not None:
                value = tag.value
                force = force or tag.force
        elif isinstance(value, bytes):
            value = value.decode(errors="replace").strip()
        else:
            value = value.strip()
        if not value:
            return mask & self._untagged
        lane = mask & self._by_tag.get(value, 0)
        if lane or force:
            return lane
        return mask & self._untagged

    def decided(self, invocation: Invocation, mask: int) -> str:
        tag = request_tag(invocation, self._header)
        if tag is None or not tag.value:
            return "untagged call: the untagged endpoints"
        if mask & self._by_tag.get(tag.value, 0) or self._force or tag.force:
            return f"call tagged {tag.value!r}: its lane"
        return f"call tagged {tag.value!r}: no endpoint in that lane, the untagged ones"

    def explain(self, invocation: Invocation | None, mask: int) -> str:
        tag = None if invocation is None else request_tag(invocation, self._header)
        lanes = sorted({ep.tags.get(self._key, "") for ep in members(self._endpoints, mask)})
        seen = ", ".join(repr(lane) for lane in lanes if lane) or "none"
        if tag is None or not tag.value:
            return (
                f"untagged call, but every endpoint carries a {self._key!r} tag ({seen}); "
                f"tag the call with {self._header} or use_tag(), or start an untagged provider"
            )
        if self._force or tag.force:
            return f"call tagged {tag.value!r}, forced; lanes present: {seen}"
        return (
            f"call tagged {tag.value!r}: no endpoint in that lane and none untagged to fall "
            f"back to; lanes present: {seen}"
        )


class TagRouter:
    """Routes tagged calls to their lane. See the module docstring.

    ``header``: request metadata with the call's tag (lower-case); ``key``: the endpoint tag
    naming its lane; ``force``: never fall back to untagged providers.
    """

    __slots__ = ("force", "header", "key")

    name = "tag"

    def __init__(
        self, *, header: str = TAG_HEADER, key: str = TAG_KEY, force: bool = False
    ) -> None:
        if not isinstance(header, str) or not header.strip():
            raise ConfigurationError(f"tag router: header must be a metadata key, got {header!r}")
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError(f"tag router: key must be a tag name, got {key!r}")
        if not isinstance(force, bool):
            raise ConfigurationError(f"tag router: force must be true or false, got {force!r}")
        self.header = header.strip().lower()
        self.key = key.strip()
        self.force = force

    def prepare(self, endpoints: Sequence[Endpoint]) -> _TagStep:
        return _TagStep(self, endpoints)

    def route(self, endpoints: Sequence[Endpoint], invocation: Invocation) -> Sequence[Endpoint]:
        return route_prepared(self, endpoints, invocation)
