"""``dubbok config …``: read, write, watch and roll back configuration in etcd.

Keys are written relative to ``config/``: ``global/NAME``, ``apps/APP/NAME``,
``services/SERVICE/governance``. Every write validates first, is a compare-and-swap on the
revision read (or on ``--expect-revision``), and keeps the previous value in history.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from ..config.document import parse_value
from ..config.errors import (
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    Problem,
    RuleValidationError,
)
from ..config.gray import InstanceIdentity, selects
from ..config.history import Version
from ..config.keys import ConfigKey, parse_key
from ..config.rules import GovernanceRule
from ..config.store import Change, ConfigStore, WriteResult
from ..config.validation import check_document, rule_schema
from ..registry._client import RevisionCompactedError
from .context import Backend, Output, backend_options, output_options
from .render import diff_text, history_table, size, watchers_table

__all__ = ["config", "preview", "read_value", "report_write"]


def _complete_keys(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of config keys, from the etcd in ``DUBBOK_REGISTRY`` (quietly
    nothing when it is not set or does not answer within a second)."""
    url = os.environ.get("DUBBOK_REGISTRY")
    if not url:
        return [k for k in ("global/", "apps/", "services/") if k.startswith(incomplete)]
    try:
        store = Backend(url, timeout=1.0).store()
        try:
            return [str(k) for k, _ in store.scan() if str(k).startswith(incomplete)]
        finally:
            store.close()
    except Exception:  # completion must never print a traceback into the shell
        return []


class _KeyType(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    name = "KEY"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, ConfigKey):
            return value
        try:
            return parse_key(str(value))
        except InvalidKeyError as exc:
            self.fail(exc.message, param, ctx)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(k) for k in _complete_keys(ctx, param, incomplete)]


KEY = _KeyType()


def _change_options(fn: Any) -> Any:
    fn = click.option(
        "--author",
        envvar="DUBBOK_AUTHOR",
        default="",
        help="who makes the change (default: user@host) [env DUBBOK_AUTHOR]",
    )(fn)
    fn = click.option("--message", "-m", default="", help="why: kept in the history")(fn)
    return fn


@click.group()
def config() -> None:
    """Configuration and governance rules in etcd.

    Keys: global/NAME, apps/APP/NAME, services/SERVICE/governance. The document named
    'governance' holds governance rules (see 'dubbok config schema'); other names are
    application settings (any YAML or JSON).
    """


# -- reading ---------------------------------------------------------------------------------


@config.command()
@click.argument("key", type=KEY)
@click.option("--revision", type=click.IntRange(min=1), help="an earlier version, from history")
@backend_options
@output_options
def get(key: ConfigKey, revision: int | None, backend: Backend, out: Output) -> None:
    """Print the value of KEY (exactly as stored).

    \b
    dubbok config get services/helloworld.Greeter/governance
    dubbok config get apps/shop/db --revision 41 > old.yaml
    """
    store = backend.store()
    if revision is not None:
        version = store.version(key, revision)
        value, at = version.value or b"", version.revision
    else:
        entry = store.get(key)
        if entry is None:
            raise NotFoundError(
                f"{key} does not exist in namespace {store.namespace!r}; "
                "'dubbok config ls' lists the keys there"
            )
        value, at = entry.value, entry.revision
    text = value.decode("utf-8", "replace")
    if out.json:
        record: dict[str, Any] = {"key": str(key), "revision": at, "value": text}
        try:
            record["data"] = parse_value(value, key=str(key))
        except RuleValidationError:
            record["data"] = None
        out.data(record)
        return
    out.note(f"# {key} at revision {at}")
    click.echo(text, nl=sys.stdout.isatty() and not text.endswith("\n"))


@config.command(name="ls")
@click.argument("prefix", default="", shell_complete=_complete_keys)
@backend_options
@output_options
def list_keys(prefix: str, backend: Backend, out: Output) -> None:
    """List config keys (under PREFIX, e.g. services/ or apps/shop/)."""
    store = backend.store()
    keys = store.scan(prefix)
    if out.json:
        out.data(
            [
                {"key": str(k), "revision": rev, "kind": _kind(k), "scope": k.scope.value}
                for k, rev in keys
            ]
        )
        return
    if not keys:
        out.note(f"no config keys under {prefix or 'config/'} in namespace {store.namespace!r}")
        return
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE)
    table.add_column("key", overflow="fold")
    table.add_column("revision", justify="right")
    table.add_column("kind")
    for k, rev in keys:
        table.add_row(str(k), str(rev), _kind(k))
    out.out.print(table)


