"""``consistenthash`` — the same key goes to the same endpoint while the set allows.

A hash ring with ``replicas`` virtual nodes per endpoint (default 160, as Dubbo). A call's
key is hashed onto the ring and the first virtual node at or after it names the endpoint:
O(log n) by bisect. Removing one of N endpoints moves only the keys it owned (about 1/N);
adding one takes about 1/(N+1) from the others. Ring positions depend only on addresses
(BLAKE2b of ``address#block``, computed once per snapshot) and keys are hashed with CRC-32
(as groupcache does: ten times cheaper than a cryptographic hash per call, and as even over
the ring for real keys), never with Python's per-process ``hash()``: every consumer process
maps a key to the same endpoint.

The key comes from ``key=``:

* a callable ``Invocation -> str | bytes | None``;
* ``"header:NAME"`` — the first value of request metadata ``NAME``;
* ``"field:NAME"`` (or ``"field:a.b"``) — a field of the request message;
* default — the request's deterministic protobuf encoding (or ``str(request)`` for other
  objects).

A call whose key is ``None`` (header absent, client-streaming call with no request) goes to
a random endpoint: pinning every keyless call to one endpoint would make a hot spot. A key
function that raises is logged once and treated the same way.

``weighted=True`` gives each endpoint virtual nodes in proportion to its weight (at least
one); by default weights are ignored, as in Dubbo. ``warmup`` is accepted and has no effect:
ramping an endpoint's share of the ring would move keys back and forth while it warms.

With ``exclude`` (failover) the walk continues along the ring to the next endpoint not
excluded, so a retry also lands on the same second choice for the same key.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import random
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..endpoint import Endpoint
from ..errors import ConfigurationError
from ..invocation import Invocation
from ..outcome import Verdict
from . import Picker
from .options import DEFAULT_WARMUP, CommonOptions, integer_option, reject_unknown
from .weight import EMPTY_PICKER, live_endpoints

__all__ = [
    "DEFAULT_REPLICAS",
    "ConsistentHashBalancer",
    "ConsistentHashPicker",
    "KeyFunc",
    "hash_key",
    "key_function",
]

log = logging.getLogger(__name__)

KeyFunc = Callable[[Invocation], "str | bytes | None"]
"""Extracts the affinity key of a call; ``None`` when the call has none."""

DEFAULT_REPLICAS = 160
_MAX_REPLICAS = 10_000


def hash_key(key: str | bytes) -> int:
    """A key's 32-bit position on the ring: the same in every process and Python version."""
    return zlib.crc32(key.encode() if isinstance(key, str) else key)


def _points(address: str, count: int) -> list[int]:
    """``count`` 32-bit ring positions for ``address``, eight per BLAKE2b digest."""
    points: list[int] = []
    block = 0
    while len(points) < count:
        digest = hashlib.blake2b(f"{address}#{block}".encode(), digest_size=32).digest()
        points.extend(int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4))
        block += 1
    return points[:count]


def default_key(invocation: Invocation) -> str | bytes | None:
    """The request's deterministic encoding: equal requests hash equally."""
    request = invocation.request
    if request is None:
        return None
    if isinstance(request, (str, bytes)):
        return request
    serialize = getattr(request, "SerializeToString", None)
    if serialize is not None:
        data: bytes = serialize(deterministic=True)
        return data
    return str(request)


def _header_key(name: str) -> KeyFunc:
    def key(invocation: Invocation) -> str | None:
        return invocation.header(name)

    return key


def _field_key(path: Sequence[str]) -> KeyFunc:
    def key(invocation: Invocation) -> str | bytes | None:
        value: Any = invocation.request
        for part in path:
            value = getattr(value, part, None)
            if value is None:
                return None
        return value if isinstance(value, (str, bytes)) else str(value)

    return key


def key_function(spec: KeyFunc | str | None) -> KeyFunc:
    """Turn a ``key=`` option into a key function; :class:`ConfigurationError` if malformed."""
    if spec is None:
        return default_key
    if isinstance(spec, str):
        kind, sep, name = spec.partition(":")
        name = name.strip()
        kind = kind.strip().lower()
        if sep and name and kind == "header":
            return _header_key(name.lower())
        if sep and name and kind == "field" and all(part for part in name.split(".")):
            return _field_key(tuple(name.split(".")))
        raise ConfigurationError(
            f"balancer 'consistenthash': bad key {spec!r}; use 'header:NAME' (request "
            "metadata), 'field:NAME' (a request message field) or a callable"
        )
    if callable(spec):
        return spec
    raise ConfigurationError(
        f"balancer 'consistenthash': option 'key' must be a callable or a string, "
        f"got {type(spec).__name__}"
    )


