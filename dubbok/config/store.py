"""Reading and writing configuration in etcd: compare-and-swap writes that keep history.

:class:`ConfigStore` is what the CLI and programs that edit configuration use (processes
that only *read* configuration use :class:`~dubbok.config.center.ConfigCenter`). Every
write:

1. validates the document (a governance document against the rule models, a setting as
   YAML/JSON) and refuses it with every problem listed;
2. checks that the write fits in one etcd request (1.5 MiB by default), value and history
   entry together, and refuses it with the sizes otherwise;
3. commits, in one transaction, the new value and a history entry holding the previous
   value with author, time and message — only if the key is still at the revision the
   writer saw (``expect_revision``; without it, the revision just read);
4. trims the key's history to ``history_limit`` entries.

Every method runs on the caller's thread and may block for the etcd timeout; etcd failures
raise :class:`~dubbok.errors.RegistryError` naming the endpoints.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
from dataclasses import dataclass

from ..errors import DubbokError, RegistryError
from ..registry._client import (
    EtcdClient,
    EtcdError,
    KeyValue,
    WatchCallback,
    WatchHandle,
    compare_and_swap,
    get_one,
    list_keys,
)
from ..registry.etcd import connection_settings
from ..registry.record import decode_consumer, decode_provider
from ..url import parse_url
from .errors import ConflictError, NotFoundError, ValueTooLargeError
from .history import HistoryEntry, Version, versions
from .keys import ConfigKey, KeyLayout, Scope, parse_key
from .validation import check_document

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "Change",
    "ConfigStore",
    "Entry",
    "Watcher",
    "WriteResult",
    "default_author",
]

_log = logging.getLogger("dubbok.config")

DEFAULT_HISTORY_LIMIT = 50
"""History entries kept per key."""

DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
"""etcd's default ``--max-request-bytes`` (1.5 MiB)."""

_REQUEST_OVERHEAD = 1024  # protobuf framing of a two-put transaction, with room to spare
_RETRIES = 5  # unconditional writes retry this often when another writer slips in


