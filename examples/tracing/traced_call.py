"""Tracing and attachments in one process: `python examples/tracing/traced_call.py`.

Starts a greeter provider and a consumer on loopback, both with an observer whose spans stay
in memory (``dubbok.tracing.testing.Recorder``; in a service you would call
``dubbok.tracing.configure(service_name=..., exporter="otlp")`` instead). The consumer sets an
attachment and makes two calls over two endpoints, one of which has no provider: round robin
starts one of the calls there, and failover makes a second attempt. It prints what the
provider's handler saw and the trace trees.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

import dubbok
from dubbok import attachments
from dubbok.testing import free_port
from dubbok.testing.pb import helloworld_pb2, helloworld_pb2_grpc
from dubbok.tracing.testing import Recorder


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request: helloworld_pb2.HelloRequest, context: object) -> object:
        tenant = attachments.get("tenant", "none")
        return helloworld_pb2.HelloReply(
            message=f"Hello {request.name} (tenant {tenant})", served_by="greeter-1"
        )


def main() -> None:
    recorder = Recorder()
    gone = free_port()  # nothing listens here: the first attempt fails to connect
    with dubbok.App("greeter", observer=recorder.observer) as provider:
        port = provider.serve(Greeter(), host="127.0.0.1", port=0)
        with dubbok.App("frontend", observer=recorder.observer) as consumer:
            greeter = consumer.reference(
                helloworld_pb2_grpc.GreeterStub,
                "helloworld.Greeter",
                discovery=f"static://127.0.0.1:{gone},127.0.0.1:{port}",
                loadbalance="roundrobin",
                cluster="failover",
                retries=2,
                timeout=5.0,
            )
            with attachments.attached({"tenant": "acme"}):
                for name in ("world", "again"):
                    reply = greeter.SayHello(helloworld_pb2.HelloRequest(name=name))
                    print(reply.message)
            recorder.wait_for_spans(7)  # 2 calls, 3 attempts, 2 handled
    print()
    print(recorder.tree())
    recorder.shutdown()


if __name__ == "__main__":
    main()
