"""dubbok on asyncio (``grpc.aio``): the same names as :mod:`dubbok`, awaitable.

::

    app = dubbok.aio.App("greeter")
    port = await app.serve(Greeter(), host="127.0.0.1", port=0)
    greeter = app.reference(GreeterStub, discovery=f"static://127.0.0.1:{port}")
    reply = await greeter.SayHello(HelloRequest(name="x"))
    await app.stop()
"""

from __future__ import annotations

from ..governance import degrade, fallback
from ..service import method, service
from .app import App
from .reference import AsyncReference, AsyncResponseStream

__all__ = [
    "App",
    "AsyncReference",
    "AsyncResponseStream",
    "degrade",
    "fallback",
    "method",
    "service",
]
