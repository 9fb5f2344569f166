"""``dubbok call SERVICE/METHOD '{json}'``: call any unary method, without its generated code.

Like Dubbo's ``invoke`` (and grpcurl), the request and response types come from the
provider itself, through gRPC server reflection (on by default in a dubbok provider)::

    discovery (etcd registry, or --discovery static:// / dns:///)
      → the providers of SERVICE (filtered by --version / --group)
      → server reflection on one of them: METHOD's request and response message types
      → JSON → request message (a field that does not fit is named)
      → a reference built from a stub made on the fly, so the call takes dubbok's own
        pipeline: routing, balancing, failover of safe errors, breakers
      → the reply as JSON (proto field names) on stdout

The CLI does not register itself as a consumer. Exit codes: 0 the call succeeded; 1 bad
input (target, JSON, metadata, a service or method the provider does not serve, a service
nobody ever registered, a business error from the method); 2 nothing answers (etcd
unreachable, no provider up, provider unreachable, UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, a circuit breaker open).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import click
import grpc

from ..discovery import Discovery, DiscoveryOptions, create_discovery
from ..endpoint import Endpoint
from ..errors import (
    CircuitOpenError,
    ConfigurationError,
    DubbokError,
    NoProviderError,
    RegistryError,
    RpcError,
)
from ..invocation import Metadata
from ..registry.record import validate_name
from ..url import parse_url
from .context import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Backend,
    Output,
    output_options,
    report_error,
)

__all__ = ["CallError", "MethodSchema", "call", "parse_metadata", "parse_target", "stub_class"]

CLI_APP = "dubbok-cli"
DEFAULT_TIMEOUT = 10.0
_REFLECTION_TRIES = 3  # providers tried for reflection before giving up

# Statuses that say "nothing answered in time": retrying later may succeed.
_UNREACHABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_METADATA_KEY = re.compile(r"^[0-9a-z_.-]+$")


class CallError(DubbokError):
    """``dubbok call`` could not make the call; ``exit_code`` is what the CLI exits with."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- input ------------------------------------------------------------------------------------


def parse_target(text: str) -> tuple[str, str]:
    """``pkg.Service/Method`` (or ``/pkg.Service/Method``) → ``(service, method)``."""
    service, sep, method = text.strip().lstrip("/").rpartition("/")
    if not sep or not service or not method or "/" in service:
        raise click.BadParameter(
            f"{text!r}: name the method as SERVICE/METHOD, e.g. helloworld.Greeter/SayHello",
            param_hint="SERVICE/METHOD",
        )
    try:
        validate_name("service name", service)
    except ConfigurationError as exc:
        raise click.BadParameter(exc.message, param_hint="SERVICE/METHOD") from None
    return service, method


def parse_metadata(items: Sequence[str]) -> list[tuple[str, str | bytes]]:
    """``key=value`` pairs → gRPC metadata; a ``-bin`` key takes a base64 value."""
    out: list[tuple[str, str | bytes]] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _METADATA_KEY.match(key):
            raise click.BadParameter(
                f"{item!r}: write metadata as key=value, the key in lowercase letters, digits, "
                "'-', '_' or '.' (e.g. --metadata x-user=alice)",
                param_hint="--metadata",
            )
        if key.startswith("grpc-"):
            raise click.BadParameter(
                f"{key!r}: keys starting with 'grpc-' are reserved for gRPC itself",
                param_hint="--metadata",
            )
        if key.endswith("-bin"):
            try:
                out.append((key, base64.b64decode(value, validate=True)))
            except binascii.Error:
                raise click.BadParameter(
                    f"{key!r} is a binary key ('-bin'): give its value in base64",
                    param_hint="--metadata",
                ) from None
        else:
            out.append((key, value))
    return out


def read_request(text: str) -> dict[str, Any]:
    """The request as a JSON object; ``-`` reads it from stdin."""
    source = "the request"
    if text == "-":
        text, source = sys.stdin.read(), "the request on stdin"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CallError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            """Quote it for the shell, e.g. '{"name": "world"}'"""
        ) from None
    if not isinstance(data, dict):
        raise CallError(
            f"{source} must be a JSON object ({{...}}), got a JSON {type(data).__name__}"
        )
    return data