def default_author() -> str:
    """``$DUBBOK_AUTHOR``, else ``user@host``."""
    explicit = os.environ.get("DUBBOK_AUTHOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class Change:
    """Who makes a write, and why; kept in the history entry."""

    author: str = ""
    message: str = ""

    def resolved_author(self) -> str:
        return self.author or default_author()


@dataclass(frozen=True, slots=True)
class Entry:
    """A config key's current value and the revision it was written at."""

    key: ConfigKey
    value: bytes
    revision: int

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did. ``revision`` is the key's revision afterwards (for a delete, the
    revision of the delete); ``changed`` is false when the value was already the one asked
    for and nothing was written."""

    key: ConfigKey
    revision: int
    previous: Entry | None
    changed: bool = True


@dataclass(frozen=True, slots=True)
class Watcher:
    """A registered process that would see a change: a provider or a consumer."""

    kind: str
    service: str
    instance: str
    app: str


class ConfigStore:
    """Config keys of one namespace in etcd. Thread-safe (etcd does the serialising)."""

    def __init__(
        self,
        client: EtcdClient,
        namespace: str = "default",
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        if history_limit < 0:
            raise ValueError(f"history_limit must be >= 0, got {history_limit}")
        self._client = client
        self.layout = KeyLayout(namespace)
        self.history_limit = history_limit
        self.max_request_bytes = max_request_bytes

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> ConfigStore:
        """A store on the etcd an ``etcd://host:port/?namespace=NAME`` URL names (auth and
        TLS as URL parameters, see :mod:`dubbok.registry.etcd`)."""
        parsed = parse_url(url)
        client = EtcdClient(connection_settings(parsed))
        return cls(
            client,
            parsed.param("namespace") or "default",
            history_limit=history_limit,
            max_request_bytes=max_request_bytes,
        )

    @property
    def endpoints(self) -> str:
        return self._client.endpoints

    @property
    def namespace(self) -> str:
        return self.layout.namespace

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ConfigStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def get(self, key: ConfigKey | str) -> Entry | None:
        """The current value of ``key``, or ``None``."""
        ck = _key(key)
        kv, _ = get_one(self._client, self.layout.config(ck))
        return None if kv is None else Entry(ck, kv.value, kv.mod_revision)

    def scan(self, prefix: str = "") -> list[tuple[ConfigKey, int]]:
        """Config keys under ``prefix`` (relative to ``config/``, e.g. ``services/``) with
        their revisions, sorted. Keys that are not valid config keys are left out."""
        rel = prefix.strip().lstrip("/").removeprefix("config/")
        keys, _ = list_keys(self._client, self.layout.config_root + rel)
        out = []
        for absolute, revision in keys:
            ck = self.layout.relative(absolute)
            if ck is not None:
                out.append((ck, revision))
        return out

    def revision(self) -> int:
        """The store revision now."""
        return self._client.revision()

    # -- writing ----------------------------------------------------------------------------

    def put(
        self,
        key: ConfigKey | str,
        value: bytes | str,
        *,
        expect_revision: int | None = None,
        change: Change | None = None,
        action: str = "set",
    ) -> WriteResult:
        """Validate and write ``value``. ``expect_revision``: the revision the writer saw
        (0: the key must not exist); a mismatch raises :class:`ConflictError` and writes
        nothing. Without it the write goes over whatever is there (still atomically with
        its history entry)."""
        ck = _key(key)
        raw = value.encode("utf-8") if isinstance(value, str) else value
        self._check_size(ck, self.layout.config(ck), raw, "", b"", alone=True)
        check_document(ck, raw)
        return self._swap(ck, raw, expect_revision, change or Change(), action)

    def delete(
        self,
        key: ConfigKey | str,
        *,
        expect_revision: int | None = None,
        change: Change | None = None,
    ) -> WriteResult:
        """Delete ``key``, keeping its value in history. :class:`NotFoundError` if absent."""
        ck = _key(key)
        return self._swap(ck, None, expect_revision, change or Change(), "rm")

    def rollback(
        self,
        key: ConfigKey | str,
        *,
        to_revision: int | None = None,
        expect_revision: int | None = None,
        change: Change | None = None,
    ) -> WriteResult:
        """Write the value ``key`` had at ``to_revision`` (default: the version before the
        current one) as a new version."""
        ck = _key(key)
        target = self.version(ck, to_revision) if to_revision is not None else self._previous(ck)
        assert target.value is not None  # version()/_previous() only return known values
        text = change or Change()
        message = text.message or f"rollback to revision {target.revision}"
        return self.put(
            ck,
            target.value,
            expect_revision=expect_revision,
            change=Change(text.author, message),
            action="rollback",
        )

    def _swap(
        self,
        key: ConfigKey,
        value: bytes | None,
        expect_revision: int | None,
        change: Change,
        action: str,
    ) -> WriteResult:
        absolute = self.layout.config(key)
        for _ in range(_RETRIES):
            kv, read_at = get_one(self._client, absolute)
            current = 0 if kv is None else kv.mod_revision
            if expect_revision is not None and expect_revision != current:
                raise ConflictError(str(key), expect_revision, current)
            previous = None if kv is None else Entry(key, kv.value, kv.mod_revision)
            if value is None and kv is None:
                raise NotFoundError(f"{key} does not exist in namespace {self.namespace!r}")
            if value is not None and kv is not None and kv.value == value:
                return WriteResult(key, kv.mod_revision, previous, changed=False)
            entry = HistoryEntry(
                action=action,
                author=change.resolved_author(),
                time=time.time(),
                message=change.message,
                previous_revision=current,
                previous=None if kv is None else kv.value,
            )
            history_key = self.layout.history(key, current or read_at)
            puts: list[tuple[str, bytes]] = []
            encoded = entry.encode()
            if self.history_limit > 0:
                puts.append((history_key, encoded))
            if value is not None:
                self._check_size(key, absolute, value, history_key, encoded)
                puts.append((absolute, value))
            deletes = [absolute] if value is None else []
            try:
                applied, revision, now = compare_and_swap(
                    self._client, absolute, current, puts, deletes
                )
            except EtcdError as exc:
                raise self._translate(key, exc) from exc
            if applied:
                self._trim(key)
                return WriteResult(key, revision, previous)
            if expect_revision is not None:
                raise ConflictError(
                    str(key), expect_revision, 0 if now is None else now.mod_revision
                )
        raise RegistryError(
            f"{key} kept changing while this write was tried {_RETRIES} times; "
            "someone is writing it in a loop: find them, or retry later"
        )

    def _check_size(
        self,
        key: ConfigKey,
        absolute: str,
        value: bytes,
        history_key: str,
        entry: bytes,
        *,
        alone: bool = False,
    ) -> None:
        limit = self.max_request_bytes
        single = len(absolute.encode()) + len(value) + _REQUEST_OVERHEAD
        if single > limit:
            raise ValueTooLargeError(
                str(key),
                f"the value is {_size(len(value))}, over what etcd accepts in one request "
                f"({_size(limit)}, its --max-request-bytes). Make the document smaller or "
                "split it into several keys (a setting may be spread over NAME/part keys)",
            )
        if alone or self.history_limit == 0:
            return
        total = single + len(history_key.encode()) + len(entry)
        if total > limit:
            raise ValueTooLargeError(
                str(key),
                f"the write would be {_size(total)}: the new value ({_size(len(value))}) and "
                f"the previous one kept in history ({_size(len(entry))}) go in one etcd "
                f"request, and etcd accepts at most {_size(limit)} (--max-request-bytes). "
                "Make the document smaller or split it into several keys",
            )

    def _translate(self, key: ConfigKey, exc: EtcdError) -> DubbokError:
        text = exc.message
        if "request is too large" in text or "RESOURCE_EXHAUSTED" in text:
            return ValueTooLargeError(
                str(key),
                f"etcd refused the write as too large ({text}); its --max-request-bytes is "
                "lower than this client assumed: make the document smaller",
            )
        return exc

    def _trim(self, key: ConfigKey) -> None:
        try:
            entries, _ = list_keys(self._client, self.layout.history_prefix(key))
            own = [k for k, _ in entries if self.layout.history_revision(key, k) is not None]
            excess = own[: max(0, len(own) - self.history_limit)]
            if excess:
                self._client.delete_many(excess)
        except EtcdError as exc:  # the write itself succeeded; trimming waits for the next
            _log.warning("could not trim the history of %s: %s", key, exc.message)

    # -- history ----------------------------------------------------------------------------

    def history(self, key: ConfigKey | str) -> list[Version]:
        """Every version of ``key`` the history knows, newest first."""
        ck = _key(key)
        kv, _ = get_one(self._client, self.layout.config(ck))
        entries: list[tuple[int, HistoryEntry]] = []
        keys, _ = list_keys(self._client, self.layout.history_prefix(ck))
        for absolute, _ in keys:
            if self.layout.history_revision(ck, absolute) is None:
                continue
            item, _ = get_one(self._client, absolute)
            if item is None:
                continue
            entry = HistoryEntry.decode(item.value)
            if entry is None:
                _log.warning("skipping the unreadable history entry %s", absolute)
                continue
            entries.append((item.mod_revision, entry))
        current = None if kv is None else (kv.mod_revision, kv.value)
        return versions(current, entries)

    def version(self, key: ConfigKey | str, revision: int) -> Version:
        """The version of ``key`` written at ``revision``; :class:`NotFoundError` when the
        history does not hold its value."""
        ck = _key(key)
        found = [v for v in self.history(ck) if v.revision == revision]
        if not found or found[0].value is None:
            known = [str(v.revision) for v in self.history(ck) if v.known]
            why = "it is a deletion" if found and found[0].deleted else "no such version"
            raise NotFoundError(
                f"{ck} has no value at revision {revision} ({why}); versions with a value: "
                f"{', '.join(known) or 'none'} (see 'dubbok config history {ck}')"
            )
        return found[0]

    def _previous(self, key: ConfigKey) -> Version:
        listed = self.history(key)
        current = next((v for v in listed if v.current), None)
        for v in listed:
            if v.known and not v.current and (current is None or v.revision < current.revision):
                return v
        raise NotFoundError(
            f"{key} has no earlier version to roll back to; 'dubbok config history {key}' "
            "lists what is kept"
        )

    def watch(
        self,
        prefix: str,
        callback: WatchCallback,
        *,
        start_revision: int,
        name: str = "dubbok-config-watch",
    ) -> WatchHandle:
        """Watch config keys under ``prefix`` (relative to ``config/``) from
        ``start_revision``; ``callback`` gets each batch, or once the error that ended it,
        on the watch's thread (see :meth:`EtcdClient.watch_prefix`)."""
        rel = prefix.strip().lstrip("/").removeprefix("config/")
        return self._client.watch_prefix(
            self.layout.config_root + rel, callback, start_revision=start_revision, name=name
        )

    # -- who is affected --------------------------------------------------------------------

    def watchers(self, key: ConfigKey | str) -> list[Watcher]:
        """The registered providers and consumers a change of ``key`` reaches: those of its
        service, of its app, or everyone for a global key."""
        ck = _key(key)
        if ck.scope is Scope.SERVICE:
            prefix = f"{self.layout.services_root}{ck.owner}/"
        else:
            prefix = self.layout.services_root
        kvs, _ = self._client.get_prefix(prefix)
        out = [w for w in (self._watcher(kv) for kv in kvs) if w is not None]
        if ck.scope is Scope.APP:
            out = [w for w in out if w.app == ck.owner]
        return out

    def _watcher(self, kv: KeyValue) -> Watcher | None:
        tail = kv.key[len(self.layout.services_root) :]
        parts = tail.split("/")
        if len(parts) != 3 or parts[1] not in ("providers", "consumers"):
            return None
        service, kind, name = parts
        try:
            if kind == "providers":
                endpoint = decode_provider(kv.key, kv.value)
                return Watcher("provider", service, endpoint.address, endpoint.app)
            consumer = decode_consumer(kv.key, kv.value)
            return Watcher("consumer", service, name, consumer.app)
        except RegistryError:
            return None


def _key(key: ConfigKey | str) -> ConfigKey:
    return key if isinstance(key, ConfigKey) else parse_key(key)


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.2f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"
