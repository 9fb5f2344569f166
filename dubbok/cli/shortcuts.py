"""Shortcuts for the commonest rule changes, each an edit of one service's document:

* ``dubbok degrade SERVICE METHOD --force|--fail [--return JSON | --throw CODE] | --off``
* ``dubbok instance disable|enable ADDRESS --service SERVICE``
* ``dubbok weight ADDRESS N --service SERVICE``

Each reads ``services/SERVICE/governance``, changes the one entry, validates, and writes with
a compare-and-swap on the revision read — re-reading and re-applying if another writer got
in first (unless ``--expect-revision`` is given, which makes that a conflict). The document
is written back as YAML (JSON if it was JSON); comments in it are not kept, so documents
that carry comments are better changed with ``dubbok config edit``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import click
from rich.text import Text

from ..config.document import dump_text, parse_text
from ..config.errors import ConflictError, RuleValidationError
from ..config.keys import ConfigKey
from ..config.store import Change
from ..config.validation import validate_rule
from ..endpoint import format_address, split_address
from ..errors import RegistryError
from .config import _change_options, preview, report_write
from .context import Backend, Output, backend_options, output_options

__all__ = ["degrade", "instance", "weight"]

_RETRIES = 5

Mutation = Callable[[dict[str, Any]], str]
"""Changes a document in place; returns a sentence saying what it did."""


def update_service_rules(
    backend: Backend,
    out: Output,
    service: str,
    mutate: Mutation,
    *,
    dry_run: bool,
    expect_revision: int | None,
    change: Change,
) -> None:
    key = ConfigKey.service(service)
    store = backend.store()
    for _ in range(_RETRIES):
        entry = store.get(key)
        current = parse_text(entry.value, key=str(key)) if entry is not None else {}
        if entry is not None:
            try:
                validate_rule(current, key=str(key))
            except RuleValidationError as exc:
                raise RuleValidationError(
                    f"{key} (the current document; fix it with 'dubbok config edit {key}')",
                    exc.problems,
                ) from None
        updated = copy.deepcopy(current)
        what = mutate(updated)
        if updated == current:
            if out.json:
                out.data({"key": str(key), "changed": False, "message": what})
            else:
                out.done(Text(f"{key}: {what}; already so, nothing written"))
            return
        as_json = entry is not None and entry.text.lstrip().startswith("{")
        text = dump_text(updated, json_format=as_json) if updated else ""
        if dry_run:
            preview(store, key, text.encode("utf-8"), out)
            return
        expect = (
            expect_revision
            if expect_revision is not None
            else (entry.revision if entry is not None else 0)
        )
        message = change.message or what
        try:
            result = store.put(
                key, text, expect_revision=expect, change=Change(change.author, message)
            )
        except ConflictError:
            if expect_revision is not None:
                raise
            continue  # someone else wrote first: apply the same change to their version
        report_write(out, result, store)
        if not out.json:
            out.note(what)
        return
    raise RegistryError(
        f"{key} kept changing while this change was tried {_RETRIES} times; retry later"
    )


def _shortcut_options(fn: Any) -> Any:
    fn = click.option("--dry-run", is_flag=True, help="show what would change and who follows")(fn)
    fn = click.option(
        "--expect-revision",
        type=click.IntRange(min=0),
        help="write only if the service's document is still at this revision",
    )(fn)
    return fn


def _address(text: str) -> str:
    try:
        host, port = split_address(text)
    except Exception:
        if ":" in text.strip("[]"):
            raise click.BadParameter(
                f"{text!r}: write IPv6 addresses as [::1]:50051", param_hint="ADDRESS"
            ) from None
        return text.strip()  # a bare host: every port of it
    return format_address(host, port)


# -- degrade ---------------------------------------------------------------------------------


@click.command()
@click.argument("service")
@click.argument("method")
@click.option("--force", "mode", flag_value="force", help="answer at once, without calling")
@click.option("--fail", "mode", flag_value="fail", help="call; answer this when the call fails")
@click.option("--off", "mode", flag_value="off", help="stop degrading METHOD")
@click.option("--return", "returns", metavar="JSON", help="the response, as a JSON object")
@click.option("--throw", metavar="CODE", help="fail with this gRPC status instead (UNAVAILABLE)")
@click.option("--details", help="status details that go with --throw")
@_shortcut_options
@_change_options
@backend_options
@output_options
def degrade(
    service: str,
    method: str,
    mode: str | None,
    returns: str | None,
    throw: str | None,
    details: str | None,
    dry_run: bool,
    expect_revision: int | None,
    message: str,
    author: str,
    backend: Backend,
    out: Output,
) -> None:
    """Degrade METHOD of SERVICE: --force (never call), --fail (on failure), or --off.

    \b
    dubbok degrade helloworld.Greeter SayHello --force --return '{"message": "busy"}'
    dubbok degrade helloworld.Greeter SayHello --fail --throw UNAVAILABLE
    dubbok degrade helloworld.Greeter SayHello --off
    """
    if mode is None:
        raise click.UsageError("say how: --force, --fail or --off")
    if mode == "off" and (returns or throw or details):
        raise click.UsageError("--off takes no --return, --throw or --details")
    rule: dict[str, Any] = {"mode": mode}
    if returns is not None:
        try:
            value = json.loads(returns)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--return") from None
        if not isinstance(value, dict):
            raise click.BadParameter(
                'must be a JSON object, e.g. \'{"message": "busy"}\'', param_hint="--return"
            )
        rule["return"] = value
    if throw is not None:
        rule["throw"] = throw
    if details is not None:
        rule["details"] = details

    def mutate(document: dict[str, Any]) -> str:
        entries = document.setdefault("degrade", {})
        if mode == "off":
            entries.pop(method, None)
            if not entries:
                document.pop("degrade")
            return f"degrade of {service}/{method} off"
        entries[method] = rule
        return f"degrade {service}/{method}: {mode}"

    update_service_rules(
        backend,
        out,
        service,
        mutate,
        dry_run=dry_run,
        expect_revision=expect_revision,
        change=Change(author, message),
    )


# -- instances -------------------------------------------------------------------------------


def _instance_mutation(service: str, address: str, **fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> str:
        instances = document.setdefault("instances", {})
        entry = instances.setdefault(address, {})
        said = []
        for name, value in fields.items():
            if value is None:
                entry.pop(name, None)
            else:
                entry[name] = value
            said.append(f"{name}={'default' if value is None else value}")
        if not entry:
            instances.pop(address)
        if not instances:
            document.pop("instances")
        return f"{address} of {service}: {', '.join(said)}"

    return mutate


@click.group()
def instance() -> None:
    """Take a provider instance out of rotation, or put it back."""


def _instance_command(name: str, disabled: bool | None, doc: str) -> None:
    @instance.command(name=name, help=doc)
    @click.argument("address")
    @click.option("--service", "-s", required=True, help="the service whose rules change")
    @_shortcut_options
    @_change_options
    @backend_options
    @output_options
    def command(
        address: str,
        service: str,
        dry_run: bool,
        expect_revision: int | None,
        message: str,
        author: str,
        backend: Backend,
        out: Output,
    ) -> None:
        update_service_rules(
            backend,
            out,
            service,
            _instance_mutation(service, _address(address), disabled=disabled),
            dry_run=dry_run,
            expect_revision=expect_revision,
            change=Change(author, message),
        )


_instance_command(
    "disable",
    True,
    "Stop sending SERVICE's calls to ADDRESS (host:port, or a host for all its ports).",
)
_instance_command("enable", None, "Send SERVICE's calls to ADDRESS again.")


@click.command()
@click.argument("address")
@click.argument("value", metavar="N", type=click.IntRange(min=0, max=1_000_000))
@click.option("--service", "-s", required=True, help="the service whose rules change")
@_shortcut_options
@_change_options
@backend_options
@output_options
def weight(
    address: str,
    value: int,
    service: str,
    dry_run: bool,
    expect_revision: int | None,
    message: str,
    author: str,
    backend: Backend,
    out: Output,
) -> None:
    """Set the balancing weight of ADDRESS for SERVICE (providers advertise 100; 0 drains).

    \b
    dubbok weight 10.0.0.7:50051 20 --service helloworld.Greeter
    """
    update_service_rules(
        backend,
        out,
        service,
        _instance_mutation(service, _address(address), weight=value),
        dry_run=dry_run,
        expect_revision=expect_revision,
        change=Change(author, message),
    )
