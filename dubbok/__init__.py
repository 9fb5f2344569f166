"""dubbok — in-process service governance for Python gRPC services.

``import dubbok`` for the sync driver (on ``grpc``), ``import dubbok.aio`` for asyncio (on
``grpc.aio``); both share one governance core. Start with :class:`App`.
"""

from __future__ import annotations

from .app import App
from .endpoint import Endpoint
from .errors import (
    BindError,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
    DubbokError,
    InvalidURLError,
    NoProviderError,
    RegistryError,
    RpcError,
    ServiceDefinitionError,
    UnknownExtensionError,
)
from .governance import degrade, fallback
from .service import MethodOptions, ServiceOptions, method, service

__version__ = "0.1.0"

__all__ = [
    "App",
    "BindError",
    "CircuitOpenError",
    "ConfigurationError",
    "DeadlineExceededError",
    "DubbokError",
    "Endpoint",
    "InvalidURLError",
    "MethodOptions",
    "NoProviderError",
    "RegistryError",
    "RpcError",
    "ServiceDefinitionError",
    "ServiceOptions",
    "UnknownExtensionError",
    "__version__",
    "degrade",
    "fallback",
    "method",
    "service",
]
