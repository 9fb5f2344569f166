"""bench's split load: one phase shared out among several client processes against a real
grpcio server, merged as if one client had made every call."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench import overhead  # noqa: E402
from bench.harness import (  # noqa: E402
    BenchError,
    Child,
    LoadSpec,
    run_load,
    run_load_split,
    spawn_client,
    stop_all,
)


def test_a_phase_split_among_client_processes_merges_every_call() -> None:
    server = Child.spawn("raw sync server", overhead.raw_sync_server, 4)
    clients: list[Child] = []
    try:
        port = server.wait_ready(60)
        clients = [
            spawn_client(f"client {i}", "sync", overhead.raw_sync_client, port, 8) for i in range(2)
        ]
        for client in clients:
            client.wait_ready(60)
        spec = LoadSpec(3, 0.05, 0.3)
        merged = run_load_split(clients, spec)
        assert merged.concurrency == 3
        assert merged.errors == 0 and merged.first_error is None
        assert merged.calls > 0 and merged.qps == merged.calls / spec.duration
        assert 0 < merged.p50 <= merged.p99 <= merged.max
        assert merged.cpu_per_call > 0
        assert merged.latencies == ()  # kept only between the children and the merge
        assert "latencies" not in merged.to_dict()
        # the children kept theirs when asked, and one child alone runs as before
        single = run_load(clients[0], LoadSpec(2, 0.05, 0.2, keep_latencies=True))
        assert len(single.latencies) == single.calls > 0
        assert run_load_split(clients[:1], LoadSpec(1, 0.0, 0.1)).concurrency == 1
    finally:
        stop_all([*clients, server], grace=5.0)


def test_a_split_needs_a_caller_per_process() -> None:
    with pytest.raises(BenchError, match="cannot be shared among 3 client processes"):
        run_load_split([None, None, None], LoadSpec(2, 0.0, 0.1))  # type: ignore[list-item]
