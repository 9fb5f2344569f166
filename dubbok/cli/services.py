"""``dubbok services ls|show``: what the registry holds about providers and consumers.

Both read ``/dubbok/<namespace>/services/`` once (one etcd range request) and print it;
nothing is written and nothing is watched. A record that cannot be decoded is left out
with a note naming its key (in ``--json`` output, under ``skipped``), like discovery does.

The registry URL comes from ``--registry`` / ``DUBBOK_REGISTRY``; auth and TLS from the
URL's parameters (``user``, ``password``, ``ca``, ``cert``, ``key``) or the flags that
override them (see :mod:`dubbok.cli.context`). :func:`registry_url` folds the flags into
one URL, which is also what ``dubbok call`` hands to discovery.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import click
from rich import box
from rich.table import Table
from rich.text import Text

from ..config.errors import NotFoundError
from ..endpoint import Endpoint
from ..registry import ConsumerInfo
from ..registry.record import (
    RecordError,
    decode_consumer,
    decode_provider,
    namespace_prefix,
    service_prefix,
    validate_name,
)
from ..url import parse_url
from .context import Backend, Output, backend_options, output_options

__all__ = [
    "RegistryView",
    "ServiceRecords",
    "age",
    "read_registry",
    "registry_url",
    "services",
]


# -- reading the registry ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceRecords:
    """The decoded provider and consumer records of one service, sorted by key."""

    service: str
    providers: tuple[Endpoint, ...] = ()
    consumers: tuple[ConsumerInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistryView:
    """What one read of a namespace's ``services/`` tree found."""

    namespace: str
    services: Mapping[str, ServiceRecords] = field(default_factory=dict)
    skipped: tuple[RecordError, ...] = ()


def registry_url(backend: Backend) -> str:
    """The registry URL with the command-line flags folded in as URL parameters.

    Flags win over what the URL says (``--namespace`` over ``?namespace=``, ``--user`` over
    ``user:password@``), as they do for ``dubbok config``. Credentials written in the URL's
    authority move to the ``user`` / ``password`` parameters, which error messages redact.
    """
    if not backend.registry:
        raise click.UsageError(
            "no registry given: pass --registry etcd://127.0.0.1:2379/?namespace=NAME "
            "or set DUBBOK_REGISTRY"
        )
    parsed = parse_url(backend.registry)
    params = dict(parsed.params)
    if parsed.username is not None:
        params["user"] = parsed.username
        if parsed.password is not None:
            params["password"] = parsed.password
    overrides: dict[str, str | float | None] = {
        "namespace": backend.namespace,
        "ca": backend.cacert,
        "cert": backend.cert,
        "key": backend.key,
        "timeout": backend.timeout,
    }
    if backend.user is not None:
        overrides.update(user=backend.user, password=backend.password or "")
    for name, value in overrides.items():
        if value is not None:
            params[name] = f"{value:g}" if isinstance(value, float) else value
    if parsed.username is None and params == parsed.params:
        return backend.registry
    query = urlencode(params, quote_via=quote, safe="/")
    return f"{parsed.scheme}://{','.join(parsed.hosts)}/{parsed.path.lstrip('/')}?{query}"


def read_registry(backend: Backend, service: str | None = None) -> RegistryView:
    """Read every service of the namespace (or only ``service``) from etcd.

    Blocks for one request, bounded by the etcd timeout; raises
    :class:`~dubbok.errors.RegistryError` (exit code 2) when etcd cannot be reached.
    """
    from ..registry._client import EtcdClient
    from ..registry.etcd import connection_settings

    parsed = parse_url(registry_url(backend))
    settings = connection_settings(parsed)
    namespace = validate_name("namespace", parsed.param("namespace") or "default")
    root = f"{namespace_prefix(namespace)}services/"
    prefix = service_prefix(namespace, service) if service is not None else root
    client = EtcdClient(settings)
    try:
        kvs, _ = client.get_prefix(prefix)
    finally:
        client.close()
    providers: dict[str, list[Endpoint]] = {}
    consumers: dict[str, list[ConsumerInfo]] = {}
    skipped: list[RecordError] = []
    for kv in kvs:
        parts = kv.key[len(root) :].split("/")
        if len(parts) != 3 or not parts[2]:
            continue  # not a record of this layout; someone else's key
        name, kind, _ = parts
        try:
            if kind == "providers":
                providers.setdefault(name, []).append(decode_provider(kv.key, kv.value))
            elif kind == "consumers":
                consumers.setdefault(name, []).append(decode_consumer(kv.key, kv.value))
        except RecordError as exc:
            skipped.append(exc)
    names = sorted({*providers, *consumers})
    records = {
        n: ServiceRecords(n, tuple(providers.get(n, ())), tuple(consumers.get(n, ())))
        for n in names
    }
    return RegistryView(namespace, records, tuple(skipped))


# -- rendering --------------------------------------------------------------------------------


