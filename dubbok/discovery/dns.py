"""DNS discovery: Kubernetes headless Services (and any DNS zone) as an endpoint source.

=====================================================================  ========================
``dns:///greeter.shop.svc.cluster.local:50051``                        A and AAAA records; the
                                                                       port comes from the URL
``dns+srv:///_grpc._tcp.greeter.shop.svc.cluster.local``               SRV records; ports and
                                                                       weights from the records
=====================================================================  ========================

Query parameters (all optional):

``nameserver=IP[:PORT]``
    Ask these servers (repeat the parameter or separate with commas); the port defaults to 53.
    A URL authority names servers too, as in gRPC's ``dns://8.8.8.8:53/name:port``. Without
    either, the system's resolver configuration (``/etc/resolv.conf``) is used, with its
    search list applied to single-label names (``dns:///greeter:50051``).
``min_ttl=SECONDS`` (default 1)
    Floor of the re-resolution period, and the rate limit of :meth:`DnsSubscription.refresh`.
    It keeps a TTL of 0 from turning into a busy loop and bounds the query rate to one
    lookup a second per URL, which cluster DNS absorbs easily.
``max_ttl=SECONDS`` (default 30)
    Ceiling of the re-resolution period: 30 s is the TTL kubeadm's CoreDNS hands out (and the
    period at which gRPC's own resolver may re-resolve), so a resolver serving hour-long TTLs
    cannot leave the set stale for longer than a Kubernetes cluster would anyway.
``timeout=SECONDS`` (default 2)
    How long one DNS question may take, retries of a lost UDP packet included.
``family=any|ipv4|ipv6`` (default any)
    Which address records to ask for; ``ipv4`` avoids AAAA questions that some resolvers
    answer badly.

Between lookups the set is re-resolved when the record TTL runs out (clamped as above), and
at once when a consumer calls :meth:`DnsSubscription.refresh` (rate-limited by ``min_ttl``).
An NXDOMAIN, SERVFAIL, timeout or empty answer never replaces a good set: the last good set
stays, the failure is logged once per change of state, and lookups continue with backoff
from ``min_ttl`` up to ``max_ttl``.
"""

from __future__ import annotations

import logging
import threading

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from ..endpoint import Endpoint
from ..errors import ConfigurationError, DubbokError, InvalidURLError
from ..url import ParsedURL
from . import DiscoveryOptions, Listener
from ._dns_lookup import (
    SRV_ZERO_WEIGHT,
    DnsTarget,
    LookupFailure,
    LookupResult,
    Query,
    State,
    lookup,
    resolver_query,
)
from ._dns_schedule import ResolveSchedule
from ._dns_url import DEFAULT_MAX_TTL, DEFAULT_MIN_TTL, DEFAULT_TIMEOUT, DnsOptions, parse_dns_url

__all__ = [
    "DEFAULT_MAX_TTL",
    "DEFAULT_MIN_TTL",
    "DEFAULT_TIMEOUT",
    "SRV_ZERO_WEIGHT",
    "DnsDiscovery",
    "DnsOptions",
    "DnsSubscription",
    "DnsTarget",
    "State",
    "parse_dns_url",
]

log = logging.getLogger("dubbok.discovery.dns")


class DnsSubscription:
    """One listener of a :class:`DnsDiscovery`. Returned by ``subscribe``; thread-safe."""

    __slots__ = ("_cancelled", "_discovery", "_generation", "_listener", "_lock", "service")

    def __init__(self, discovery: DnsDiscovery, service: str, listener: Listener) -> None:
        self.service = service
        self._discovery = discovery
        self._listener = listener
        # Serialises calls to the listener and drops stale sets: the first set may be handed
        # over by `subscribe` while the watcher thread delivers a newer one.
        self._lock = threading.Lock()
        self._generation = 0
        self._cancelled = False

    def cancel(self) -> None:
        """Stop delivering updates; the last subscription's cancel stops the lookups."""
        if self._cancelled:
            return
        self._cancelled = True
        self._discovery._remove(self)

    def refresh(self) -> None:
        """Look up again now, unless a lookup started less than ``min_ttl`` ago (then soon)."""
        if not self._cancelled:
            self._discovery._refresh()

    def _deliver(self, generation: int, endpoints: tuple[Endpoint, ...]) -> None:
        with self._lock:
            if self._cancelled or generation <= self._generation:
                return
            self._generation = generation
            try:
                self._listener(endpoints)
            except Exception:
                log.exception(
                    "DNS discovery: the listener for %s raised; it will get the next change",
                    self.service,
                )