class ConsistentHashPicker:
    """Looks keys up on one immutable ring."""

    __slots__ = ("_addresses", "_endpoints", "_key", "_owners", "_points", "_rand", "_warned")

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        replicas: Sequence[int],
        key: KeyFunc,
        rand: Callable[[], float],
    ) -> None:
        self._endpoints = tuple(endpoints)
        self._addresses = frozenset(ep.address for ep in self._endpoints)
        # Two endpoints may share a position (a few in 10^5 at 32 bits): ties go by address,
        # so every process orders them alike whatever the snapshot's order.
        ring = sorted(
            (point, ep.address, i)
            for i, ep in enumerate(self._endpoints)
            for point in _points(ep.address, replicas[i])
        )
        self._points = [point for point, _, _ in ring]
        self._owners = tuple(self._endpoints[i] for _, _, i in ring)
        self._key = key
        self._rand = rand
        self._warned = False

    def owner(self, key: str | bytes) -> Endpoint:
        """The endpoint ``key`` maps to, ignoring exclusions."""
        return self._owners[self._slot(hash_key(key))]

    def _slot(self, point: int) -> int:
        i = bisect.bisect_left(self._points, point)
        return 0 if i == len(self._points) else i

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        try:
            key = self._key(invocation)
        except Exception:
            if not self._warned:
                self._warned = True
                log.warning("consistenthash key function failed; picking at random", exc_info=True)
            key = None
        if key is None:
            return self._random(exclude)
        points = self._points
        i = bisect.bisect_left(points, zlib.crc32(key.encode() if isinstance(key, str) else key))
        if i == len(points):
            i = 0
        owner = self._owners[i]
        if not exclude or owner.address not in exclude:
            return owner
        if sum(1 for address in set(exclude) if address in self._addresses) >= len(self._endpoints):
            return None
        owners = self._owners
        length = len(owners)
        while owner.address in exclude:
            i = (i + 1) % length
            owner = owners[i]
        return owner

    def _random(self, exclude: Collection[str]) -> Endpoint | None:
        endpoints = self._endpoints
        start = int(self._rand() * len(endpoints))
        for step in range(len(endpoints)):
            ep = endpoints[(start + step) % len(endpoints)]
            if ep.address not in exclude:
                return ep
        return None


class ConsistentHashBalancer:
    """Builds :class:`ConsistentHashPicker`\\ s.

    Options: ``rng`` (for keyless calls), ``clock`` and ``warmup`` (accepted, unused), ``key``
    (see the module docstring), ``replicas`` (1..10000, default 160), ``weighted`` (bool).
    """

    tracks_load = False

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        warmup: float = DEFAULT_WARMUP,
        key: KeyFunc | str | None = None,
        replicas: int = DEFAULT_REPLICAS,
        weighted: bool = False,
        **unknown: object,
    ) -> None:
        reject_unknown("consistenthash", unknown, ("key", "replicas", "weighted"))
        self._options = CommonOptions.check("consistenthash", rng, clock, warmup)
        self._key = key_function(key)
        self._replicas = integer_option(
            "consistenthash", "replicas", replicas, minimum=1, maximum=_MAX_REPLICAS
        )
        if not isinstance(weighted, bool):
            raise ConfigurationError(
                f"balancer 'consistenthash': option 'weighted' must be true or false, "
                f"got {weighted!r}"
            )
        self._weighted = weighted

    def build(self, endpoints: Sequence[Endpoint]) -> Picker:
        live = live_endpoints(endpoints)
        if not live:
            return EMPTY_PICKER
        return ConsistentHashPicker(
            live, self._replica_counts(live), self._key, self._options.rng.random
        )

    def _replica_counts(self, endpoints: Sequence[Endpoint]) -> list[int]:
        if not self._weighted:
            return [self._replicas] * len(endpoints)
        mean = sum(ep.weight for ep in endpoints) / len(endpoints)
        if mean <= 0:
            return [self._replicas] * len(endpoints)
        return [max(1, round(self._replicas * ep.weight / mean)) for ep in endpoints]

    def started(self, endpoint: Endpoint) -> None:
        pass

    def finished(self, endpoint: Endpoint, latency: float, verdict: Verdict) -> None:
        pass