def _kind(key: ConfigKey) -> str:
    return "governance" if key.is_governance else "setting"


@config.command()
@click.argument("prefix", default="", shell_complete=_complete_keys)
@click.option("--count", type=click.IntRange(min=1), help="exit after this many changes")
@click.option(
    "--duration", "wait", type=click.FloatRange(min=0), metavar="SECONDS", help="exit after SECONDS"
)
@backend_options
@output_options
def watch(
    prefix: str, count: int | None, wait: float | None, backend: Backend, out: Output
) -> None:
    """Print changes under PREFIX as they happen (Ctrl-C to stop)."""
    store = backend.store()
    deadline = None if wait is None else time.monotonic() + wait
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    revision = store.revision()
    handle = store.watch(prefix, events.put, start_revision=revision + 1)
    # On stderr in every mode: scripts may wait for this line to know the watch is set.
    out.note(f"watching {prefix or 'config/'} from revision {revision + 1} (Ctrl-C to stop)")
    sys.stderr.flush()
    seen = 0
    try:
        while count is None or seen < count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                item = events.get(timeout=remaining)
            except queue.Empty:
                break
            if isinstance(item, RevisionCompactedError):
                revision = max(revision, item.compact_revision - 1)
                out.note(f"changes before revision {item.compact_revision} were compacted away")
            if isinstance(item, Exception):
                out.note(f"watch lost ({item}); watching again from revision {revision + 1}")
                handle = _rewatch(store, prefix, events, revision + 1, deadline)
                continue
            for event in item.events:
                revision = max(revision, event.mod_revision)
                ck = store.layout.relative(event.key)
                if ck is None:
                    continue
                _print_event(out, ck, event.value, event.mod_revision)
                seen += 1
                if count is not None and seen >= count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        handle.cancel()


def _rewatch(
    store: ConfigStore, prefix: str, events: Any, start: int, deadline: float | None
) -> Any:
    from ..registry._client import EtcdError

    delay = 0.2
    while True:
        try:
            return store.watch(prefix, events.put, start_revision=start)
        except EtcdError:
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)  # etcd is down; try again with backoff until the deadline
            delay = min(delay * 2, 5.0)


def _print_event(out: Output, key: ConfigKey, value: bytes | None, revision: int) -> None:
    if out.json:
        record = {
            "revision": revision,
            "key": str(key),
            "action": "delete" if value is None else "put",
            "value": None if value is None else value.decode("utf-8", "replace"),
        }
        click.echo(json.dumps(record, ensure_ascii=False))
        sys.stdout.flush()
        return
    action = Text("deleted", style="red") if value is None else Text("set", style="green")
    line = Text.assemble(
        (time.strftime("%H:%M:%S"), "dim"), f"  rev {revision}  ", action, f"  {key}"
    )
    if value is not None:
        line.append(f"  ({size(value)})", style="dim")
    out.out.print(line)
    sys.stdout.flush()


# -- writing ---------------------------------------------------------------------------------


def read_value(value: str | None, file: str | None) -> bytes:
    """The document to write: inline, from a file, or from stdin (``--file -`` or piped)."""
    if value is not None and file is not None:
        raise click.UsageError("give the value inline or with --file, not both")
    if file == "-":
        return sys.stdin.buffer.read()
    if file is not None:
        try:
            return Path(file).read_bytes()
        except OSError as exc:
            raise click.UsageError(f"cannot read {file}: {exc.strerror}") from None
    if value is not None:
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        return sys.stdin.buffer.read()
    raise click.UsageError("give the value inline, with --file FILE, or on stdin (--file -)")