# -- finding providers ------------------------------------------------------------------------


def _accepts(version: str, group: str) -> Callable[[Endpoint], bool]:
    from ..routing import VersionRouter

    router = VersionRouter(version=version or "*", group=group)
    return router.accepts


def first_endpoints(discovery: Discovery, service: str, wait: float) -> tuple[Endpoint, ...]:
    """The first endpoint set discovery delivers for ``service`` (empty if none within
    ``wait`` seconds). etcd delivers during ``subscribe``, raising :class:`RegistryError`
    when it cannot be reached; DNS may deliver from its own thread. The subscription lasts
    until ``discovery`` is closed, so that the reference made next shares its watch."""
    arrived = threading.Event()
    found: list[tuple[Endpoint, ...]] = []

    def listener(endpoints: Sequence[Endpoint]) -> None:
        if not arrived.is_set():
            found.append(tuple(endpoints))
            arrived.set()

    try:
        discovery.subscribe(service, listener)
    except RegistryError as exc:
        # Discovery's own advice (snapshots for consumers that must start while etcd is
        # down) does not apply to a one-off command: say only why etcd failed.
        cause = exc.__cause__
        if isinstance(cause, DubbokError):
            raise RegistryError(f"cannot list the providers of {service}: {cause.message}") from exc
        raise
    arrived.wait(wait)
    return found[0] if found else ()


def _no_provider(
    url: str, service: str, found: Sequence[Endpoint], version: str, group: str, wait: float
) -> CallError:
    """Why there is nothing to call, and whether waiting could help (exit 2) or the input
    is wrong (exit 1)."""
    if found:
        versions = ", ".join(sorted({repr(ep.version) for ep in found}))
        groups = ", ".join(sorted({repr(ep.group) for ep in found}))
        return CallError(
            f"{len(found)} provider(s) of {service}, none with version {version or '*'!r} and "
            f"group {group!r}: they have versions {versions} and groups {groups}. "
            "Pass --version / --group to match one"
        )
    parsed = parse_url(url)
    if parsed.scheme != "etcd":
        return CallError(
            f"{parsed.redacted()} gave no endpoint of {service} within {wait:g}s; check the "
            "name and that the providers are up",
            exit_code=EXIT_UNREACHABLE,
        )
    from .services import read_registry

    view = read_registry(Backend(url))
    namespace = view.namespace
    records = view.services.get(service)
    if records is not None:
        return CallError(
            f"no provider of {service} is registered in namespace {namespace!r} "
            f"({len(records.consumers)} consumer(s) wait for one); start a provider, or check "
            "its registry URL and namespace",
            exit_code=EXIT_UNREACHABLE,
        )
    import difflib

    known = sorted(view.services)
    close = difflib.get_close_matches(service, known, n=3)
    hint = (
        f"did you mean {', '.join(close)}?"
        if close
        else f"registered: {', '.join(known)}"
        if known
        else "nothing is registered there; check --namespace"
    )
    return CallError(f"no service {service} in namespace {namespace!r}; {hint}")