class DnsDiscovery:
    """Endpoints from DNS records of one name, shared by every subscription.

    The URL alone says where the endpoints are: ``subscribe(service, ...)`` does not put the
    gRPC service name into the lookup, so every subscription of one instance receives the
    same set. One daemon thread per instance (named ``dubbok-dns:<name>``) does the lookups
    for all of its subscriptions — one query stream per DNS name however many services are
    served there. It starts with the first subscription and stops with the last
    cancellation or :meth:`close`. Listeners run on that thread, one call at a time each,
    with the complete sorted set, and only when it changed.
    """

    def __init__(
        self,
        target: DnsTarget,
        options: DnsOptions | None = None,
        *,
        query: Query | None = None,
    ) -> None:
        """``query`` replaces the resolver (tests); by default one is built from ``options``."""
        self.target = target
        self.options = options or DnsOptions()
        self._query = query or _resolver_query(self.options)
        self._lock = threading.Lock()
        self._watcher: _Watcher | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: ParsedURL, options: DiscoveryOptions) -> DnsDiscovery:
        """Build from ``dns:///name:port`` or ``dns+srv:///name``; see the module docstring."""
        target, dns_options = parse_dns_url(url)
        try:
            return cls(target, dns_options)
        except ConfigurationError as exc:
            raise InvalidURLError(url.redacted(), exc.message) from None

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The last good set (empty before the first good answer or with no subscription)."""
        watcher = self._watcher
        return watcher.endpoints if watcher else ()

    @property
    def state(self) -> State | None:
        """Outcome of the latest lookup; None before the first one."""
        watcher = self._watcher
        return watcher.state if watcher else None

    def subscribe(self, service: str, listener: Listener) -> DnsSubscription:
        """Add a listener; deliver the set now when known.

        The first subscription starts the lookups and waits for the first one (at most about
        twice ``timeout``), so a reachable DNS has delivered a set by the time this returns.
        An unreachable or failing DNS delivers nothing and is retried in the background.
        """
        with self._lock:
            if self._closed:
                raise DubbokError(f"DNS discovery of {self.target} is closed; create a new one")
            if self._watcher is None:
                self._watcher = _Watcher(self.target, self.options, self._query)
                self._watcher.start()
            watcher = self._watcher
            subscription = DnsSubscription(self, service, listener)
            generation, endpoints = watcher.add(subscription)
        if generation:
            subscription._deliver(generation, endpoints)
        else:
            watcher.wait_first(2 * self.options.timeout)
        return subscription

    def close(self) -> None:
        """Cancel every subscription and stop the lookup thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop(self.options.timeout + 1)

    def _remove(self, subscription: DnsSubscription) -> None:
        with self._lock:
            watcher = self._watcher
            if watcher is None or watcher.remove(subscription):
                return
            self._watcher = None
        watcher.stop(self.options.timeout + 1)

    def _refresh(self) -> None:
        watcher = self._watcher
        if watcher is not None:
            watcher.refresh()

    def __enter__(self) -> DnsDiscovery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        scheme = "dns+srv" if self.target.srv else "dns"
        return f"<DnsDiscovery {scheme}:///{self.target}>"


class _Stopped(Exception):
    """The watcher was stopped in the middle of a lookup."""


