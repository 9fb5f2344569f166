"""`make demo`: three greeter providers and a consumer, each in its own process.

The consumer spreads calls over the providers (round robin), then one provider is stopped
gracefully and the consumer carries on with the other two (failover). Exits 0 on success.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import dubbok  # noqa: E402
from dubbok.testing.pb import helloworld_pb2, helloworld_pb2_grpc  # noqa: E402


def start_provider(name: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "provider.py"), "--name", name],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the provider prints READY (or dies)
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"provider {name} did not start (exit code {proc.wait()})")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: graceful stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    providers: list[tuple[subprocess.Popen[str], int]] = []
    try:
        for i in range(1, 4):
            providers.append(start_provider(f"provider-{i}"))
        url = "static://" + ",".join(f"127.0.0.1:{port}" for _, port in providers)
        print(f"three providers up; consumer discovers them via {url}\n")
        with dubbok.App("greeter-consumer") as app:
            greeter = app.reference(
                helloworld_pb2_grpc.GreeterStub,
                discovery=url,
                loadbalance="roundrobin",
                cluster="failover",
                retries=2,
                timeout=1.0,
            )
            for i in range(6):
                reply = greeter.SayHello(helloworld_pb2.HelloRequest(name=f"call {i}"))
                print(f"  {reply.message:<20} served by {reply.served_by}")
            print("\nstopping provider-1 (SIGTERM, graceful) ...\n")
            stop(providers[0][0])
            served = []
            started = time.perf_counter()
            for i in range(6, 12):
                reply = greeter.SayHello(helloworld_pb2.HelloRequest(name=f"call {i}"))
                served.append(reply.served_by)
                print(f"  {reply.message:<20} served by {reply.served_by}")
            elapsed = (time.perf_counter() - started) * 1000
            if "provider-1" in served:
                print("error: a stopped provider answered")
                return 1
            print(f"\nall 12 calls answered; 6 after the stop, in {elapsed:.1f} ms, none failed")
        return 0
    finally:
        for proc, _ in providers:
            stop(proc)


if __name__ == "__main__":
    sys.exit(main())
