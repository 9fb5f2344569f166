"""``dubbok.App`` — one process's provider and consumer sides, on sync ``grpc``.

An App is what a Dubbo application is: one registry session, one channel pool, one set of
discoveries, a gRPC server for what it exports, and references for what it calls.

Lifecycle: ``serve`` (non-blocking; returns the bound port) → ``wait`` (until SIGTERM, SIGINT
or ``stop``) → ``stop(grace)``: health NOT_SERVING → unregister → drain → stop accepting →
in-flight calls finish within the grace → consumer side and registry closed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import _serving
from ._consumer import DiscoveryCache, PolicyBuilder, reference_options
from ._rules import ReferenceRules
from ._serving import HandlerPool
from .balancer import create_balancer
from .breaker import BreakerPolicy
from .degrade import FallbackFunc
from .directory import Directory
from .discovery import Discovery, DiscoveryOptions, Subscription
from .endpoint import Endpoint
from .errors import ConfigurationError, DubbokError
from .governance import Governance, breaker_policy
from .limit import LimitPolicy
from .observe import Observer, default_observer
from .options import ReferenceOptions
from .reference import Reference
from .registry import ConsumerInfo, Registry, RegistryOptions, create_registry
from .routing import ConditionRouter, ConditionRule, Router, TagRouter, VersionRouter
from .routing.rules import parse_rules
from .server import ExportedService, export, listen, new_server, update_limits
from .service import MethodOptions
from .stub import ServiceDefinition, read_stub
from .transport import ChannelPool
from .url import parse_url

if TYPE_CHECKING:
    from .config import ConfigCenter

__all__ = ["App"]

log = logging.getLogger("dubbok.app")

T = TypeVar("T")

DEFAULT_GRACE = 5.0


class EndpointListener:
    """Hands discovery's endpoint sets to a directory. The sync App applies them on the
    discovery's thread; the asyncio App's subclass hops onto its loop."""

    def __init__(self, apply: Callable[[Sequence[Endpoint]], None]) -> None:
        self._apply = apply

    def __call__(self, endpoints: Sequence[Endpoint]) -> None:
        self._apply(endpoints)

    def subscribed(self) -> None:
        """``subscribe`` has returned (on the App's own thread or loop)."""


def default_snapshot_dir() -> Path:
    """Where registry snapshots go unless ``App(snapshot_dir=...)`` says otherwise:
    ``$DUBBOK_SNAPSHOT_DIR``, else ``~/.cache/dubbok/snapshots``."""
    configured = os.environ.get("DUBBOK_SNAPSHOT_DIR")
    if configured:
        return Path(configured)
    return Path("~/.cache/dubbok/snapshots").expanduser()


def advertised_host(bind_host: str, advertise: str | None) -> str:
    """The address consumers should dial: explicit, else ``POD_IP``, else the bind host."""
    if advertise:
        return advertise
    if os.environ.get("POD_IP"):
        return os.environ["POD_IP"]
    if bind_host in ("", "0.0.0.0", "::", "[::]"):
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return bind_host


class _AppBase:
    """Settings shared by the sync and asyncio Apps."""

    def __init__(
        self,
        name: str,
        *,
        registry: str | None = None,
        discovery: str | None = None,
        max_workers: int | None = None,
        drain: float | None = None,
        lease_ttl: float = 10.0,
        advertise_host: str | None = None,
        health: bool = True,
        reflection: bool = True,
        server_options: tuple[tuple[str, Any], ...] = (),
        channel_options: tuple[tuple[str, Any], ...] = (),
        channel_credentials: grpc.ChannelCredentials | None = None,
        observer: Observer | Literal["default"] | None = "default",
        limits: LimitPolicy | Mapping[str, Any] | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
        config: bool | None = None,
        metrics_port: int | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError("an App needs a name, e.g. App('greeter-provider')")
        self.name = name
        self.registry_url = registry
        self.discovery_url = discovery
        if registry is not None:
            parse_url(registry)
        if discovery is not None:
            parse_url(discovery)
        self._max_workers = max_workers
        # Without a registry nobody needs time to notice we are leaving.
        self.drain = drain if drain is not None else (2.0 if registry else 0.0)
        self._lease_ttl = lease_ttl
        self._advertise = advertise_host
        self._health_enabled = health
        self._reflection_enabled = reflection
        self._server_options = server_options
        self._channel_options = channel_options
        self._channel_credentials = channel_credentials
        if metrics_port is not None:
            observer = self._serve_metrics(name, metrics_port, observer)
        self.observer: Observer | None = default_observer() if observer == "default" else observer
        self.limits = (
            limits
            if isinstance(limits, LimitPolicy) or limits is None
            else LimitPolicy.from_dict(limits)
        )
        self.snapshot_dir = (
            Path(snapshot_dir) if snapshot_dir is not None else default_snapshot_dir()
        )
        # Live rules from the configuration center: on by default with an etcd registry.
        self._config_wanted = (
            config if config is not None else bool(registry and registry.startswith("etcd://"))
        )
        if self._config_wanted and not (registry and registry.startswith("etcd://")):
            raise ConfigurationError(
                "config=True needs an etcd registry: App(name, registry='etcd://host:2379')"
            )
        self._center: ConfigCenter | None = None
        self._center_lock = threading.Lock()
        self._rule_subscriptions: list[Any] = []
        self._discoveries = DiscoveryCache(
            DiscoveryOptions(app=name, snapshot_dir=self.snapshot_dir)
        )
        self._registry: Registry | None = None
        self._registry_lock = threading.Lock()
        self._exported: list[ExportedService] = []
        self._announced: list[tuple[str, Endpoint]] = []
        self.port: int | None = None

    @staticmethod
    def _serve_metrics(
        name: str, port: int, observer: Observer | Literal["default"] | None
    ) -> Observer | Literal["default"] | None:
        """``App(metrics_port=...)``: serve dubbok's metrics for Prometheus at that port.

        Tracing stays as the application set it up; when it set up none, spans are only
        made for calls whose caller sampled them (parent-based, never a new trace).
        """
        try:
            from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
        except ImportError:
            raise ConfigurationError(
                "metrics_port needs the OpenTelemetry SDK and Prometheus exporter: "
                "pip install 'dubbok[prometheus]'"
            ) from None

        from .tracing import configure

        configured = configure(
            service_name=name,
            exporter=None,
            sampler=ParentBased(ALWAYS_OFF),
            metrics_exporter="prometheus",
            prometheus_port=port,
        )
        return configured if observer == "default" else observer

    @property
    def config(self) -> ConfigCenter:
        """The configuration center (``get``, ``watch``, ``bind``; rules per service).

        Started on first use: it loads the configuration from etcd (or from the last
        snapshot when etcd does not answer) before it returns.
        """
        center = self._config_center()
        if center is None:
            raise ConfigurationError(
                f"{self.name} has no configuration center: create the App with "
                "registry='etcd://host:2379/?namespace=NAME' (and config not False)"
            )
        return center

    def _config_center(self) -> ConfigCenter | None:
        if not self._config_wanted or self.registry_url is None:
            return None
        with self._center_lock:
            if self._center is None:
                from .config import ConfigCenter

                center = ConfigCenter(self.registry_url, self.name, snapshot_dir=self.snapshot_dir)
                center.start()
                self._center = center
            return self._center

    def _follow_rules(
        self, service: str, apply: Callable[[Any], object], on_loop: Callable[..., Any] | None
    ) -> None:
        """Apply a service's rules now, and again on every change (on the loop if given)."""
        center = self._config_center()
        if center is None:
            return
        apply(center.track(service))
        listener: Callable[[Any], None]
        if on_loop is None:
            listener = apply  # type: ignore[assignment]
        else:

            def listener(rules: Any) -> None:
                on_loop(apply, rules)

        self._rule_subscriptions.append(center.on_rules_change(service, listener))

    def _follow_limits(self, exported: Sequence[tuple[ExportedService, object]]) -> None:
        """Provider side: the rules' limits over the App's and the decorators'."""
        for svc, servicer in exported:

            def apply(rules: Any, svc: ExportedService = svc, servicer: object = servicer) -> None:
                try:
                    update_limits(svc, servicer, rules.limit_policy(self.limits))
                except DubbokError as exc:
                    log.error("limits for %s not applied: %s; the previous stay", svc.name, exc)

            self._follow_rules(svc.name, apply, None)

    def _close_config(self) -> None:
        subscriptions, self._rule_subscriptions = self._rule_subscriptions, []
        for subscription in subscriptions:
            subscription.cancel()
        with self._center_lock:
            center, self._center = self._center, None
        if center is not None:
            center.close()

    @property
    def registry(self) -> Registry:
        """The registry session (created on first use)."""
        with self._registry_lock:
            if self._registry is None:
                self._registry = create_registry(
                    self.registry_url, RegistryOptions(app=self.name, lease_ttl=self._lease_ttl)
                )
            return self._registry

    def _discovery_url(self, discovery: str | Discovery | None, service: str) -> str:
        if discovery is not None and not isinstance(discovery, str):
            return f"{type(discovery).__name__}@{id(discovery):x}"
        url = discovery if discovery is not None else (self.discovery_url or self.registry_url)
        if url is None:
            raise ConfigurationError(
                f"no way to find {service}: pass discovery='static://host:port' (or dns:///, "
                "etcd://) to reference() or to App(), or App(registry='etcd://...')"
            )
        return url

    def _make_reference(
        self,
        ref_class: Callable[[ServiceDefinition], Any],
        stub: Callable[[Any], Any],
        service: str | None,
        acquire: Callable[[str], Any],
        release: Callable[[Any], None],
        wrap_listener: Callable[[Callable[[Sequence[Endpoint]], None]], EndpointListener],
        *,
        discovery: str | Discovery | None,
        loadbalance: str,
        cluster: str,
        retries: int,
        timeout: float | None,
        version: str,
        group: str,
        methods: Mapping[str, MethodOptions | Mapping[str, Any]] | None,
        breaker: BreakerPolicy | Mapping[str, Any] | bool | None,
        actives: Mapping[str, int] | None,
        bulkhead: int | None,
        degrade: Mapping[str, Mapping[str, Any]] | None,
        fallbacks: Mapping[str, FallbackFunc] | None,
        cluster_options: Mapping[str, Any] | None,
        retry_budget: bool,
        routes: Sequence[Any] | None,
        balancer_options: Mapping[str, Any] | None,
        on_loop: Callable[..., Any] | None = None,
    ) -> tuple[Any, Directory, Subscription]:
        """Build a reference (sync or asyncio class) and subscribe it to discovery."""
        definition = read_stub(stub, service)
        url = self._discovery_url(discovery, definition.name)
        options = reference_options(
            definition,
            url,
            loadbalance=loadbalance,
            cluster=cluster,
            retries=retries,
            timeout=timeout,
            version=version,
            group=group,
            methods=methods,
        )
        balancer = create_balancer(loadbalance, **dict(balancer_options or {}))
        governance = Governance(
            definition,
            breaker=breaker_policy(breaker),
            actives=actives,
            bulkhead=bulkhead,
            degrade=degrade,
            fallbacks=fallbacks,
        )
        policies = PolicyBuilder(
            definition,
            options,
            governance,
            cluster_options=cluster_options,
            retry_budget=retry_budget,
        )
        disc = self._discovery(discovery, options.discovery)
        ref = ref_class(definition)
        ref._observer = self.observer
        ref._names = (options.loadbalance, options.cluster)
        ref._governance = governance
        directory = Directory(
            options,
            balancer,
            policies,
            acquire,
            release,
            ref._publish,
            routers=self._routers(options, routes),
            governance=governance,
        )
        governance.on_change = directory.rebuild
        if self._config_wanted:
            binding = ReferenceRules(
                definition,
                options,
                directory=directory,
                policies=policies,
                governance=governance,
                base_breaker=breaker_policy(breaker),
                balancer_options=balancer_options or {},
                cluster_options=cluster_options or {},
                base_routes=list(routes or ()),
                routers=self._routers,
                set_names=lambda names: setattr(ref, "_names", names),
            )
            self._follow_rules(definition.name, binding.apply, on_loop)
        listener = wrap_listener(directory.update)
        subscription = disc.subscribe(definition.name, listener)
        listener.subscribed()
        ref._refresh = subscription.refresh
        return ref, directory, subscription

    def _routers(self, options: ReferenceOptions, routes: Sequence[Any] | None) -> list[Router]:
        """The router chain of a reference, in order: version/group, tag lanes, conditions.

        A static list is a direct connection: version and group are not checked there.
        """
        routers: list[Router] = []
        if not options.discovery.startswith("static://"):
            routers.append(VersionRouter(version=options.version or "*", group=options.group))
        routers.append(TagRouter())
        rules = parse_rules(routes)
        if rules:
            routers.append(ConditionRouter(rules, app=self.name))
        return routers

    def _discovery(self, given: str | Discovery | None, url: str) -> Discovery:
        """A user-supplied Discovery object as is; a URL through the per-App cache."""
        if given is not None and not isinstance(given, str):
            return given
        return self._discoveries.get(url)

    def _consumer_info(self) -> ConsumerInfo:
        return ConsumerInfo(app=self.name, host=socket.gethostname(), pid=os.getpid())


class App(_AppBase):
    """A dubbok application on sync ``grpc``: serve servicers, reference services.

    ::

        app = dubbok.App("greeter", discovery="static://127.0.0.1:50051")
        port = app.serve(Greeter(), host="127.0.0.1", port=0)
        greeter = app.reference(GreeterStub, "helloworld.Greeter")
        app.wait()
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._pool = ChannelPool(
            options=self._channel_options, credentials=self._channel_credentials
        )
        self._server: Any = None
        self._handler_pool: HandlerPool | None = None
        self._health: Any = None
        self._references: list[tuple[Directory, Subscription, Any]] = []
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._stopping = False

    # -- provider -------------------------------------------------------------------------

    def serve(self, *servicers: object, host: str = "0.0.0.0", port: int = 0) -> int:
        """Export ``servicers`` on ``host:port`` and return the bound port. Non-blocking.

        Health turns SERVING and the services are registered only once the port listens.
        """
        if not servicers:
            raise ConfigurationError("serve() needs at least one servicer")
        with self._lock:
            if self._server is not None:
                raise ConfigurationError(
                    f"{self.name} is already serving on port {self.port}; pass every servicer "
                    "to one serve() call"
                )
            exported = [export(s, observer=self.observer, limits=self.limits) for s in servicers]
            server, pool = new_server(self._max_workers, self._server_options)
            names = []
            for svc in exported:
                server.add_generic_rpc_handlers(
                    (grpc.method_handlers_generic_handler(svc.name, dict(svc.handlers)),)
                )
                server.add_registered_method_handlers(svc.name, dict(svc.handlers))
                names.append(svc.name)
            if self._health_enabled:
                self._health = health.HealthServicer(experimental_non_blocking=True)
                for n in ["", *names]:
                    self._health.set(n, health_pb2.HealthCheckResponse.NOT_SERVING)
                health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
                names.append(health.SERVICE_NAME)
            if self._reflection_enabled:
                reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
            bound = listen(server, host, port)
            _serving.start(server)
            self._server = server
            self._handler_pool = pool
            self._exported = exported
            self.port = bound
        self._follow_limits(list(zip(exported, servicers, strict=True)))
        if self._health is not None:
            for n in ["", *(s.name for s in exported)]:
                self._health.set(n, health_pb2.HealthCheckResponse.SERVING)
        self._announce(host, bound)
        log.info(
            "%s serving %s on %s:%d", self.name, ", ".join(s.name for s in exported), host, bound
        )
        return bound

    def _announce(self, host: str, port: int) -> None:
        if self.registry_url is None:
            return
        advertised = advertised_host(host, self._advertise)
        started = time.time()
        for svc in self._exported:
            ep = svc.endpoint(self.name, advertised, port, started)
            self.registry.register(svc.name, ep)
            self._announced.append((svc.name, ep))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until SIGTERM/SIGINT (then stop gracefully) or :meth:`stop`.

        Returns ``True`` once stopped, ``False`` if ``timeout`` passed first.
        """
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, frame: FrameType | None) -> None:
                log.info("%s: received %s, stopping", self.name, signal.Signals(signum).name)
                self._stop_requested.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._stopped.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._stop_requested.wait(left if left is not None else 3600):
                    self.stop()
        finally:
            for old_sig, handler in previous.items():
                signal.signal(old_sig, handler)
        return True

    def stop(self, grace: float | None = DEFAULT_GRACE) -> None:
        """Stop gracefully; see the module docstring for the order. Idempotent."""
        with self._lock:
            already = self._stopping
            self._stopping = True
        if already:
            self._stopped.wait()
            return
        try:
            if self._health is not None:
                self._health.enter_graceful_shutdown()
            for service, ep in self._announced:
                try:
                    self.registry.unregister(service, ep)
                except DubbokError as exc:
                    log.warning("could not unregister %s at %s: %s", service, ep.address, exc)
            if self._server is not None and self.drain > 0:
                # Consumers need a moment to see the registry change before we refuse calls.
                self._stopped.wait(self.drain)
            if self._server is not None:
                self._server.stop(grace).wait()
            if self._handler_pool is not None:
                # Handlers still running (their calls cancelled) finish; then the threads end.
                self._handler_pool.shutdown(wait=False)
            self._close_consumers()
            self._close_config()
            with self._registry_lock:
                registry, self._registry = self._registry, None
            if registry is not None:
                registry.close()
        finally:
            self._stopped.set()
            self._stop_requested.set()

    def close(self) -> None:
        """Release everything now (an in-flight served call gets no grace)."""
        self.stop(grace=0)

    def __enter__(self) -> App:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- consumer -------------------------------------------------------------------------

    def reference(
        self,
        stub: Callable[[Any], T],
        service: str | None = None,
        *,
        discovery: str | Discovery | None = None,
        loadbalance: str = "p2c",
        cluster: str = "failover",
        retries: int = 2,
        timeout: float | None = None,
        version: str = "",
        group: str = "",
        methods: Mapping[str, MethodOptions | Mapping[str, Any]] | None = None,
        breaker: BreakerPolicy | Mapping[str, Any] | bool | None = True,
        actives: Mapping[str, int] | None = None,
        bulkhead: int | None = None,
        degrade: Mapping[str, Mapping[str, Any]] | None = None,
        fallbacks: Mapping[str, FallbackFunc] | None = None,
        cluster_options: Mapping[str, Any] | None = None,
        retry_budget: bool = True,
        routes: Sequence[Mapping[str, Any] | ConditionRule] | None = None,
        balancer_options: Mapping[str, Any] | None = None,
    ) -> T:
        """A typed reference to ``service`` through the consumer pipeline.

        ``stub`` is the generated ``*Stub`` class; the result has the same methods, governed:
        discovery → routing → balancing → cluster strategy → transport.

        * ``discovery``: a URL (``static://``, ``dns:///``, ``dns+srv:///``, ``etcd://``) or a
          :class:`~dubbok.discovery.Discovery`; default the App's discovery, else its registry.
        * ``loadbalance`` and ``balancer_options`` (``warmup``, ``key`` for consistenthash,
          ...): see ``docs/load-balancing.md``.
        * ``cluster``, ``cluster_options``, ``retries``, ``timeout``, ``retry_budget``,
          ``methods`` (per-method ``timeout``/``idempotent``/``retries``): see
          ``docs/fault-tolerance.md``.
        * ``version``, ``group``, ``routes`` (condition rules): see ``docs/routing.md``.
        * ``breaker``, ``actives``, ``bulkhead``, ``degrade``, ``fallbacks``: see
          ``docs/resilience.md``.
        """
        ref, directory, subscription = self._make_reference(
            Reference,
            stub,
            service,
            self._pool.acquire,
            self._pool.release,
            EndpointListener,
            discovery=discovery,
            loadbalance=loadbalance,
            cluster=cluster,
            retries=retries,
            timeout=timeout,
            version=version,
            group=group,
            methods=methods,
            breaker=breaker,
            actives=actives,
            bulkhead=bulkhead,
            degrade=degrade,
            fallbacks=fallbacks,
            cluster_options=cluster_options,
            retry_budget=retry_budget,
            routes=routes,
            balancer_options=balancer_options,
        )
        with self._lock:
            self._references.append((directory, subscription, ref))
        if self.registry_url is not None:
            try:
                self.registry.register_consumer(ref.service, self._consumer_info())
            except DubbokError as exc:
                log.warning("could not register as a consumer of %s: %s", ref.service, exc)
        return cast(T, ref)

    def _close_consumers(self) -> None:
        with self._lock:
            refs, self._references = self._references, []
        for directory, subscription, ref in refs:
            subscription.cancel()
            directory.close()
            ref._shutdown()
        self._discoveries.close()
        self._pool.close()