def preview(store: ConfigStore, key: ConfigKey, new: bytes | None, out: Output) -> None:
    """What a write would do: the diff, and which registered processes watch the key."""
    current = store.get(key)
    old_text = current.text if current is not None else ""
    new_text = new.decode("utf-8", "replace") if new is not None else ""
    watchers = store.watchers(key)
    gray = _gray_reach(key, new, watchers)
    if out.json:
        out.data(
            {
                "key": str(key),
                "dry_run": True,
                "current_revision": current.revision if current else 0,
                "changed": (current.value if current else None) != new,
                "diff": str(diff_text(old_text, new_text, "current", "new")),
                "watchers": [
                    {"kind": w.kind, "service": w.service, "instance": w.instance, "app": w.app}
                    for w in watchers
                ],
                "gray": gray,
            }
        )
        return
    at = f"revision {current.revision}" if current else "absent"
    if current is not None and new is not None and current.value == new:
        out.done(Text(f"{key}: no change (the value is already this one)"))
    else:
        diff = diff_text(old_text, new_text, f"{key} ({at})", f"{key} (new)")
        out.out.print(diff if diff.plain else Text("(no textual difference)"))
    scope = {"global": "every process", "apps": f"app {key.owner}", "services": key.owner}
    out.out.print(
        Text(f"{len(watchers)} registered process(es) follow {key} ({scope[key.scope.value]}):")
    )
    if watchers:
        out.out.print(watchers_table(watchers))
    for line in gray:
        out.out.print(Text(line, style="yellow"))
    out.note("dry run: nothing was written")


def _gray_reach(key: ConfigKey, new: bytes | None, watchers: Sequence[Any]) -> list[str]:
    if new is None or not key.is_governance:
        return []
    rule = check_document(key, new)
    assert isinstance(rule, GovernanceRule)
    consumers = [w for w in watchers if w.kind == "consumer"]
    lines = []
    for gray in rule.gray:
        if gray.select.tags is not None:
            lines.append(
                f"gray {gray.name!r} selects by tags: which consumers match cannot be told "
                "from the registry"
            )
            continue
        chosen = 0
        for w in consumers:
            _, _, instance = w.instance.partition("@")
            identity = InstanceIdentity(w.app, instance or w.instance, instance.split(":")[0])
            chosen += selects(gray.select, gray.name, identity)
        lines.append(f"gray {gray.name!r} selects {chosen} of {len(consumers)} consumer(s)")
    return lines


def report_write(out: Output, result: WriteResult, store: ConfigStore | None = None) -> None:
    """Say what a write did (and, for humans, how many processes it reaches)."""
    previous = result.previous.revision if result.previous else 0
    if out.json:
        out.data(
            {
                "key": str(result.key),
                "revision": result.revision,
                "previous_revision": previous,
                "changed": result.changed,
            }
        )
        return
    if not result.changed:
        out.done(Text(f"{result.key}: no change (revision {result.revision})"))
        return
    before = f"revision {previous}" if previous else "new"
    out.done(f"{result.key}: {before} → revision {result.revision}")
    if store is not None:
        reached = len(store.watchers(result.key))
        out.note(f"{reached} registered process(es) follow this key")


@config.command(name="set")
@click.argument("key", type=KEY)
@click.argument("value", required=False)
@click.option(
    "--file", "-f", "file", help="read the value from FILE ('-' for stdin)", metavar="FILE"
)
@click.option(
    "--expect-revision",
    type=click.IntRange(min=0),
    help="write only if KEY is still at this revision (0: only if it does not exist)",
)
@click.option("--dry-run", is_flag=True, help="show what would change and who follows KEY")
@_change_options
@backend_options
@output_options
def set_value(
    key: ConfigKey,
    value: str | None,
    file: str | None,
    expect_revision: int | None,
    dry_run: bool,
    message: str,
    author: str,
    backend: Backend,
    out: Output,
) -> None:
    """Validate and write KEY (VALUE inline, --file FILE, or stdin).

    \b
    dubbok config set services/helloworld.Greeter/governance -f greeter.yaml -m "timeouts"
    dubbok config set apps/shop/db/pool_size 20 --expect-revision 41
    """
    raw = read_value(value, file)
    check_document(key, raw)  # before connecting: bad input never needs etcd
    store = backend.store()
    if dry_run:
        preview(store, key, raw, out)
        return
    result = store.put(key, raw, expect_revision=expect_revision, change=Change(author, message))
    report_write(out, result, store)


