"""Shared fixtures. Real servers on loopback; nothing here mocks the network."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from dubbok.testing import EchoServicer, Provider, serve_provider

pytest_plugins = ["dubbok.testing.pytest_plugin"]  # the etcd_server fixture

Providers = list[tuple[Provider, EchoServicer]]


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
