"""What providers and consumers write to etcd, and where.

Key layout, under ``/dubbok/<namespace>/``::

    services/<service>/providers/<host>:<port>        provider record (on the process lease)
    services/<service>/consumers/<app>@<host>:<pid>   consumer record (on the process lease)

A provider record is a JSON object::

    {"app": "shop", "version": "1.2.0", "group": "", "weight": 100,
     "tags": {"zone": "a"}, "methods": {"SayHello": {"idempotent": true}},
     "started_at": 1718000000.5, "pid": 4242, "host": "10.0.0.7", "port": 50051}

``host`` and ``port`` are required and must match the key; every other field is optional
(readers fill in defaults, and ignore fields they do not know, so old and new versions mix).
:func:`decode_provider` raises :class:`RecordError` naming the key for anything else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ..endpoint import DEFAULT_WEIGHT, Endpoint, format_address
from ..errors import ConfigurationError, RegistryError
from . import ConsumerInfo

__all__ = [
    "MAX_RECORD_BYTES",
    "RecordError",
    "consumer_key",
    "consumers_prefix",
    "decode_consumer",
    "decode_provider",
    "encode_consumer",
    "encode_provider",
    "namespace_prefix",
    "provider_key",
    "providers_prefix",
    "service_prefix",
    "validate_name",
]

ROOT = "/dubbok/"

MAX_RECORD_BYTES = 1024 * 1024
"""etcd refuses requests over 1.5 MiB by default; we refuse records well before that."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RecordError(RegistryError):
    """A record in etcd that cannot be read: not JSON, a missing field, a bad value."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(
            f"corrupt registry record at {key!r}: {problem}. It is skipped; fix or delete the "
            "key (the provider re-registers on restart)"
        )
        self.key = key
        self.problem = problem


def validate_name(kind: str, value: str) -> str:
    """Check a namespace or service name is safe inside a key; return it.

    Letters, digits, ``.``, ``_`` and ``-`` (gRPC full service names such as
    ``helloworld.Greeter`` qualify); no ``/``, which would shift the key layout.
    """
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigurationError(
            f"invalid {kind} {value!r}: use letters, digits, '.', '_' and '-', starting with a "
            "letter or digit (no '/')"
        )
    return value


def namespace_prefix(namespace: str) -> str:
    return f"{ROOT}{validate_name('namespace', namespace)}/"


def service_prefix(namespace: str, service: str) -> str:
    return f"{namespace_prefix(namespace)}services/{validate_name('service name', service)}/"


def providers_prefix(namespace: str, service: str) -> str:
    return f"{service_prefix(namespace, service)}providers/"


def consumers_prefix(namespace: str, service: str) -> str:
    return f"{service_prefix(namespace, service)}consumers/"


def provider_key(namespace: str, service: str, address: str) -> str:
    """``/dubbok/<namespace>/services/<service>/providers/<host>:<port>``."""
    return f"{providers_prefix(namespace, service)}{address}"


def consumer_key(namespace: str, service: str, consumer: ConsumerInfo) -> str:
    """``/dubbok/<namespace>/services/<service>/consumers/<app>@<host>:<pid>``."""
    app = consumer.app or "unnamed"
    if "/" in app or "/" in consumer.host:
        raise ConfigurationError(
            f"consumer app {app!r} and host {consumer.host!r} must not contain '/'"
        )
    return f"{consumers_prefix(namespace, service)}{app}@{consumer.host}:{consumer.pid}"


def _dump(record: Mapping[str, Any], what: str) -> bytes:
    try:
        data = json.dumps(record, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{what} cannot be written as JSON: {exc}; tags must map str to str and method "
            "options must be JSON values"
        ) from None
    raw = data.encode("utf-8")
    if len(raw) > MAX_RECORD_BYTES:
        raise ConfigurationError(
            f"{what} is {len(raw)} bytes, over the {MAX_RECORD_BYTES}-byte limit; "
            "advertise fewer tags or method options"
        )
    return raw


def encode_provider(endpoint: Endpoint, *, pid: int, started_at: float) -> bytes:
    """The JSON record a provider writes under :func:`provider_key`."""
    record = {
        "app": endpoint.app,
        "version": endpoint.version,
        "group": endpoint.group,
        "weight": endpoint.weight,
        "tags": dict(endpoint.tags),
        "methods": {name: dict(opts) for name, opts in endpoint.methods.items()},
        "started_at": started_at,
        "pid": pid,
        "host": endpoint.host,
        "port": endpoint.port,
    }
    return _dump(record, f"the record of {endpoint.address}")


def _load(key: str, value: bytes) -> dict[str, Any]:
    try:
        data = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecordError(key, "value is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RecordError(key, f"value is not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, dict):
        raise RecordError(key, f"value is a JSON {type(data).__name__}, expected an object")
    return data


def _text(key: str, data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(key, f"field {name!r} must be a string, got {value!r}")
    return value


def _int(key: str, data: Mapping[str, Any], name: str, default: int | None) -> int:
    if name not in data:
        if default is None:
            raise RecordError(key, f"missing field {name!r}")
        return default
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(key, f"field {name!r} must be an integer, got {value!r}")
    return value


def _decode_tags(key: str, data: Mapping[str, Any]) -> dict[str, str]:
    tags = data.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise RecordError(key, f"field 'tags' must map strings to strings, got {tags!r}")
    return tags


def _decode_methods(key: str, data: Mapping[str, Any]) -> dict[str, Mapping[str, object]]:
    methods = data.get("methods") or {}
    if not isinstance(methods, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in methods.items()
    ):
        raise RecordError(key, f"field 'methods' must map method names to objects, got {methods!r}")
    return methods


def decode_provider(key: str, value: bytes) -> Endpoint:
    """The endpoint a provider record describes; :class:`RecordError` names what is wrong."""
    data = _load(key, value)
    host = data.get("host")
    if not isinstance(host, str) or not host:
        raise RecordError(key, f"field 'host' must be a non-empty string, got {host!r}")
    port = _int(key, data, "port", None)
    if not 0 < port < 65536:
        raise RecordError(key, f"port {port} is not in 1..65535")
    weight = _int(key, data, "weight", DEFAULT_WEIGHT)
    if weight < 0:
        raise RecordError(key, f"weight {weight} is negative")
    started_at = data.get("started_at", 0.0)
    if (
        isinstance(started_at, bool)
        or not isinstance(started_at, (int, float))
        or not math.isfinite(started_at)
    ):
        raise RecordError(key, f"field 'started_at' must be a UNIX time, got {started_at!r}")
    # Only IPv6 literals contain ':' and need brackets; skip the costly parse otherwise.
    address = format_address(host, port) if ":" in host else f"{host}:{port}"
    if not key.endswith(f"/{address}"):
        raise RecordError(key, f"record says {address}, which does not match its key")
    return Endpoint(
        host=host,
        port=port,
        weight=weight,
        version=_text(key, data, "version"),
        group=_text(key, data, "group"),
        app=_text(key, data, "app"),
        tags=_decode_tags(key, data),
        methods=_decode_methods(key, data),
        started_at=float(started_at),
    )


def encode_consumer(consumer: ConsumerInfo, *, started_at: float) -> bytes:
    """The JSON record a consumer writes under :func:`consumer_key`."""
    record: dict[str, Any] = dict(consumer.extra)
    record.update(app=consumer.app, host=consumer.host, pid=consumer.pid, started_at=started_at)
    return _dump(record, f"the consumer record of {consumer.app}@{consumer.host}")


def decode_consumer(key: str, value: bytes) -> ConsumerInfo:
    """The consumer a consumer record describes; :class:`RecordError` if it is corrupt."""
    data = _load(key, value)
    host = data.pop("host", None)
    if not isinstance(host, str) or not host:
        raise RecordError(key, f"field 'host' must be a non-empty string, got {host!r}")
    pid = _int(key, data, "pid", None)
    app = _text(key, data, "app")
    data.pop("pid", None)
    data.pop("app", None)
    return ConsumerInfo(app=app, host=host, pid=pid, extra=data)