@config.command()
@click.argument("key", type=KEY)
@_change_options
@backend_options
@output_options
def edit(key: ConfigKey, message: str, author: str, backend: Backend, out: Output) -> None:
    """Edit KEY in $EDITOR, validate, and write it if nobody changed it meanwhile."""
    store = backend.store()
    entry = store.get(key)
    original = entry.text if entry is not None else _template(key)
    expect = entry.revision if entry is not None else 0
    text = original
    while True:
        edited = click.edit(text, extension=".yaml", require_save=False)
        if edited is None or edited == original:
            out.done(Text(f"{key}: no change; nothing written"))
            return
        try:
            check_document(key, edited.encode("utf-8"))
            break
        except RuleValidationError as exc:
            from .context import report_error

            report_error(exc, json_mode=False)
            if not sys.stdin.isatty() or not click.confirm("Edit again?", default=True):
                saved = _save_draft(key, edited)
                out.note(f"your edit is saved in {saved}")
                raise
            text = edited
    try:
        result = store.put(key, edited, expect_revision=expect, change=Change(author, message))
    except ConflictError:
        saved = _save_draft(key, edited)
        out.note(
            f"your edit is saved in {saved}; compare with 'dubbok config diff {key} -f {saved}' "
            f"and write it with 'dubbok config set {key} -f {saved}'"
        )
        raise
    report_write(out, result, store)


def _template(key: ConfigKey) -> str:
    if not key.is_governance:
        return f"# {key}: any YAML or JSON value\n"
    return (
        f"# Governance rules for {key.owner or 'every service'} ({key}).\n"
        "# Every field is optional; 'dubbok config schema' lists them all. For example:\n"
        "# timeout: 1.0\n# retries: 2\n# loadbalance: roundrobin\n"
        "# methods:\n#   SayHello: {timeout: 0.2, idempotent: true}\n"
    )