# -- reflection -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MethodSchema:
    """A method's types as a provider's reflection described them."""

    service: str
    method: str
    request_class: Any
    response_class: Any
    pool: Any  # google.protobuf.descriptor_pool.DescriptorPool, for Any fields in JSON
    request_fields: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _Deadline(grpc.StreamStreamClientInterceptor):  # type: ignore[misc]  # grpc has no hints
    """Bounds each reflection request (the reflection client sets no timeout itself)."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        left = max(0.001, self._deadline - time.monotonic())
        bounded = _CallDetails(
            details.method,
            left,
            details.metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )
        return continuation(bounded, request_iterator)


def _field_list(descriptor: Any) -> tuple[str, ...]:
    """``name (type)`` for each field of a message, for messages about a bad request."""
    out = []
    for f in descriptor.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, value = f.message_type.fields
            kind = f"map<{_kind(key)}, {_kind(value)}>"
        else:
            kind = ("repeated " if _repeated(f) else "") + _kind(f)
        out.append(f"{f.name} ({kind})")
    return tuple(out)


def _repeated(f: Any) -> bool:
    # protobuf 6.30 added is_repeated and protobuf 7 removed label.
    flag = getattr(f, "is_repeated", None)
    return bool(flag) if flag is not None else f.label == 3  # LABEL_REPEATED


def _kind(f: Any) -> str:
    if f.message_type is not None:
        return str(f.message_type.full_name)
    if f.enum_type is not None:
        return str(f.enum_type.full_name)
    kind = _scalar_names().get(f.type, "?")
    return "bytes, base64" if kind == "bytes" else kind


@functools.cache
def _scalar_names() -> dict[int, str]:
    from google.protobuf.descriptor import FieldDescriptor

    return {
        getattr(FieldDescriptor, name): name.removeprefix("TYPE_").lower()
        for name in dir(FieldDescriptor)
        if name.startswith("TYPE_")
    }


def reflect(address: str, service: str, method: str, timeout: float) -> MethodSchema:
    """Ask the provider at ``address`` for ``service``'s descriptors; build the message
    classes of ``method``.

    Raises :class:`CallError`: exit 2 when the provider does not answer within
    ``timeout``, exit 1 when it answers without the service or method (or without
    reflection).
    """
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(address, options=[("grpc.enable_retries", 0)])
    try:
        database = ProtoReflectionDescriptorDatabase(
            grpc.intercept_channel(channel, _Deadline(deadline))
        )
        pool = descriptor_pool.DescriptorPool(database)
        try:
            # Ask what the provider serves first: a reflection server may also describe
            # services it does not serve (every proto its process imported).
            served = database.get_services()
            try:
                if service not in served:
                    raise KeyError(service)
                service_descriptor = pool.FindServiceByName(service)
            except KeyError:
                offered = sorted(s for s in served if not s.startswith("grpc."))
                raise CallError(
                    f"the provider at {address} does not serve {service}; it serves "
                    f"{', '.join(offered) or 'no application service'} (from server reflection)"
                ) from None
        except grpc.RpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.UNIMPLEMENTED:
                raise CallError(
                    f"the provider at {address} does not serve gRPC server reflection, which "
                    "'dubbok call' needs to learn the message types; dubbok providers serve it "
                    "unless App(reflection=False), other servers need it enabled"
                ) from None
            raise CallError(
                f"server reflection on the provider at {address} failed with {code.name}: "
                f"{exc.details()}",
                exit_code=EXIT_UNREACHABLE if code in _UNREACHABLE else EXIT_USAGE,
            ) from None
        method_descriptor = service_descriptor.methods_by_name.get(method)
        if method_descriptor is None:
            methods = ", ".join(m.name for m in service_descriptor.methods)
            raise CallError(f"{service} has no method {method!r}; its methods: {methods}")
        if method_descriptor.client_streaming or method_descriptor.server_streaming:
            kind = (
                "bidirectional-streaming"
                if method_descriptor.client_streaming and method_descriptor.server_streaming
                else "client-streaming"
                if method_descriptor.client_streaming
                else "server-streaming"
            )
            raise CallError(f"{service}/{method} is {kind}; 'dubbok call' calls unary methods only")
        return MethodSchema(
            service,
            method,
            message_factory.GetMessageClass(method_descriptor.input_type),
            message_factory.GetMessageClass(method_descriptor.output_type),
            pool,
            _field_list(method_descriptor.input_type),
        )
    finally:
        channel.close()


def reflect_any(
    endpoints: Sequence[Endpoint], service: str, method: str, timeout: float
) -> MethodSchema:
    """Reflection on the first provider that answers (at most a few are tried)."""
    failures: list[str] = []
    for endpoint in endpoints[:_REFLECTION_TRIES]:
        try:
            return reflect(endpoint.address, service, method, timeout)
        except CallError as exc:
            if exc.exit_code != EXIT_UNREACHABLE:
                raise
            failures.append(exc.message)
    raise CallError(
        f"no provider of {service} answered: {'; '.join(failures)}", exit_code=EXIT_UNREACHABLE
    )


def stub_class(schema: MethodSchema) -> Callable[[Any], object]:
    """A stub class for the one method, shaped like generated code (``__init__(channel)``
    asks the channel for its multicallable), so that ``App.reference`` can read it."""
    path = schema.path
    method = schema.method
    serialize = schema.request_class.SerializeToString
    deserialize = schema.response_class.FromString

    class DynamicStub:
        def __init__(self, channel: Any) -> None:
            setattr(
                self,
                method,
                channel.unary_unary(
                    path,
                    request_serializer=serialize,
                    response_deserializer=deserialize,
                    _registered_method=True,
                ),
            )

    DynamicStub.__name__ = DynamicStub.__qualname__ = f"{schema.service.rpartition('.')[2]}Stub"
    return DynamicStub


def to_message(schema: MethodSchema, data: dict[str, Any]) -> Any:
    """The request message for ``data``; :class:`CallError` names the field that does not
    fit."""
    from google.protobuf import json_format

    try:
        return json_format.ParseDict(data, schema.request_class(), descriptor_pool=schema.pool)
    except json_format.ParseError as exc:
        # protobuf's text spans lines and lists camelCase names; keep its first sentence.
        problem = " ".join(str(exc).split("\n")[0].split()).rstrip(".")
        name = schema.request_class.DESCRIPTOR.full_name
        raise CallError(
            f"the request does not fit {name}: {problem}. Its fields: "
            f"{', '.join(schema.request_fields) or 'none'}"
        ) from None


# -- the command ------------------------------------------------------------------------------


def _exit_code(error: DubbokError) -> int:
    if isinstance(error, CallError):
        return error.exit_code
    if isinstance(error, CircuitOpenError):
        return EXIT_UNREACHABLE
    if isinstance(error, RpcError):
        return EXIT_UNREACHABLE if error.code in _UNREACHABLE else EXIT_USAGE
    if isinstance(error, (RegistryError, NoProviderError)):
        return EXIT_UNREACHABLE
    return EXIT_USAGE


def _fail(error: DubbokError, out: Output) -> int:
    code = _exit_code(error)
    if not out.json:
        report_error(error, json_mode=False)
        return code
    record: dict[str, Any] = {"error": type(error).__name__, "message": error.message}
    if isinstance(error, RpcError):
        record["status"] = error.code.name
        record["details"] = error.details
        record["attempts"] = [
            {"endpoint": a.endpoint, "status": a.code.name, "details": a.details}
            for a in error.attempts
        ]
    click.echo(json.dumps(record, ensure_ascii=False), err=True)
    return code


def _discovery_url(
    discovery: str | None,
    registry: str | None,
    namespace: str | None,
    user: str | None,
    password: str | None,
    cacert: str | None,
    cert: str | None,
    tls_key: str | None,
) -> str:
    if discovery:
        parse_url(discovery)
        return discovery
    if not registry:
        raise click.UsageError(
            "no way to find providers: pass --registry etcd://127.0.0.1:2379/?namespace=NAME "
            "(or set DUBBOK_REGISTRY), or --discovery static://host:port / dns:///name:port"
        )
    from .services import registry_url

    return registry_url(Backend(registry, namespace, user, password, cacert, cert, tls_key))


def _invoke(
    url: str,
    service: str,
    method: str,
    body: dict[str, Any],
    metadata: Metadata,
    timeout: float,
    version: str,
    group: str,
) -> tuple[Any, MethodSchema, float]:
    """Find, reflect, call; returns the reply, its schema and the call's duration."""
    from ..app import App

    discovery = create_discovery(url, DiscoveryOptions(app=CLI_APP))
    try:
        found = first_endpoints(discovery, service, timeout)
        accepts = _accepts(version, group)
        candidates = [ep for ep in found if accepts(ep)]
        if not candidates:
            raise _no_provider(url, service, found, version, group, timeout)
        schema = reflect_any(candidates, service, method, timeout)
        request = to_message(schema, body)
        # No registry: the CLI is not a consumer anyone should see. The discovery object is
        # shared, so the App neither lists etcd again nor closes it.
        app = App(CLI_APP)
        try:
            ref = app.reference(
                stub_class(schema),
                service,
                discovery=discovery,
                timeout=timeout,
                version=version,
                group=group,
            )
            started = time.monotonic()
            reply = getattr(ref, method)(request, timeout=timeout, metadata=metadata)
            elapsed = time.monotonic() - started
        finally:
            app.close()
        return reply, schema, elapsed
    finally:
        discovery.close()