class _Watcher:
    """The lookup thread of one :class:`DnsDiscovery` and the subscriptions it feeds."""

    def __init__(self, target: DnsTarget, options: DnsOptions, query: Query) -> None:
        self.target = target
        self._query = query
        self._lock = threading.Lock()
        self._subscriptions: list[DnsSubscription] = []
        self._schedule = ResolveSchedule(options.min_ttl, options.max_ttl)
        self.endpoints: tuple[Endpoint, ...] = ()
        self._generation = 0
        self.state: State | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._first_done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dubbok-dns:{target}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, subscription: DnsSubscription) -> tuple[int, tuple[Endpoint, ...]]:
        with self._lock:
            self._subscriptions.append(subscription)
            return self._generation, self.endpoints

    def remove(self, subscription: DnsSubscription) -> bool:
        """Drop ``subscription``; return whether any remain."""
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            return bool(self._subscriptions)

    def wait_first(self, timeout: float) -> None:
        self._first_done.wait(timeout)

    def refresh(self) -> None:
        with self._lock:
            moved = self._schedule.refresh()
        if moved:
            self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        # A listener may cancel or close from this very thread: it cannot join itself.
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                delay = self._schedule.delay()
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()
                continue
            try:
                self._resolve_once()
            except _Stopped:
                return
            finally:
                self._first_done.set()

    def _ask(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.QueryMessage:
        if self._stop.is_set():
            raise _Stopped
        return self._query(name, rdtype)

    def _resolve_once(self) -> None:
        with self._lock:
            self._schedule.started()
        try:
            result = lookup(self.target, self._ask)
        except LookupFailure as exc:
            self._failed(exc.state, exc.detail)
        except _Stopped:
            raise
        except Exception as exc:
            # A bug or a malformed answer must not kill the thread or the last good set.
            log.debug("DNS %s: unexpected lookup error", self.target, exc_info=True)
            self._failed("error", f"{type(exc).__name__}: {exc}")
        else:
            self._succeeded(result)

    def _succeeded(self, result: LookupResult) -> None:
        with self._lock:
            previous, self.state = self.state, "ok"
            wait = self._schedule.succeeded(result.ttl)
            changed = result.endpoints != self.endpoints
            if changed:
                self.endpoints = result.endpoints
                self._generation += 1
            generation, subscriptions = self._generation, list(self._subscriptions)
        if previous not in (None, "ok"):
            log.info(
                "DNS %s: lookup recovered (%s → ok): %d endpoints",
                self.target,
                previous,
                len(result.endpoints),
            )
        if not changed:
            return
        log.debug(
            "DNS %s: %d endpoints %s; next lookup in %.1fs",
            self.target,
            len(result.endpoints),
            [e.address for e in result.endpoints],
            wait,
        )
        for subscription in subscriptions:
            if self._stop.is_set():
                return
            subscription._deliver(generation, result.endpoints)

    def _failed(self, state: State, detail: str) -> None:
        with self._lock:
            previous, self.state = self.state, state
            wait = self._schedule.failed()
            kept = len(self.endpoints)
        if state == previous:
            log.debug("DNS %s: still %s: %s", self.target, state, detail)
            return
        keeping = f"keeping the last {kept} endpoints" if kept else "no endpoints known yet"
        log.warning(
            "DNS %s: lookup failed (%s → %s): %s; %s; retrying in %.1fs, backing off to %gs",
            self.target,
            previous or "start",
            state,
            detail,
            keeping,
            wait,
            self._schedule.max_ttl,
        )


def _resolver_query(options: DnsOptions) -> Query:
    if options.nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in options.nameservers]
        search = False
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigurationError(
                f"no system DNS configuration ({exc}); name a server with ?nameserver=IP:PORT"
            ) from None
        # Names with a dot are tried as written first, then through the search list; only
        # single-label names go to the search list first. Kubernetes' ndots:5 would otherwise
        # send four doomed questions before every fully qualified one.
        resolver.ndots = 1
        search = True
    resolver.cache = None  # the TTL schedule is ours; a cache would hide new pods
    resolver.lifetime = options.timeout
    # Half the budget per attempt leaves room to retry one lost UDP packet, or to ask the
    # next server when the first does not answer.
    resolver.timeout = options.timeout / 2
    resolver.use_edns(0, 0, 1232)  # fits ~70 A records in one UDP answer, then TCP
    return resolver_query(resolver, search=search, timeout=options.timeout)