def _save_draft(key: ConfigKey, text: str) -> str:
    fd, path = tempfile.mkstemp(prefix=f"dubbok-{key.name.replace('/', '-')}-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


@config.command(name="rm")
@click.argument("key", type=KEY)
@click.option("--expect-revision", type=click.IntRange(min=1), help="delete only at this revision")
@click.option("--dry-run", is_flag=True, help="show what would change and who follows KEY")
@_change_options
@backend_options
@output_options
def remove(
    key: ConfigKey,
    expect_revision: int | None,
    dry_run: bool,
    message: str,
    author: str,
    backend: Backend,
    out: Output,
) -> None:
    """Delete KEY (its value stays in history: 'dubbok config rollback KEY' restores it)."""
    store = backend.store()
    if dry_run:
        if store.get(key) is None:
            raise NotFoundError(f"{key} does not exist in namespace {store.namespace!r}")
        preview(store, key, None, out)
        return
    result = store.delete(key, expect_revision=expect_revision, change=Change(author, message))
    if out.json:
        report_write(out, result)
        return
    previous = result.previous.revision if result.previous else 0
    out.done(f"{key}: deleted (was revision {previous}; deleted at revision {result.revision})")


# -- history ---------------------------------------------------------------------------------


@config.command()
@click.argument("key", type=KEY)
@click.option("--limit", type=click.IntRange(min=1), help="show the newest N versions")
@backend_options
@output_options
def history(key: ConfigKey, limit: int | None, backend: Backend, out: Output) -> None:
    """List the versions of KEY: revision, time, author, action, message."""
    store = backend.store()
    versions = store.history(key)[:limit]
    if out.json:
        out.data([_version_record(v) for v in versions])
        return
    if not versions:
        out.note(f"{key} has no value and no history in namespace {store.namespace!r}")
        return
    out.out.print(history_table(str(key), versions))


def _version_record(v: Version) -> dict[str, Any]:
    return {
        "revision": v.revision,
        "time": v.time,
        "author": v.author,
        "action": v.action,
        "message": v.message,
        "current": v.current,
        "deleted": v.deleted,
        "value": None if v.value is None else v.value.decode("utf-8", "replace"),
    }


@config.command()
@click.argument("key", type=KEY)
@click.argument("old", required=False, type=click.IntRange(min=1))
@click.argument("new", required=False, type=click.IntRange(min=1))
@click.option("--file", "-f", "file", metavar="FILE", help="compare the current value with FILE")
@backend_options
@output_options
def diff(
    key: ConfigKey,
    old: int | None,
    new: int | None,
    file: str | None,
    backend: Backend,
    out: Output,
) -> None:
    """Show how KEY changed: between revisions OLD and NEW (default: the previous version
    and the current one), or between the current value and --file FILE."""
    store = backend.store()
    if file is not None:
        entry = store.get(key)
        old_text = entry.text if entry else ""
        old_name = f"{key} (revision {entry.revision})" if entry else f"{key} (absent)"
        new_text = read_value(None, file).decode("utf-8", "replace")
        new_name = file
    else:
        versions = store.history(key)
        current = next((v for v in versions if v.current), None)
        to = _pick(key, versions, new) if new is not None else current
        if to is None:
            raise NotFoundError(f"{key} has no current value; give two revisions to compare")
        frm: Version | None
        if old is not None:
            frm = _pick(key, versions, old)
        else:
            frm = next((v for v in versions if v.known and v.revision < to.revision), None)
        if frm is None:
            raise NotFoundError(f"{key} has no version before revision {to.revision}")
        old_text = (frm.value or b"").decode("utf-8", "replace")
        new_text = (to.value or b"").decode("utf-8", "replace")
        old_name, new_name = f"{key}@{frm.revision}", f"{key}@{to.revision}"
    text = diff_text(old_text, new_text, old_name, new_name)
    if out.json:
        out.data({"key": str(key), "from": old_name, "to": new_name, "diff": text.plain})
        return
    out.out.print(text if text.plain else Text("no difference"))


def _pick(key: ConfigKey, versions: Sequence[Version], revision: int) -> Version:
    for v in versions:
        if v.revision == revision:
            if v.deleted:
                return Version(revision, b"", action="rm", deleted=True)
            if v.value is not None:
                return v
    known = ", ".join(str(v.revision) for v in versions if v.known) or "none"
    raise NotFoundError(f"{key} has no known value at revision {revision}; known: {known}")


@config.command()
@click.argument("key", type=KEY)
@click.option("--to", "to", type=click.IntRange(min=1), help="the revision to restore")
@click.option("--expect-revision", type=click.IntRange(min=0), help="only if KEY is at this")
@click.option("--dry-run", is_flag=True, help="show what would change and who follows KEY")
@_change_options
@backend_options
@output_options
def rollback(
    key: ConfigKey,
    to: int | None,
    expect_revision: int | None,
    dry_run: bool,
    message: str,
    author: str,
    backend: Backend,
    out: Output,
) -> None:
    """Write an earlier value of KEY again (default: the version before the current one)."""
    store = backend.store()
    if dry_run:
        versions = store.history(key)
        target = store.version(key, to) if to is not None else _before_current(key, versions)
        preview(store, key, target.value, out)
        return
    result = store.rollback(
        key, to_revision=to, expect_revision=expect_revision, change=Change(author, message)
    )
    report_write(out, result, store)


def _before_current(key: ConfigKey, versions: Sequence[Version]) -> Version:
    current = next((v for v in versions if v.current), None)
    for v in versions:
        if v.known and not v.current and (current is None or v.revision < current.revision):
            return v
    raise NotFoundError(f"{key} has no earlier version to roll back to")


# -- offline ---------------------------------------------------------------------------------


@config.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--key",
    "key",
    type=KEY,
    help="validate as the value of KEY (default: as a governance rule document)",
)
@output_options
def validate(files: tuple[str, ...], key: ConfigKey | None, out: Output) -> None:
    """Check rule documents without writing anything (no registry needed)."""
    as_key = key or ConfigKey.global_("governance")
    reports: list[tuple[str, list[Problem]]] = []
    for name in files:
        raw = read_value(None, name)
        try:
            check_document(as_key, raw)
            reports.append((name, []))
        except RuleValidationError as exc:
            reports.append((name, list(exc.problems)))
    failed = any(problems for _, problems in reports)
    if out.json:
        out.data(
            [
                {
                    "file": name,
                    "valid": not problems,
                    "problems": [{"path": p.path, "message": p.message} for p in problems],
                }
                for name, problems in reports
            ]
        )
    else:
        for name, problems in reports:
            verdict = ("invalid", "red") if problems else ("valid", "green")
            out.out.print(Text.assemble((name, "bold"), ": ", verdict))
            for problem in problems:
                path = problem.path or "(document)"
                out.out.print(Text.assemble("  • ", (path, "bold"), f": {problem.message}"))
    if failed:
        raise click.exceptions.Exit(1)


@config.command()
def schema() -> None:
    """Print the JSON schema of governance rule documents."""
    click.echo(json.dumps(rule_schema(), indent=2, ensure_ascii=False))
