"""ConfigStore against a real etcd: CAS, history, rollback, size limits, unicode keys."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from dubbok.config import (
    Change,
    ConfigStore,
    ConflictError,
    NotFoundError,
    RuleValidationError,
    ValueTooLargeError,
)
from dubbok.config.store import DEFAULT_MAX_REQUEST_BYTES
from dubbok.registry import ConsumerInfo
from dubbok.registry.record import consumer_key, encode_consumer
from dubbok.testing.etcd import EtcdServer

pytestmark = pytest.mark.etcd

_namespaces = itertools.count()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def store(etcd: EtcdServer) -> Iterator[ConfigStore]:
    url = f"{etcd.url}/?namespace=store{next(_namespaces)}"
    with ConfigStore.from_url(url, history_limit=5) as opened:
        yield opened


KEY = "services/helloworld.Greeter/governance"


def test_writes_are_compare_and_swap(store: ConfigStore) -> None:
    first = store.put(KEY, "timeout: 1\n", expect_revision=0)
    with pytest.raises(ConflictError) as info:
        store.put(KEY, "timeout: 2\n", expect_revision=0)
    assert info.value.current == first.revision
    assert "--expect-revision" in info.value.message
    second = store.put(KEY, "timeout: 2\n", expect_revision=first.revision)
    with pytest.raises(ConflictError) as info:  # a second editor who read the first version
        store.put(KEY, "timeout: 3\n", expect_revision=first.revision)
    assert (info.value.expected, info.value.current) == (first.revision, second.revision)
    entry = store.get(KEY)
    assert entry is not None and entry.text == "timeout: 2\n"
    assert entry.revision == second.revision


def test_an_identical_value_writes_nothing(store: ConfigStore) -> None:
    first = store.put(KEY, "timeout: 1\n")
    again = store.put(KEY, "timeout: 1\n")
    assert not again.changed and again.revision == first.revision
    assert len(store.history(KEY)) == 1


def test_invalid_documents_are_refused_before_writing(store: ConfigStore) -> None:
    with pytest.raises(RuleValidationError) as info:
        store.put(KEY, "timeout: -1\nloadbalance: nope\n")
    assert {p.path for p in info.value.problems} == {"timeout", "loadbalance"}
    with pytest.raises(RuleValidationError):
        store.put("apps/shop/db", "a: [")
    assert store.get(KEY) is None
    assert store.history(KEY) == []


def test_history_and_rollback_round_trip(store: ConfigStore) -> None:
    r1 = store.put(KEY, "timeout: 1\n", change=Change("alice", "first"))
    r2 = store.put(KEY, "timeout: 2\n", change=Change("bob", "slower"))
    r3 = store.put(KEY, "timeout: 3\n", change=Change("carol", "slower still"))
    versions = store.history(KEY)
    assert [(v.revision, v.author, v.message, v.current) for v in versions] == [
        (r3.revision, "carol", "slower still", True),
        (r2.revision, "bob", "slower", False),
        (r1.revision, "alice", "first", False),
    ]
    assert [v.value for v in versions] == [b"timeout: 3\n", b"timeout: 2\n", b"timeout: 1\n"]

    back = store.rollback(KEY, change=Change("dave"))
    entry = store.get(KEY)
    assert entry is not None and entry.text == "timeout: 2\n"
    latest = store.history(KEY)[0]
    assert (latest.revision, latest.action, latest.author) == (back.revision, "rollback", "dave")
    assert latest.message == f"rollback to revision {r2.revision}"

    store.rollback(KEY, to_revision=r1.revision)
    entry = store.get(KEY)
    assert entry is not None and entry.text == "timeout: 1\n"
    with pytest.raises(NotFoundError):
        store.rollback(KEY, to_revision=1)


def test_a_deleted_key_can_be_restored(store: ConfigStore) -> None:
    r1 = store.put(KEY, "retries: 1\n")
    gone = store.delete(KEY, change=Change("eve", "cleanup"))
    assert store.get(KEY) is None
    versions = store.history(KEY)
    assert versions[0].deleted and versions[0].author == "eve"
    with pytest.raises(NotFoundError):
        store.delete(KEY)
    restored = store.rollback(KEY)
    assert restored.revision > gone.revision
    entry = store.get(KEY)
    assert entry is not None and entry.text == "retries: 1\n"
    assert store.version(KEY, r1.revision).value == b"retries: 1\n"


def test_history_is_bounded_per_key(store: ConfigStore) -> None:
    for i in range(1, 9):
        store.put(KEY, f"retries: {i}\n")
    other = "services/helloworld.Greeter/governance/extra"
    store.put(other, "x: 1")
    versions = store.history(KEY)
    assert len([v for v in versions if v.known]) == 6  # 5 kept entries + the current value
    assert versions[0].value == b"retries: 8\n"
    assert len(store.history(other)) == 1  # a nested key keeps its own history


def test_values_near_the_request_limit_are_refused_with_the_sizes(store: ConfigStore) -> None:
    big = "a: '" + "x" * (DEFAULT_MAX_REQUEST_BYTES - 100) + "'\n"
    with pytest.raises(ValueTooLargeError) as info:
        store.put("apps/shop/blob", big)
    assert "MiB" in info.value.message and "split it" in info.value.message
    half = "a: '" + "x" * (900 * 1024) + "'\n"
    store.put("apps/shop/blob", half)  # fits alone
    with pytest.raises(ValueTooLargeError) as info:  # with the previous one kept: too big
        store.put("apps/shop/blob", half.replace("x", "y"))
    assert "previous one kept in history" in info.value.message
    entry = store.get("apps/shop/blob")
    assert entry is not None and entry.text == half


def test_the_server_limit_is_reported_when_it_is_lower(etcd: EtcdServer) -> None:
    url = f"{etcd.url}/?namespace=store{next(_namespaces)}"
    with ConfigStore.from_url(url, max_request_bytes=64 * 1024 * 1024) as store:
        huge = "a: '" + "x" * (2 * 1024 * 1024) + "'\n"
        with pytest.raises(ValueTooLargeError) as info:
            store.put("apps/shop/blob", huge)
        assert "etcd refused the write as too large" in info.value.message


def test_unicode_keys_and_values(store: ConfigStore) -> None:
    key = "apps/商店/配置/数据库"
    with pytest.raises(Exception, match="app name"):
        store.put(key, "a: 1")
    key = "apps/shop/配置/数据库"
    store.put(key, "主机: 数据库-1\n", change=Change("张三", "初始"))
    entry = store.get(key)
    assert entry is not None and entry.text == "主机: 数据库-1\n"
    assert [str(k) for k, _ in store.scan("apps/shop/")] == [key]
    version = store.history(key)[0]
    assert (version.author, version.message) == ("张三", "初始")


def test_watchers_are_the_registered_processes_of_the_scope(
    etcd: EtcdServer, store: ConfigStore
) -> None:
    namespace = store.namespace
    for service, app, pid in (("a.A", "shop", 1), ("a.A", "web", 2), ("b.B", "shop", 3)):
        info = ConsumerInfo(app=app, host="h", pid=pid)
        etcd.put(consumer_key(namespace, service, info), encode_consumer(info, started_at=0))
    service_watchers = store.watchers("services/a.A/governance")
    assert sorted(w.instance for w in service_watchers) == ["shop@h:1", "web@h:2"]
    assert sorted(w.service for w in store.watchers("apps/shop/db")) == ["a.A", "b.B"]
    assert len(store.watchers("global/governance")) == 3
