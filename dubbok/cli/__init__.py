"""The ``dubbok`` command line.

Each command group lives in its own module and is listed once in :data:`COMMANDS`; it is
imported only when used, so ``dubbok config validate`` never loads what ``dubbok call``
needs. To add a group, write ``dubbok/cli/<name>.py`` with a click command or group and add
one line to :data:`COMMANDS`.

Exit codes (all commands): 0 ok, 1 invalid input or usage, 2 etcd unreachable or failing,
3 conflict. ``main`` maps every error to one of them and prints it on stderr the way a user
can act on it; no command prints a traceback for an expected failure.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["COMMANDS", "cli", "main"]

COMMANDS: dict[str, tuple[str, str] | str] = {
    "config": ("dubbok.cli.config:config", "Configuration and governance rules in etcd."),
    "degrade": ("dubbok.cli.shortcuts:degrade", "Degrade a method: answer without calling."),
    "instance": ("dubbok.cli.shortcuts:instance", "Disable or enable a provider instance."),
    "weight": ("dubbok.cli.shortcuts:weight", "Set a provider instance's balancing weight."),
    "services": ("dubbok.cli.services:services", "Providers and consumers registered in etcd."),
    "call": ("dubbok.cli.call:call", "Call a unary method with a JSON request."),
    "completion": ("dubbok.cli.completion:completion", "Print the shell completion script."),
}
"""Command name → (``module:attribute`` of its click command or group, one-line help for
``dubbok --help``); a bare ``"module:attribute"`` works too, with no help line."""


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        target = entry if isinstance(entry, str) else entry[0]
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing the commands must not import them all (the help would cost every import).
        rows = [
            (name, "" if isinstance(entry, str) else entry[1]) for name, entry in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dubbok", prog_name="dubbok")
def cli() -> None:
    """dubbok: service governance for gRPC services — configuration, rules, registry.

    Point it at etcd with --registry etcd://HOST:2379/?namespace=NAME or DUBBOK_REGISTRY.
    Exit codes: 0 ok, 1 invalid input or usage, 2 etcd unreachable, 3 conflict.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in args
    try:
        result: Any = cli.main(args=args, prog_name="dubbok", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return 1
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from ..errors import DubbokError
        from .context import report_error

        if not isinstance(exc, (DubbokError, click.ClickException)):
            raise
        return report_error(exc, json_mode=json_mode)
    return result if isinstance(result, int) else 0
