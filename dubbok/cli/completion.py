"""``dubbok completion SHELL``: print the shell completion script."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

__all__ = ["completion"]


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    eval "$(dubbok completion bash)"          # in ~/.bashrc
    eval "$(dubbok completion zsh)"           # in ~/.zshrc
    dubbok completion fish > ~/.config/fish/completions/dubbok.fish

    Config keys complete from the etcd in DUBBOK_REGISTRY.
    """
    from . import cli

    cls = get_completion_class(shell)
    if cls is None:  # click knows the three shells offered above
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(cli, {}, "dubbok", "_DUBBOK_COMPLETE").source())
