"""The configuration center of one process: live rules and settings from etcd.

::

    center = ConfigCenter("etcd://127.0.0.1:2379/?namespace=shop", "checkout")
    center.start()
    rules = center.rules_for("helloworld.Greeter")       # EffectiveRules, never blocks again
    center.on_rules_change("helloworld.Greeter", apply)  # apply(EffectiveRules) on changes
    pool = center.get("db/pool_size", 10, type=int)
    db = center.bind(DbSettings, "db")                    # db.value follows the config
    ...
    center.close()

Threads: one thread, ``dubbok-config-<app>``, owns everything that changes — the listings,
the one watch on ``config/`` of the namespace (whatever the number of scopes), validation,
merging, the snapshot file — and calls the listeners. Readers (``rules_for``, ``get``,
``Bound.value``) read immutable values published by that thread and take no lock.
Listeners must be quick and must not block on the center.

Failures:

* a document that does not validate is not applied: one error is logged naming the key, its
  revision and each field, and the last good version of that key stays in force (from the
  snapshot file if the process has not seen one);
* the watch breaks (etcd restarted, compaction, network): every scope is listed again, the
  difference applied, and the watch re-created after the listings (backoff 0.2 s … 5 s
  while etcd is unreachable);
* etcd comes back with an older history (restored from a backup, wiped, or a single member
  that lost its last writes in a crash): the center says so and takes what etcd holds now
  as the truth, listing every scope again;
* etcd unreachable at start: the center starts from the snapshot file (``snapshot_dir``)
  and says so, or from the code defaults when there is none, and keeps trying.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from .._gauges import watch_gone, watch_health
from ..errors import ConfigurationError
from ..registry._client import EtcdClient, EtcdError, WatchBatch, WatchHandle
from ..registry.etcd import connection_settings
from ..url import parse_url
from .effective import EffectiveRules, effective_rules
from .errors import RuleValidationError
from .gray import InstanceIdentity
from .keys import GOVERNANCE, ConfigKey, KeyLayout, Scope
from .rules import GovernanceRule
from .settings import MISSING, Bound, resolve_setting
from .snapshot import ConfigSnapshotFile
from .validation import check_document, validate_value
from .view import ConfigView, Raw

__all__ = ["ConfigCenter", "RulesListener", "Subscription"]

_log = logging.getLogger("dubbok.config")

M = TypeVar("M")

RulesListener = Callable[[EffectiveRules], None]
"""Called on the config thread with a service's new effective rules."""

_MIN_BACKOFF = 0.2
_MAX_BACKOFF = 5.0
_LISTING_PASSES = 3  # listings of every scope, while etcd's history keeps going back


