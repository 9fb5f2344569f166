"""Rendering for humans: tables, diffs, times. Commands print JSON themselves with
``--json``; everything here is for the default output."""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from ..config.history import Version
from ..config.store import Watcher

__all__ = ["diff_text", "history_table", "size", "watchers_table", "when"]


def when(timestamp: float | None) -> str:
    """A UNIX time as local ``YYYY-MM-DD HH:MM:SS``; ``-`` when unknown."""
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def size(value: bytes | None) -> str:
    if value is None:
        return "-"
    n = len(value)
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} B"


def diff_text(old: str, new: str, old_name: str, new_name: str) -> Text:
    """A unified diff, coloured; an empty text when nothing differs."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
    )
    out = Text()
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        if line.startswith(("+++", "---")):
            out.append(line, style="bold")
        elif line.startswith("@@"):
            out.append(line, style="cyan")
        elif line.startswith("+"):
            out.append(line, style="green")
        elif line.startswith("-"):
            out.append(line, style="red")
        else:
            out.append(line)
    return out


def history_table(key: str, versions: Sequence[Version]) -> Table:
    table = Table(title=f"history of {key}", box=box.SIMPLE, title_justify="left")
    for column in ("revision", "time", "author", "action", "size", "message"):
        table.add_column(column, overflow="fold")
    for v in versions:
        revision = Text(str(v.revision), style="bold" if v.current else "")
        if v.current:
            revision.append(" *", style="green")
        table.add_row(
            revision,
            when(v.time),
            v.author or "?",
            v.action or "?",
            "deleted" if v.deleted else size(v.value) if v.known else "unknown",
            v.message,
        )
    return table


def watchers_table(watchers: Sequence[Watcher]) -> Table:
    table = Table(box=box.SIMPLE)
    for column in ("kind", "service", "instance", "app"):
        table.add_column(column, overflow="fold")
    for w in watchers:
        table.add_row(w.kind, w.service, w.instance, w.app or "-")
    return table
