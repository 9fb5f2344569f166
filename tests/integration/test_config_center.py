"""ConfigCenter against a real etcd: live changes, bad documents, restarts, snapshots."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dubbok.config import ConfigCenter, ConfigStore, EffectiveRules, InstanceIdentity
from dubbok.testing.etcd import EtcdServer

pytestmark = pytest.mark.etcd

_namespaces = itertools.count()
SERVICE = "helloworld.Greeter"
RULES = f"services/{SERVICE}/governance"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def url(etcd: EtcdServer) -> str:
    return f"{etcd.url}/?namespace=center{next(_namespaces)}"


@pytest.fixture
def store(url: str) -> Iterator[ConfigStore]:
    with ConfigStore.from_url(url) as opened:
        yield opened


@pytest.fixture
def center(url: str) -> Iterator[ConfigCenter]:
    with ConfigCenter(url, "shop") as opened:
        yield opened


def test_live_changes_reach_listeners_in_milliseconds(
    store: ConfigStore, center: ConfigCenter
) -> None:
    assert center.state == "live"
    assert center.rules_for(SERVICE).empty
    changes: queue.SimpleQueue[EffectiveRules] = queue.SimpleQueue()
    center.on_rules_change(SERVICE, changes.put)

    doc = (
        "timeout: 0.5\nloadbalance: p2c\n"
        'instances: {"127.0.0.1:5001": {weight: 20}}\n'
        "breaker: {method: {error_ratio: 0.25, min_calls: 4}}\n"
        "degrade: {SayHello: {mode: force, return: {message: busy}}}\n"
    )
    started = time.monotonic()
    written = store.put(RULES, doc)
    rules = changes.get(timeout=5)
    assert time.monotonic() - started < 1.0
    assert rules.revision == written.revision
    assert (rules.timeout, rules.loadbalance, rules.weights["127.0.0.1:5001"]) == (0.5, "p2c", 20)
    assert rules.breaker is not None and rules.breaker.method is not None
    assert rules.breaker.method.error_ratio == 0.25
    degrade = rules.degrade("SayHello")
    assert degrade is not None and degrade.forced
    assert center.rules_for(SERVICE) is rules

    store.put(RULES, "timeout: 2\n")
    assert changes.get(timeout=5).degrade("SayHello") is None
    store.put("global/governance", "retries: 0\n")
    after_global = changes.get(timeout=5)
    assert (after_global.timeout, after_global.retries) == (2.0, 0)
    store.delete(RULES)
    assert changes.get(timeout=5).timeout is None


def test_an_invalid_document_is_ignored_with_one_clear_error(
    etcd: EtcdServer, store: ConfigStore, center: ConfigCenter, caplog: pytest.LogCaptureFixture
) -> None:
    store.put(RULES, "timeout: 1\n")
    wait_until(lambda: center.rules_for(SERVICE).timeout == 1.0)
    raw_key = f"{store.layout.config_root}{RULES}"
    with caplog.at_level(logging.ERROR, logger="dubbok.config"):
        etcd.put(raw_key, "timeout: -5\nloadbalance: nope\n")  # another tool, no validation
        wait_until(lambda: RULES in center.problems)
        store.put("global/governance", "retries: 1\n")  # later changes still apply
        wait_until(lambda: center.rules_for(SERVICE).retries == 1)
    assert center.rules_for(SERVICE).timeout == 1.0  # the last good version stays
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert RULES in errors[0]
    assert "timeout: must be greater than 0" in errors[0]
    assert "loadbalance: unknown load balancer" in errors[0]
    assert "Keeping the last good version" in errors[0]
    store.put(RULES, "timeout: 3\n")
    wait_until(lambda: center.rules_for(SERVICE).timeout == 3.0)
    assert center.problems == {}


def test_the_watch_survives_an_etcd_restart(etcd: EtcdServer, url: str) -> None:
    with ConfigCenter(url, "shop") as center, ConfigStore.from_url(url) as store:
        center.track(SERVICE)
        store.put(RULES, "timeout: 1\n")
        wait_until(lambda: center.rules_for(SERVICE).timeout == 1.0)
        etcd.kill()
        etcd.start()
        wait_until(lambda: _put_when_up(store, "timeout: 7\n"))
        wait_until(lambda: center.rules_for(SERVICE).timeout == 7.0)
        assert center.state == "live"


def test_an_etcd_with_an_older_history_is_taken_as_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """etcd restored from a backup, wiped, or a single member that lost its last writes in a
    crash (etcd 3.5.1 acknowledges a single member's write before logging it): revisions
    go back, and what the center saw in the old history must not hide the new one."""
    with EtcdServer() as etcd:
        url = f"{etcd.url}/?namespace=back"
        with ConfigCenter(url, "shop") as center, ConfigStore.from_url(url) as store:
            center.track(SERVICE)
            for timeout in range(1, 6):
                store.put(RULES, f"timeout: {timeout}\n")
            store.put("global/governance", "retries: 2\n")
            wait_until(lambda: center.rules_for(SERVICE).retries == 2)
            assert center.rules_for(SERVICE).timeout == 5.0
            old_revision = center.revision
            etcd.stop()
            etcd.wipe()
            with caplog.at_level(logging.WARNING, logger="dubbok.config"):
                etcd.start()
                wait_until(lambda: _put_when_up(store, "timeout: 7\n"))
                wait_until(lambda: center.rules_for(SERVICE).timeout == 7.0)
            assert center.rules_for(SERVICE).retries is None  # gone with the old history
            assert center.state == "live" and center.revision < old_revision
            assert any("older history" in r.getMessage() for r in caplog.records)
            store.put(RULES, "timeout: 8\n")  # and the watch follows the new history
            wait_until(lambda: center.rules_for(SERVICE).timeout == 8.0)


def _put_when_up(store: ConfigStore, value: str) -> bool:
    try:
        store.put(RULES, value)
    except Exception:
        return False
    return True


def test_one_watch_per_process_whatever_the_scopes(store: ConfigStore, url: str) -> None:
    before = {t.name for t in threading.enumerate()}
    with ConfigCenter(url, "shop") as center:
        for i in range(5):
            center.track(f"svc.S{i}")
        center.get("db")
        watches = [
            t
            for t in threading.enumerate()
            if t.name.startswith("dubbok-config-watch") and t.name not in before
        ]
        assert len(watches) == 1
        store.put("services/svc.S3/governance", "retries: 3\n")
        wait_until(lambda: center.rules_for("svc.S3").retries == 3)


def test_start_from_the_snapshot_when_etcd_is_down(
    etcd: EtcdServer, url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ConfigStore.from_url(url) as store:
        store.put(RULES, "timeout: 4\n")
        store.put("apps/shop/db", "pool: 7\n")
    with ConfigCenter(url, "shop", snapshot_dir=tmp_path) as center:
        wait_until(lambda: center.rules_for(SERVICE).timeout == 4.0)
    etcd.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="dubbok.config"):
            quick = f"{url}&timeout=0.5"
            center = ConfigCenter(quick, "shop", snapshot_dir=tmp_path, load_timeout=10)
            center.start()
        try:
            assert center.state == "snapshot"
            assert center.rules_for(SERVICE).timeout == 4.0
            assert center.get("db") == {"pool": 7}
            said = " ".join(r.getMessage() for r in caplog.records)
            assert "etcd is unreachable" in said and "config snapshot" in said
            etcd.start()
            wait_until(lambda: center.state == "live")
        finally:
            center.close()
    finally:
        etcd.start()


def test_start_with_code_defaults_when_nothing_is_there(tmp_path: Path) -> None:
    with EtcdServer() as down:
        url = f"{down.url}/?timeout=0.5"
    center = ConfigCenter(url, "shop", snapshot_dir=tmp_path, load_timeout=10)
    try:
        center.start()
        assert center.state == "defaults"
        assert center.rules_for(SERVICE).empty
        assert center.get("db", 5) == 5
    finally:
        center.close()


class Db(BaseModel):
    host: str = "localhost"
    pool_size: int = 10


def test_settings_get_watch_and_bind(
    store: ConfigStore, center: ConfigCenter, caplog: pytest.LogCaptureFixture
) -> None:
    assert center.get("db/pool_size", 3, type=int) == 3
    bound = center.bind(Db, "db")
    assert bound.value == Db()
    seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
    center.watch("db/pool_size", seen.put, type=int)

    store.put("global/db", "host: db.global\npool_size: 5\n")
    assert seen.get(timeout=5) == 5
    store.put("apps/shop/db/pool_size", "20")
    assert seen.get(timeout=5) == 20
    wait_until(lambda: bound.value.pool_size == 20)
    assert bound.value.host == "db.global"
    assert center.get("db/pool_size", type=int) == 20
    assert center.get("db") == {"host": "db.global", "pool_size": 20}

    with caplog.at_level(logging.ERROR, logger="dubbok.config"):
        store.put("apps/shop/db/pool_size", "lots")
        wait_until(lambda: any("pool_size" in r.getMessage() for r in caplog.records))
    assert bound.value.pool_size == 20  # the last good value stays
    store.delete("apps/shop/db/pool_size")
    assert seen.get(timeout=5) == 5
    wait_until(lambda: bound.value.pool_size == 5)


def test_gray_rules_reach_only_the_selected_instances(store: ConfigStore, url: str) -> None:
    canary = InstanceIdentity("shop", "pod-1:1", "pod-1", {"track": "canary"})
    stable = InstanceIdentity("shop", "pod-2:1", "pod-2", {"track": "stable"})
    with (
        ConfigCenter(url, "shop", identity=canary) as a,
        ConfigCenter(url, "shop", identity=stable) as b,
    ):
        a.track(SERVICE)
        b.track(SERVICE)
        store.put(
            RULES,
            "timeout: 1\ngray:\n"
            "  - {name: try-fast, select: {tags: {track: canary}}, rules: {timeout: 0.2}}\n",
        )
        wait_until(lambda: a.rules_for(SERVICE).timeout == 0.2)
        wait_until(lambda: b.rules_for(SERVICE).timeout == 1.0)
        assert a.rules_for(SERVICE).gray == (f"{RULES}#try-fast",)
