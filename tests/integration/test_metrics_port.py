"""``App(metrics_port=...)`` serves dubbok's metrics for Prometheus (in a subprocess: the
meter provider is process-global)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from dubbok.testing import free_port

SCRIPT = textwrap.dedent(
    """
    import sys, urllib.request
    import dubbok
    from dubbok.testing import EchoServicer
    from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

    port = int(sys.argv[1])
    app = dubbok.App("metrics-demo", metrics_port=port)
    served = app.serve(EchoServicer("p"), host="127.0.0.1", port=0)
    echo = app.reference(echo_pb2_grpc.EchoStub, discovery=f"static://127.0.0.1:{served}")
    for _ in range(3):
        echo.Echo(echo_pb2.EchoRequest(text="x"))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    app.stop(0)
    print(text)
    """
)


def test_metrics_port_serves_rpc_metrics_for_prometheus() -> None:
    port = free_port()
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "rpc_client_duration" in out.stdout
    assert "rpc_server_duration" in out.stdout
    assert 'rpc_service="dubbok.testing.v1.Echo"' in out.stdout
