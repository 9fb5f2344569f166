"""The etcd registry and discovery: ``etcd://host:2379[,host:2379...]/?namespace=NAME``.

URL parameters (all optional):

========================  ============================================================
``namespace``             tenant; keys live under ``/dubbok/<namespace>/`` (``default``)
``user``, ``password``    etcd authentication (or ``etcd://user:password@host:2379/``)
``ca``, ``cert``, ``key``  TLS: CA bundle, client certificate and key (PEM file paths)
``timeout``               seconds per etcd request (3)
``lease_ttl``             registry: seconds a dead process's records outlive it (10)
``snapshot_dir``          discovery: directory of last-known-good endpoint files
``empty_protection``      discovery: ``on`` (default) or ``off``
``empty_protection_seconds``  discovery: longest an empty update is held back (300)
========================  ============================================================

Every host in the URL is used: requests fail over to the next endpoint when one fails.
See ``docs/discovery.md`` for the key layout and what happens when etcd fails.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ..discovery import DiscoveryOptions, Listener
from ..endpoint import Endpoint
from ..errors import ConfigurationError, InvalidURLError, RegistryError
from ..url import ParsedURL
from . import ConsumerInfo, RegistryOptions
from ._client import EtcdClient
from ._kv import ConnectionSettings, EtcdError
from .lease import LeaseKeeper
from .record import (
    consumer_key,
    encode_consumer,
    encode_provider,
    provider_key,
    validate_name,
)
from .snapshot import SnapshotStore
from .watch import ServiceWatch

__all__ = ["EtcdDiscovery", "EtcdRegistry", "EtcdSubscription", "connection_settings"]

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3.0
DEFAULT_EMPTY_PROTECTION = 300.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _redacted(url: ParsedURL) -> str:
    """The URL for messages: no password, whether in the authority or in the query."""
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url.redacted())


def _float_param(url: ParsedURL, name: str, default: float, minimum: float) -> float:
    text = url.param(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidURLError(_redacted(url), f"{name}={text!r} is not a number") from None
    if not value >= minimum:
        raise InvalidURLError(_redacted(url), f"{name} must be at least {minimum:g}, got {text}")
    return value


def _bool_param(url: ParsedURL, name: str, default: bool) -> bool:
    text = url.param(name)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise InvalidURLError(_redacted(url), f"{name}={text!r}: use on or off")


def connection_settings(url: ParsedURL) -> ConnectionSettings:
    """Endpoints, auth, TLS and timeout from an ``etcd://`` URL; :class:`InvalidURLError`
    (a :class:`~dubbok.errors.ConfigurationError`) says what is wrong."""
    if url.scheme != "etcd":
        raise InvalidURLError(_redacted(url), f"expected an etcd:// URL, got {url.scheme}://")
    if not url.hosts:
        raise InvalidURLError(_redacted(url), "an etcd URL needs at least one host:port")
    if url.path.strip("/"):
        raise InvalidURLError(
            _redacted(url),
            f"unexpected path {url.path!r}; choose the namespace with ?namespace=NAME",
        )
    username = url.username if url.username is not None else url.param("user")
    password = url.password if url.password is not None else url.param("password")
    try:
        return ConnectionSettings(
            endpoints=url.hosts,
            username=username or None,
            password=password,
            ca=url.param("ca"),
            cert=url.param("cert"),
            key=url.param("key"),
            timeout=_float_param(url, "timeout", DEFAULT_TIMEOUT, 0.001),
        )
    except InvalidURLError:
        raise
    except ConfigurationError as exc:
        raise InvalidURLError(_redacted(url), exc.message) from None


def _namespace(url: ParsedURL, default: str) -> str:
    namespace = url.param("namespace") or default or "default"
    try:
        return validate_name("namespace", namespace)
    except ConfigurationError as exc:
        raise InvalidURLError(_redacted(url), exc.message) from None


class EtcdRegistry:
    """Registers providers and consumers in etcd on one lease per process.

    ``register``, ``unregister`` and ``register_consumer`` run on the caller's thread and
    may block for the request timeout, raising :class:`RegistryError` when etcd cannot be
    reached. Keeping registrations alive — refreshing the lease every TTL/3, re-granting it
    and writing every key again when it is lost — happens on the thread
    ``dubbok-etcd-lease`` and never raises.
    """

    def __init__(
        self,
        client: EtcdClient,
        *,
        namespace: str = "default",
        app: str = "",
        lease_ttl: float = 10.0,
    ) -> None:
        self.namespace = validate_name("namespace", namespace)
        self.app = app
        self._client = client
        self._leases = LeaseKeeper(client, lease_ttl)
        self._pid = os.getpid()
        self._closed = False

    @classmethod
    def from_url(cls, url: ParsedURL, options: RegistryOptions) -> EtcdRegistry:
        ttl = _float_param(url, "lease_ttl", options.lease_ttl, 1.0)
        client = EtcdClient(connection_settings(url))
        return cls(client, namespace=_namespace(url, "default"), app=options.app, lease_ttl=ttl)

    @property
    def lease_id(self) -> int | None:
        """The current lease (``None`` before the first registration)."""
        return self._leases.lease_id

    @property
    def lease_regrants(self) -> int:
        """How many times the lease was lost and every key written again."""
        return self._leases.regrants

    @property
    def keys(self) -> frozenset[str]:
        """Every key this process keeps registered."""
        return self._leases.keys

    def register(self, service: str, endpoint: Endpoint) -> None:
        """Publish ``endpoint`` as a provider of ``service`` (replacing an earlier record)."""
        key = provider_key(self.namespace, service, endpoint.address)
        started_at = endpoint.started_at or time.time()
        if not endpoint.app and self.app:
            endpoint = dataclasses.replace(endpoint, app=self.app)
        value = encode_provider(endpoint, pid=self._pid, started_at=started_at)
        self._write(key, value, f"register {endpoint.address} as a provider of {service}")

    def unregister(self, service: str, endpoint: Endpoint) -> None:
        """Withdraw ``endpoint``; if etcd is unreachable, the delete is retried in the
        background (and the key goes with the lease at the latest)."""
        key = provider_key(self.namespace, service, endpoint.address)
        try:
            self._leases.delete(key)
        except EtcdError as exc:
            raise RegistryError(
                f"cannot unregister {endpoint.address} from {service}: {exc.message}"
            ) from exc

    def register_consumer(self, service: str, consumer: ConsumerInfo) -> None:
        """Publish who consumes ``service`` (for operators; nothing routes on it)."""
        key = consumer_key(self.namespace, service, consumer)
        value = encode_consumer(consumer, started_at=time.time())
        self._write(key, value, f"register consumer {consumer.app} of {service}")

    def _write(self, key: str, value: bytes, what: str) -> None:
        if self._closed:
            raise RegistryError(f"cannot {what}: the registry is closed")
        try:
            self._leases.put(key, value)
        except EtcdError as exc:
            raise RegistryError(f"cannot {what}: {exc.message}") from exc

    def close(self) -> None:
        """Revoke the lease (removing every record of this process) and disconnect.

        Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._leases.close()
        self._client.close()