def age(started_at: float, now: float) -> str:
    """``12s``, ``3m05s``, ``2h07m``, ``4d03h``; ``-`` when the start time is unknown."""
    if started_at <= 0:
        return "-"
    seconds = max(0, int(now - started_at))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _tags(tags: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


def _provider_data(ep: Endpoint, now: float) -> dict[str, Any]:
    return {
        "address": ep.address,
        "host": ep.host,
        "port": ep.port,
        "app": ep.app,
        "version": ep.version,
        "group": ep.group,
        "weight": ep.weight,
        "tags": dict(ep.tags),
        "methods": {name: dict(opts) for name, opts in ep.methods.items()},
        "started_at": ep.started_at or None,
        "age_seconds": round(max(0.0, now - ep.started_at), 1) if ep.started_at > 0 else None,
    }


def _consumer_data(c: ConsumerInfo) -> dict[str, Any]:
    return {**c.extra, "app": c.app, "host": c.host, "pid": c.pid}


def _skipped_data(view: RegistryView) -> list[dict[str, str]]:
    return [{"key": e.key, "problem": e.problem} for e in view.skipped]


def _note_skipped(out: Output, view: RegistryView) -> None:
    for error in view.skipped:
        out.note(f"skipped {error.key}: {error.problem}")


def _table(*columns: str, right: Sequence[str] = ()) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in right else "left")
    return table


def _unknown(view: RegistryView, service: str) -> NotFoundError:
    known = sorted(view.services)
    close = difflib.get_close_matches(service, known, n=3)
    if close:
        hint = f"did you mean {', '.join(close)}?"
    elif known:
        hint = "'dubbok services ls' lists the registered services"
    else:
        hint = "no service is registered there; check --namespace and the provider's registry URL"
    return NotFoundError(
        f"no provider or consumer of {service} is registered in namespace "
        f"{view.namespace!r}; {hint}"
    )


# -- commands ---------------------------------------------------------------------------------


@click.group()
def services() -> None:
    """Providers and consumers registered in etcd.

    \b
    dubbok services ls
    dubbok services show helloworld.Greeter --json
    """


@services.command("ls")
@backend_options
@output_options
def ls(backend: Backend, out: Output) -> None:
    """List the services and their provider and consumer counts.

    Every service registered in the namespace. A service with consumers and no provider is
    shown in red: its callers have nothing to call.
    """
    view = read_registry(backend)
    rows = [
        {"service": r.service, "providers": len(r.providers), "consumers": len(r.consumers)}
        for r in view.services.values()
    ]
    if out.json:
        out.data({"namespace": view.namespace, "services": rows, "skipped": _skipped_data(view)})
        return
    _note_skipped(out, view)
    if not rows:
        out.note(f"no service is registered in namespace {view.namespace!r}")
        return
    table = _table("SERVICE", "PROVIDERS", "CONSUMERS", right=("PROVIDERS", "CONSUMERS"))
    for r in view.services.values():
        style = "" if r.providers else "red"
        table.add_row(
            Text(r.service, style=style),
            Text(str(len(r.providers)), style=style),
            str(len(r.consumers)),
        )
    out.out.print(table)
    out.note(f"{len(rows)} service(s) in namespace {view.namespace!r}")


@services.command("show")
@click.argument("service")
@backend_options
@output_options
def show(service: str, backend: Backend, out: Output) -> None:
    """Show the providers and consumers of SERVICE.

    Each provider's address, app, version, group, weight, tags and age (since it started);
    each consumer's app, host and pid.

    \b
    dubbok services show helloworld.Greeter
    """
    validate_name("service name", service)
    view = read_registry(backend, service)
    records = view.services.get(service)
    if records is None:
        if view.skipped:
            _note_skipped(out, view)
        raise _unknown(read_registry(backend), service)
    now = time.time()
    if out.json:
        out.data(
            {
                "namespace": view.namespace,
                "service": service,
                "providers": [_provider_data(ep, now) for ep in records.providers],
                "consumers": [_consumer_data(c) for c in records.consumers],
                "skipped": _skipped_data(view),
            }
        )
        return
    _note_skipped(out, view)
    out.out.print(Text.assemble((service, "bold"), f" in namespace {view.namespace!r}"))
    out.out.print(Text(f"\nproviders ({len(records.providers)})", style="bold"))
    if records.providers:
        table = _table(
            "ADDRESS", "APP", "VERSION", "GROUP", "WEIGHT", "TAGS", "AGE", right=("WEIGHT", "AGE")
        )
        for ep in records.providers:
            table.add_row(
                ep.address,
                ep.app or "-",
                ep.version or "-",
                ep.group or "-",
                str(ep.weight),
                _tags(ep.tags),
                age(ep.started_at, now),
            )
        out.out.print(table)
    else:
        out.out.print(Text("  none: calls to this service fail until a provider registers", "red"))
    out.out.print(Text(f"\nconsumers ({len(records.consumers)})", style="bold"))
    if records.consumers:
        table = _table("APP", "HOST", "PID", right=("PID",))
        for c in records.consumers:
            table.add_row(c.app or "-", c.host, str(c.pid))
        out.out.print(table)
    else:
        out.out.print("  none")
