"""pytest fixtures for testing against a real etcd.

Register with ``pytest_plugins = ["dubbok.testing.pytest_plugin"]`` in a ``conftest.py``,
or import the fixtures into a test module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .etcd import EtcdServer

__all__ = ["etcd_server"]


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """A started etcd on free loopback ports with its own data directory; removed after."""
    server = EtcdServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