class EtcdSubscription:
    """One listener's subscription to one service; returned by :meth:`EtcdDiscovery.subscribe`."""

    def __init__(self, discovery: EtcdDiscovery, watch: ServiceWatch, listener: Listener) -> None:
        self._discovery = discovery
        self._watch = watch
        self._listener = listener
        self._cancelled = False

    @property
    def service(self) -> str:
        return self._watch.service

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The set the listener last received."""
        return self._watch.endpoints

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self._discovery._unsubscribe(self._watch, self._listener)

    def refresh(self) -> None:
        if not self._cancelled:
            self._watch.refresh()


class EtcdDiscovery:
    """Endpoints of services from etcd, pushed to listeners as they change.

    One watch per service per process, shared by every subscriber; only services someone
    subscribed to are watched. ``subscribe`` blocks for one listing (bounded by the request
    timeout); listeners are then called from the service's watch thread.
    """

    def __init__(
        self,
        client: EtcdClient,
        *,
        namespace: str = "default",
        snapshot_dir: Path | str | None = None,
        empty_protection: float | None = DEFAULT_EMPTY_PROTECTION,
        coalesce: float = 0.003,
    ) -> None:
        self.namespace = validate_name("namespace", namespace)
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.empty_protection = empty_protection
        self._client = client
        self._store = SnapshotStore(self.snapshot_dir) if self.snapshot_dir else None
        self._coalesce = coalesce
        self._lock = threading.Lock()
        self._watches: dict[str, ServiceWatch] = {}
        self._closed = False

    @classmethod
    def from_url(cls, url: ParsedURL, options: DiscoveryOptions) -> EtcdDiscovery:
        settings = connection_settings(url)
        protection: float | None = None
        if _bool_param(url, "empty_protection", True):
            protection = _float_param(
                url, "empty_protection_seconds", DEFAULT_EMPTY_PROTECTION, 0.0
            )
        snapshot_dir = url.param("snapshot_dir") or options.snapshot_dir
        return cls(
            EtcdClient(settings),
            namespace=_namespace(url, options.namespace),
            snapshot_dir=snapshot_dir,
            empty_protection=protection,
        )

    @property
    def held_services(self) -> Mapping[str, float]:
        """Services whose empty update is being held back → seconds held so far."""
        with self._lock:
            watches = list(self._watches.values())
        held = {}
        for watch in watches:
            seconds = watch.held_for
            if seconds is not None:
                held[watch.service] = seconds
        return held

    @property
    def services(self) -> frozenset[str]:
        """The services currently watched."""
        with self._lock:
            return frozenset(self._watches)

    def subscribe(self, service: str, listener: Listener) -> EtcdSubscription:
        """Deliver ``service``'s providers to ``listener`` now and on every change.

        Raises :class:`RegistryError` when etcd cannot be reached and there is no snapshot
        of the service to start from.
        """
        validate_name("service name", service)
        with self._lock:
            if self._closed:
                raise RegistryError(f"cannot subscribe to {service}: the discovery is closed")
            watch = self._watches.get(service)
            if watch is None:
                watch = ServiceWatch(
                    self._client,
                    self.namespace,
                    service,
                    store=self._store,
                    protection=self.empty_protection,
                    coalesce=self._coalesce,
                )
                watch.start()
                self._watches[service] = watch
            # Added under the lock so that a concurrent cancel cannot close this watch;
            # the first set is delivered outside it, so a listener may call back in.
            watch.add_listener(listener)
        watch.replay(listener)
        return EtcdSubscription(self, watch, listener)

    def _unsubscribe(self, watch: ServiceWatch, listener: Listener) -> None:
        with self._lock:
            if watch.remove_listener(listener) or self._watches.get(watch.service) is not watch:
                return
            del self._watches[watch.service]
        watch.close()

    def close(self) -> None:
        """Stop every watch and disconnect. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.close()
        self._client.close()
