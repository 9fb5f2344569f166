"""A greeter provider: `python examples/greeter/provider.py --name p1 [--registry etcd://...]`.

Prints `READY <port>` once serving, then serves until SIGTERM/SIGINT (graceful stop).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

import dubbok
from dubbok.testing.pb import helloworld_pb2, helloworld_pb2_grpc


@dubbok.service("helloworld.Greeter", version="1.0.0")
class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def __init__(self, name: str) -> None:
        self.name = name

    @dubbok.method(timeout=0.5, idempotent=True)
    def SayHello(self, request, context):  # type: ignore[no-untyped-def]
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}!", served_by=self.name)

    def SayHelloStream(self, request, context) -> Iterator[helloworld_pb2.HelloReply]:  # type: ignore[no-untyped-def]
        for i in range(max(1, request.count)):
            yield helloworld_pb2.HelloReply(
                message=f"Hello #{i}, {request.name}!", served_by=self.name
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="greeter-provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--registry", default=None, help="e.g. etcd://127.0.0.1:2379")
    opts = parser.parse_args()

    app = dubbok.App(opts.name, registry=opts.registry, drain=0.5 if opts.registry else 0.0)
    port = app.serve(Greeter(opts.name), host=opts.host, port=opts.port)
    print(f"READY {port}", flush=True)
    app.wait()


if __name__ == "__main__":
    main()
