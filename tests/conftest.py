"""Shared fixtures. Real servers on loopback; nothing here mocks the network."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dubbok.testing import EchoServicer, Provider, serve_provider

pytest_plugins = ["dubbok.testing.pytest_plugin"]  # the etcd_server fixture

Providers = list[tuple[Provider, EchoServicer]]


@pytest.fixture(autouse=True)
def _snapshots_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registry snapshots of test Apps go to the test's own directory, not ~/.cache."""
    monkeypatch.setenv("DUBBOK_SNAPSHOT_DIR", str(tmp_path / "snapshots"))


@pytest.fixture
def echo_providers() -> Iterator[Providers]:
    """Three sync Echo providers on free loopback ports, named p0, p1, p2."""
    with contextlib.ExitStack() as stack:
        out: Providers = []
        for i in range(3):
            servicer = EchoServicer(f"p{i}")
            out.append((stack.enter_context(serve_provider(servicer, name=f"p{i}")), servicer))
        yield out


def static_url(providers: Providers) -> str:
    return "static://" + ",".join(p.address for p, _ in providers)