class Subscription:
    """A listener registration; :meth:`cancel` removes it. Idempotent."""

    __slots__ = ("_cancel",)

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel: Callable[[], None] | None = cancel

    def cancel(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()


@dataclass(frozen=True, slots=True)
class _FromWatch:
    generation: int
    item: WatchBatch | EtcdError


@dataclass(frozen=True, slots=True)
class _Track:
    service: str
    done: threading.Event


class _Stop:
    pass


_STOP = _Stop()


class _SettingWatch:
    """A watched setting: the last value delivered, and how to deliver the next."""

    __slots__ = ("callback", "data", "kind", "name", "reported", "service")

    def __init__(
        self,
        name: str,
        service: str | None,
        kind: Any,
        callback: Callable[[Any, list[str]], None],
        data: Any,
    ) -> None:
        self.name = name
        self.service = service
        self.kind = kind
        self.callback = callback
        self.data = data
        self.reported: Any = MISSING


class ConfigCenter:
    """Live governance rules and settings for one app in one namespace (see the module
    docstring).

    ``url`` is the registry's ``etcd://`` URL (its ``namespace``, auth and TLS parameters
    apply; ``snapshot_dir`` may be given there too). ``identity`` says who this process is
    for gray rules; by default ``InstanceIdentity.local(app, tags=tags)``.
    """

    def __init__(
        self,
        url: str,
        app: str,
        *,
        identity: InstanceIdentity | None = None,
        tags: Mapping[str, str] | None = None,
        snapshot_dir: Path | str | None = None,
        client: EtcdClient | None = None,
        load_timeout: float | None = None,
    ) -> None:
        parsed = parse_url(url)
        self.url = parsed.redacted()
        self.app = app
        self.layout = KeyLayout(parsed.param("namespace") or "default")
        ConfigKey.app(app, GOVERNANCE)  # checks the app name
        self.identity = identity or InstanceIdentity.local(app, tags=tags)
        self._own_client = client is None
        self._client = client or EtcdClient(connection_settings(parsed))
        self.load_timeout = (
            load_timeout if load_timeout is not None else self._client.settings.timeout + 2.0
        )
        directory = snapshot_dir if snapshot_dir is not None else parsed.param("snapshot_dir")
        self._snapshot = (
            ConfigSnapshotFile(directory, self.layout.namespace, app) if directory else None
        )
        self._queue: queue.SimpleQueue[_FromWatch | _Track | _Stop] = queue.SimpleQueue()
        self._lock = threading.RLock()  # publish+notify vs listener registration
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._closed = False

        # Owned by the config thread.
        self._view = ConfigView()
        self._good: dict[str, Any] = {}  # absolute key → GovernanceRule or parsed setting
        self._good_raw: dict[str, Raw] = {}
        self._seeds: dict[str, Raw] = {}  # from the snapshot file, for scopes not listed
        self._watch: WatchHandle | None = None
        self._generation = 0
        self._live = False
        self._failures = 0
        self._next_retry = 0.0
        # the series of the dubbok.watch.healthy gauge this center reports
        self._gauge_name = f"config:{self.layout.namespace}/{self.app}"
        self._tracked: set[str] = set()

        # Published by the config thread, read by anyone.
        self._rules: dict[str, EffectiveRules] = {}
        self._settings: dict[str, Any] = {}
        self._problems: dict[str, tuple[int, RuleValidationError]] = {}
        self._state = "stopped"
        self._revision = 0
        self._rule_listeners: dict[str, tuple[RulesListener, ...]] = {}
        self._setting_watches: tuple[_SettingWatch, ...] = ()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> None:
        """Load the configuration and start following it. Blocks until the first load is
        done (from etcd, or from the snapshot when etcd does not answer) or ``timeout``
        (default: the etcd timeout + 2 s) passes. Never raises for etcd being down."""
        with self._lock:
            if self._closed:
                raise ConfigurationError("this ConfigCenter is closed; make a new one")
            if self._thread is not None:
                return
            self._view.add_scope(self.layout.scope_prefix(Scope.GLOBAL))
            self._view.add_scope(self.layout.scope_prefix(Scope.APP, self.app))
            self._load_seeds()
            self._state = "connecting"
            self._thread = threading.Thread(
                target=self._run, name=f"dubbok-config-{self.app}", daemon=True
            )
            self._thread.start()
        self._started.wait(self.load_timeout if timeout is None else timeout)

    def close(self) -> None:
        """Stop following changes and disconnect. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            if thread is not threading.current_thread():
                thread.join(timeout=10.0)
        else:
            self._cancel_watch()
        if self._own_client:
            self._client.close()
        watch_gone(self._gauge_name, self)
        self._state = "stopped"

    def __enter__(self) -> ConfigCenter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> str:
        """``connecting`` (first load under way), ``live`` (following etcd), ``snapshot``
        (etcd unreachable at start, serving the snapshot file), ``defaults`` (etcd
        unreachable at start and no snapshot: code defaults), ``reconnecting`` (etcd lost
        after being live; the rules in force stay), ``stopped``."""
        return self._state

    @property
    def revision(self) -> int:
        """The etcd revision the center has applied everything up to."""
        return self._revision

    @property
    def problems(self) -> Mapping[str, RuleValidationError]:
        """Config keys (``services/…/governance``) whose current value is invalid and not
        applied, with the validation error."""
        root = self.layout.config_root
        return {key[len(root) :]: error for key, (_, error) in self._problems.items()}

    # -- rules ----------------------------------------------------------------------------

    def track(self, service: str) -> EffectiveRules:
        """Follow ``service``'s rules from now on and return them. The first call for a
        service lists its scope in etcd (blocking up to ``load_timeout``)."""
        ConfigKey.service(service)  # checks the name
        rules = self._rules.get(service)
        if rules is not None:
            return rules
        if self._thread is threading.current_thread():
            self._track(service)
        else:
            done = threading.Event()
            self._queue.put(_Track(service, done))
            if self._thread is not None:
                done.wait(self.load_timeout)
        return self._rules.get(service) or EffectiveRules(service)

    def rules_for(self, service: str) -> EffectiveRules:
        """The rules in force for ``service`` (tracking it if it was not yet)."""
        rules = self._rules.get(service)
        return rules if rules is not None else self.track(service)

    def on_rules_change(self, service: str, listener: RulesListener) -> Subscription:
        """Call ``listener(rules)`` on the config thread whenever ``service``'s effective
        rules change. Tracks the service."""
        with self._lock:
            current = self._rule_listeners.get(service, ())
            self._rule_listeners = {**self._rule_listeners, service: (*current, listener)}
        self.track(service)

        def cancel() -> None:
            with self._lock:
                left = tuple(x for x in self._rule_listeners.get(service, ()) if x is not listener)
                self._rule_listeners = {**self._rule_listeners, service: left}

        return Subscription(cancel)

    # -- settings -------------------------------------------------------------------------

    def _scopes(self, service: str | None) -> list[str]:
        scopes = ["global/", f"apps/{self.app}/"]
        if service is not None:
            self.track(service)
            scopes.append(f"services/{service}/")
        return scopes

    def get(
        self, name: str, default: Any = None, *, type: Any = None, service: str | None = None
    ) -> Any:
        """Setting ``name`` (``global/NAME`` < ``apps/<app>/NAME`` < ``services/<service>/
        NAME``), validated as ``type`` when given; ``default`` when no scope has it.
        Raises :class:`RuleValidationError` if the value does not validate as ``type``."""
        value, sources = resolve_setting(self._settings, self._scopes(service), name)
        if value is MISSING:
            return default
        if type is None:
            return value
        return validate_value(value, type, key=", ".join(sources))

    def watch(
        self,
        name: str,
        callback: Callable[[Any], None],
        *,
        type: Any = None,
        service: str | None = None,
    ) -> Subscription:
        """Call ``callback(value)`` on the config thread whenever setting ``name`` changes
        (``None`` when it is removed). A value that does not validate as ``type`` is
        reported in the log and not delivered."""

        def deliver(value: Any, sources: list[str]) -> None:
            callback(None if value is MISSING else value)

        return self._add_setting_watch(name, service, type, deliver)

    def bind(self, model: type[M], prefix: str, *, service: str | None = None) -> Bound[M]:
        """A :class:`Bound` holding setting ``prefix`` validated as ``model``, kept current.
        Fields the configuration does not set keep the model's defaults. Raises
        :class:`RuleValidationError` if the current configuration does not validate (and
        the model cannot be built from its defaults alone, when nothing is configured)."""
        scopes = self._scopes(service)
        with self._lock:
            value, sources = resolve_setting(self._settings, scopes, prefix)
            data = {} if value is MISSING else value
            bound: Bound[M] = Bound(
                prefix, validate_value(data, model, key=", ".join(sources) or prefix), sources
            )

            def deliver(value: Any, sources: list[str]) -> None:
                bound._update(value, sources)

            subscription = self._add_setting_watch(prefix, service, model, deliver, data=value)
        bound._closer = subscription.cancel
        return bound

    def _add_setting_watch(
        self,
        name: str,
        service: str | None,
        kind: Any,
        deliver: Callable[[Any, list[str]], None],
        *,
        data: Any = MISSING,
    ) -> Subscription:
        scopes = self._scopes(service)
        with self._lock:
            if data is MISSING:
                data, _ = resolve_setting(self._settings, scopes, name)
            watch = _SettingWatch(name, service, kind, deliver, data)
            self._setting_watches = (*self._setting_watches, watch)

        def cancel() -> None:
            with self._lock:
                self._setting_watches = tuple(w for w in self._setting_watches if w is not watch)

        return Subscription(cancel)

    # -- the config thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self._live and time.monotonic() >= self._next_retry:
                try:
                    delay = self._connect()
                except Exception:  # a bug here must not end config updates for the process
                    _log.exception("config center: unexpected failure while listing; retrying")
                    self._lost()
                    delay = _MAX_BACKOFF
                if delay is not None:
                    self._next_retry = time.monotonic() + delay
            timeout = None if self._live else max(0.0, self._next_retry - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if isinstance(item, _Stop):
                break
            try:
                if isinstance(item, _Track):
                    self._track(item.service)
                    item.done.set()
                elif item.generation == self._generation:
                    self._on_watch(item.item)
            except Exception:  # a bug here must not end config updates for the process
                _log.exception("config center: unexpected failure; listing everything again")
                self._lost()
        self._cancel_watch()

    def _lost(self) -> None:
        """The watch is gone: list again at once (then with backoff while that fails)."""
        self._cancel_watch()
        self._live = False
        watch_health(self._gauge_name, self, False)
        self._failures = 0
        self._next_retry = 0.0
        if self._state == "live":
            self._state = "reconnecting"

    def _connect(self) -> float | None:
        """List every scope and watch; the seconds to wait before trying again on failure."""
        self._cancel_watch()
        try:
            changed: set[str] = set()
            for _ in range(_LISTING_PASSES):
                went_back = False
                for prefix in self._view.scopes:
                    listed, back = self._list(prefix)
                    changed |= listed
                    went_back = went_back or back
                if not went_back:
                    break
            else:
                raise EtcdError(
                    f"etcd at {self._client.endpoints} went back to an older history "
                    f"{_LISTING_PASSES} times while the config center listed it"
                )
            self._generation += 1
            generation = self._generation
            self._watch = self._client.watch_prefix(
                self.layout.config_root,
                lambda item: self._queue.put(_FromWatch(generation, item)),
                start_revision=self._view.watch_from(),
                name=f"dubbok-config-watch-{self.app}",
            )
        except EtcdError as exc:
            return self._connect_failed(exc)
        if self._state in ("snapshot", "defaults", "reconnecting") and self._failures:
            _log.warning(
                "config center: etcd at %s answers again; configuration is live (revision %d)",
                self._client.endpoints,
                self._revision,
            )
        self._live = True
        self._failures = 0
        watch_health(self._gauge_name, self, True)
        self._process(changed)
        self._state = "live"
        self._started.set()
        return None

    def _connect_failed(self, exc: EtcdError) -> float:
        self._failures += 1
        watch_health(self._gauge_name, self, False)
        if not self._started.is_set():
            self._start_offline(exc)
            self._started.set()
        elif self._failures == 1:
            _log.warning(
                "config center: lost etcd (%s); the rules in force stay until it answers again",
                exc.message,
            )
        backoff = min(_MAX_BACKOFF, _MIN_BACKOFF * 2.0 ** (self._failures - 1))
        return backoff * random.uniform(0.8, 1.2)

    def _start_offline(self, exc: EtcdError) -> None:
        if self._seeds or self._good:
            snapshot = self._snapshot.path if self._snapshot else "?"
            self._state = "snapshot"
            _log.warning(
                "config center: etcd is unreachable (%s). Starting %s from the config "
                "snapshot %s (%d keys, up to revision %d); rules may be stale until etcd "
                "answers. Retrying in the background",
                exc.message,
                self.app,
                snapshot,
                len(self._seeds),
                max((raw.revision for raw in self._seeds.values()), default=0),
            )
        else:
            self._state = "defaults"
            where = (
                f"no snapshot at {self._snapshot.path}"
                if self._snapshot
                else "no snapshot_dir configured"
            )
            _log.warning(
                "config center: etcd is unreachable (%s) and there is no config snapshot "
                "(%s). Starting %s with the code defaults; retrying in the background",
                exc.message,
                where,
                self.app,
            )
        for service in list(self._tracked):
            self._recompute(service)
        self._publish_settings()

    def _list(self, prefix: str) -> tuple[set[str], bool]:
        """List ``prefix``: the keys that changed, and whether etcd went back to an older
        history (every scope must then be listed again)."""
        kvs, revision = self._client.get_prefix(prefix)
        went_back = False
        items = [(kv.key, kv.value, kv.mod_revision) for kv in kvs]
        if revision < self._revision or self._view.went_back(prefix, items, revision):
            _log.warning(
                "config center: etcd at %s holds an older history than before (%s listed at "
                "revision %d; revision %d was seen): its data was restored from a backup, "
                "wiped, or lost its last writes in a crash. Taking what it holds now as the "
                "configuration and listing every scope again",
                self._client.endpoints,
                prefix,
                revision,
                self._revision,
            )
            self._view.forget_revisions()
            self._revision = 0
            went_back = True
        changed = self._view.apply_listing(prefix, items, revision)
        self._revision = max(self._revision, revision)
        # Keys known only from the snapshot: the listing now says whether they still exist.
        for key in [k for k in self._seeds if k.startswith(prefix)]:
            del self._seeds[key]
            changed.add(key)
        changed |= {k for k in self._good if k.startswith(prefix)}
        return changed, went_back

    def _on_watch(self, item: WatchBatch | EtcdError) -> None:
        if isinstance(item, EtcdError):
            _log.info("config center: the watch ended (%s); listing again", item.message)
            self._lost()
            return
        changed = {
            event.key
            for event in item.events
            if self._view.apply_event(event.key, event.value, event.mod_revision)
        }
        self._revision = max(self._revision, item.revision)
        if changed:
            self._process(changed)

    def _track(self, service: str) -> None:
        prefix = self.layout.scope_prefix(Scope.SERVICE, service)
        self._tracked.add(service)
        if self._view.add_scope(prefix) and self._live:
            try:
                listed, went_back = self._list(prefix)
            except EtcdError as exc:
                _log.info("config center: cannot list %s (%s); reconnecting", prefix, exc.message)
                self._lost()
            else:
                self._process(listed)
                if went_back:  # the other scopes, and the watch, are of the old history
                    self._lost()
        elif not self._live:
            self._process({k for k in self._seeds if k.startswith(prefix)}, seeds=True)
        self._recompute(service)

    def _cancel_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    # -- applying changes -----------------------------------------------------------------

    def _load_seeds(self) -> None:
        snapshot = self._snapshot.load() if self._snapshot else None
        if snapshot is None:
            return
        self._seeds = dict(snapshot.entries)
        for prefix in self._view.scopes:
            self._process({k for k in self._seeds if k.startswith(prefix)}, seeds=True)

    def _process(self, keys: Iterable[str], *, seeds: bool = False) -> None:
        """Validate the changed ``keys`` and publish what they change."""
        services: set[str] = set()
        settings = False
        dirty = False
        for key in sorted(keys):
            ck = self.layout.relative(key)
            if ck is None:
                continue
            raw = self._seeds.get(key) if seeds else self._view.get(key)
            if raw is None:
                if self._good.pop(key, None) is not None:
                    dirty = True
                self._good_raw.pop(key, None)
                self._clear_problem(key)
            elif self._good_raw.get(key) != raw:
                if not self._accept(key, ck, raw):
                    continue
                dirty = True
            else:
                self._clear_problem(key)
                continue
            if ck.is_governance:
                services |= {ck.owner} if ck.scope is Scope.SERVICE else set(self._tracked)
            else:
                settings = True
        for service in sorted(services & self._tracked):
            self._recompute(service)
        if settings:
            self._publish_settings()
        if dirty and not seeds and self._live:
            self._save_snapshot()

    def _accept(self, key: str, ck: ConfigKey, raw: Raw) -> bool:
        try:
            value = check_document(ck, raw.value)
        except RuleValidationError as exc:
            reported = self._problems.get(key)
            self._problems = {**self._problems, key: (raw.revision, exc)}
            if reported is None or reported[0] != raw.revision:
                good = self._good_raw.get(key)
                keeping = (
                    f"Keeping the last good version (revision {good.revision})"
                    if good is not None
                    else "There is no earlier good version, so nothing from this key applies"
                )
                _log.error(
                    "config %s at revision %d is invalid and is NOT applied: %s. %s; fix it "
                    "with 'dubbok config edit %s'",
                    ck,
                    raw.revision,
                    "; ".join(str(p) for p in exc.problems),
                    keeping,
                    ck,
                )
            return False
        self._clear_problem(key)
        self._good[key] = value
        self._good_raw[key] = raw
        return True

    def _clear_problem(self, key: str) -> None:
        if key in self._problems:
            self._problems = {k: v for k, v in self._problems.items() if k != key}

    def _recompute(self, service: str) -> None:
        layers = []
        for ck in (
            ConfigKey.global_(GOVERNANCE),
            ConfigKey.app(self.app, GOVERNANCE),
            ConfigKey.service(service),
        ):
            absolute = self.layout.config(ck)
            document = self._good.get(absolute)
            if isinstance(document, GovernanceRule):
                layers.append((str(ck), self._good_raw[absolute].revision, document))
        try:
            rules = effective_rules(service, layers, self.identity)
        except ConfigurationError as exc:
            _log.error(
                "config: the rules for %s from %s do not combine (%s) and are NOT applied; "
                "the previous rules stay in force",
                service,
                ", ".join(f"{key}@{rev}" for key, rev, _ in layers),
                exc.message,
            )
            return
        old = self._rules.get(service)
        if old is not None and _signature(old) == _signature(rules):
            return
        with self._lock:
            self._rules = {**self._rules, service: rules}
            listeners = self._rule_listeners.get(service, ())
            for listener in listeners:
                try:
                    listener(rules)
                except Exception:  # one listener's bug must not stop the others
                    _log.exception("a rules listener of %s failed", service)

    def _publish_settings(self) -> None:
        values = {}
        root = self.layout.config_root
        for key, value in self._good.items():
            ck = self.layout.relative(key)
            if ck is not None and not ck.is_governance:
                values[key[len(root) :]] = value
        with self._lock:
            self._settings = values
            for watch in self._setting_watches:
                self._deliver_setting(watch, values)

    def _deliver_setting(self, watch: _SettingWatch, values: Mapping[str, Any]) -> None:
        scopes = ["global/", f"apps/{self.app}/"]
        if watch.service is not None:
            scopes.append(f"services/{watch.service}/")
        data, sources = resolve_setting(values, scopes, watch.name)
        if data == watch.data and type(data) is type(watch.data):
            return
        value = data
        if data is MISSING and _is_model(watch.kind):
            data, value = MISSING, _defaults(watch.kind)
            if value is MISSING:
                return
        elif watch.kind is not None and data is not MISSING:
            try:
                value = validate_value(data, watch.kind, key=", ".join(sources))
            except RuleValidationError as exc:
                if watch.reported != data:
                    watch.reported = data
                    _log.error(
                        "config setting %r from %s does not validate as %s and is NOT "
                        "applied: %s; the last good value stays",
                        watch.name,
                        ", ".join(sources),
                        getattr(watch.kind, "__name__", watch.kind),
                        "; ".join(str(p) for p in exc.problems),
                    )
                return
        watch.data = data
        try:
            watch.callback(value, sources)
        except Exception:  # a listener's bug must not stop the others
            _log.exception("a listener of setting %r failed", watch.name)

    def _save_snapshot(self) -> None:
        if self._snapshot is None:
            return
        scopes = self._view.scopes
        entries = {
            key: raw
            for key, raw in self._good_raw.items()
            if any(key.startswith(prefix) for prefix in scopes)
        }
        self._snapshot.save(entries)


def _signature(rules: EffectiveRules) -> tuple[Any, ...]:
    return (rules.rule.model_dump(exclude_unset=True), rules.gray, rules.sources)


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _defaults(model: Any) -> Any:
    """``model`` built from its defaults alone, or MISSING if it needs values."""
    try:
        return validate_value({}, model)
    except RuleValidationError:
        return MISSING