@click.command()
@click.argument("target", metavar="SERVICE/METHOD")
@click.argument("request", metavar="[JSON]", default="{}")
@click.option(
    "--discovery",
    envvar="DUBBOK_DISCOVERY",
    metavar="URL",
    help="find providers here instead of the registry: static://host:port[,...], "
    "dns:///name:port, etcd://... [env DUBBOK_DISCOVERY]",
)
@click.option(
    "--registry",
    "-r",
    envvar="DUBBOK_REGISTRY",
    metavar="URL",
    help="etcd URL, e.g. etcd://127.0.0.1:2379/?namespace=shop [env DUBBOK_REGISTRY]",
)
@click.option(
    "--namespace",
    "-n",
    envvar="DUBBOK_NAMESPACE",
    metavar="NAME",
    help="namespace (overrides the URL's) [env DUBBOK_NAMESPACE]",
)
@click.option("--user", envvar="DUBBOK_USER", help="etcd user [env DUBBOK_USER]")
@click.option("--password", envvar="DUBBOK_PASSWORD", help="etcd password [env DUBBOK_PASSWORD]")
@click.option(
    "--cacert",
    envvar="DUBBOK_CACERT",
    type=click.Path(dir_okay=False),
    help="CA bundle to verify etcd's TLS certificate [env DUBBOK_CACERT]",
)
@click.option(
    "--cert",
    envvar="DUBBOK_CERT",
    type=click.Path(dir_okay=False),
    help="client TLS certificate for etcd (PEM) [env DUBBOK_CERT]",
)
@click.option(
    "--key",
    "tls_key",
    envvar="DUBBOK_KEY",
    type=click.Path(dir_okay=False),
    help="client TLS key for etcd (PEM) [env DUBBOK_KEY]",
)
@click.option(
    "--timeout",
    "-t",
    type=click.FloatRange(min=0.001),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="seconds for the call; finding providers and reading their schema are each "
    "bounded by it too",
)
@click.option(
    "--metadata",
    "-H",
    "metadata",
    multiple=True,
    metavar="KEY=VALUE",
    help="request metadata (repeatable); a '-bin' key takes a base64 value",
)
@click.option("--version", "version", default="", help="call providers of this version (1.2.*)")
@click.option("--group", default="", help="call providers of this group")
@click.option(
    "--emit-defaults", is_flag=True, help="print fields of the reply that have their default value"
)
@output_options
def call(
    target: str,
    request: str,
    discovery: str | None,
    registry: str | None,
    namespace: str | None,
    user: str | None,
    password: str | None,
    cacert: str | None,
    cert: str | None,
    tls_key: str | None,
    timeout: float,
    metadata: tuple[str, ...],
    version: str,
    group: str,
    emit_defaults: bool,
    out: Output,
) -> int:
    """Call a unary METHOD of SERVICE with a JSON request; print the reply as JSON.

    The provider's gRPC server reflection supplies the message types, so no generated
    code is needed. JSON is the request ('-' reads it from stdin; default {}). --json
    prints the reply on one line.

    \b
    dubbok call helloworld.Greeter/SayHello '{"name": "world"}'
    dubbok call shop.Cart/Add '{"sku": "A1"}' -H x-user=alice --timeout 2
    dubbok call helloworld.Greeter/SayHello '{}' --discovery static://127.0.0.1:50051
    """
    from google.protobuf import json_format

    service, method = parse_target(target)
    md = parse_metadata(metadata)
    try:
        body = read_request(request)
        url = _discovery_url(discovery, registry, namespace, user, password, cacert, cert, tls_key)
        reply, schema, elapsed = _invoke(url, service, method, body, md, timeout, version, group)
    except DubbokError as error:
        return _fail(error, out)
    data = json_format.MessageToDict(
        reply,
        always_print_fields_with_no_presence=emit_defaults,
        preserving_proto_field_name=True,
        descriptor_pool=schema.pool,
    )
    if out.json:
        click.echo(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    else:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        out.note(f"{service}/{method}: OK in {elapsed * 1000:.1f} ms")
    return 0
