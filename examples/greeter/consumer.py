"""A greeter consumer: `python examples/greeter/consumer.py --discovery static://127.0.0.1:50051`.

Calls SayHello a few times through the governed pipeline and prints who answered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

import dubbok
from dubbok.testing.pb import helloworld_pb2, helloworld_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--discovery", default=None, help="static://, dns:///, etcd://")
    parser.add_argument("--registry", default=None, help="etcd://host:2379 (discovers through it)")
    parser.add_argument("--calls", type=int, default=6)
    opts = parser.parse_args()

    with dubbok.App("greeter-consumer", registry=opts.registry) as app:
        greeter = app.reference(
            helloworld_pb2_grpc.GreeterStub,
            "helloworld.Greeter",
            discovery=opts.discovery,
            loadbalance="roundrobin",
            cluster="failover",
            retries=2,
            timeout=1.0,
        )
        for i in range(opts.calls):
            reply = greeter.SayHello(helloworld_pb2.HelloRequest(name=f"call {i}"))
            print(f"{reply.message:<22} served by {reply.served_by}")


if __name__ == "__main__":
    main()
