"""What every command shares: the connection to etcd, the output, exit codes, errors.

Options common to commands are added by decorators, so they are accepted after the
command name (``dubbok config get KEY --json``), and read from the environment:

=====================  =====================  ============================================
option                 environment            meaning
=====================  =====================  ============================================
``--registry, -r``     ``DUBBOK_REGISTRY``    ``etcd://host:2379[,host:2379]/?namespace=N``
``--namespace, -n``    ``DUBBOK_NAMESPACE``   overrides the URL's namespace
``--user``             ``DUBBOK_USER``        etcd user (``--password`` / DUBBOK_PASSWORD)
``--cacert``           ``DUBBOK_CACERT``      CA bundle: talk TLS to etcd
``--cert``, ``--key``  ``DUBBOK_CERT``, …     client certificate and key (PEM files)
``--timeout``          ``DUBBOK_TIMEOUT``     seconds per etcd request (3)
``--json``                                    machine-readable output on stdout
=====================  =====================  ============================================

Exit codes: 0 ok, 1 invalid input or usage, 2 etcd unreachable or failing, 3 conflict (a
compare-and-swap write lost).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from ..config.errors import ConflictError, NotFoundError, RuleValidationError
from ..config.store import DEFAULT_HISTORY_LIMIT, ConfigStore
from ..errors import DubbokError, RegistryError

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Backend",
    "Output",
    "backend_options",
    "exit_code_of",
    "output_options",
    "report_error",
]

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_UNREACHABLE = 2
EXIT_CONFLICT = 3

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Backend:
    """How to reach etcd; :meth:`store` connects (lazily, when a command needs it)."""

    registry: str | None
    namespace: str | None = None
    user: str | None = None
    password: str | None = None
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float | None = None
    history_limit: int = DEFAULT_HISTORY_LIMIT

    def store(self) -> ConfigStore:
        """A store on the configured etcd; closed when the command ends."""
        from ..registry._client import EtcdClient
        from ..registry.etcd import connection_settings
        from ..url import parse_url

        if not self.registry:
            raise click.UsageError(
                "no registry given: pass --registry etcd://127.0.0.1:2379/?namespace=NAME "
                "or set DUBBOK_REGISTRY"
            )
        parsed = parse_url(self.registry)
        settings = connection_settings(parsed)
        changes: dict[str, Any] = {}
        if self.user is not None:
            changes.update(username=self.user, password=self.password or "")
        for name, value in (("ca", self.cacert), ("cert", self.cert), ("key", self.key)):
            if value is not None:
                changes[name] = value
        if self.timeout is not None:
            changes["timeout"] = self.timeout
        if changes:
            settings = dataclasses.replace(settings, **changes)
        namespace = self.namespace or parsed.param("namespace") or "default"
        store = ConfigStore(EtcdClient(settings), namespace, history_limit=self.history_limit)
        context = click.get_current_context(silent=True)
        if context is not None:
            context.call_on_close(store.close)
        return store


def backend_options(fn: F) -> F:
    """Add the registry, auth, TLS and timeout options; the command gets ``backend``."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        registry: str | None,
        namespace: str | None,
        user: str | None,
        password: str | None,
        cacert: str | None,
        cert: str | None,
        tls_key: str | None,
        timeout: float | None,
        history_limit: int,
        **kwargs: Any,
    ) -> Any:
        kwargs["backend"] = Backend(
            registry, namespace, user, password, cacert, cert, tls_key, timeout, history_limit
        )
        return fn(*args, **kwargs)

    options = [
        click.option(
            "--registry",
            "-r",
            envvar="DUBBOK_REGISTRY",
            metavar="URL",
            help="etcd URL, e.g. etcd://127.0.0.1:2379/?namespace=shop [env DUBBOK_REGISTRY]",
        ),
        click.option(
            "--namespace",
            "-n",
            envvar="DUBBOK_NAMESPACE",
            metavar="NAME",
            help="namespace (overrides the URL's) [env DUBBOK_NAMESPACE]",
        ),
        click.option("--user", envvar="DUBBOK_USER", help="etcd user [env DUBBOK_USER]"),
        click.option(
            "--password", envvar="DUBBOK_PASSWORD", help="etcd password [env DUBBOK_PASSWORD]"
        ),
        click.option(
            "--cacert",
            envvar="DUBBOK_CACERT",
            type=click.Path(dir_okay=False),
            help="CA bundle to verify etcd's TLS certificate [env DUBBOK_CACERT]",
        ),
        click.option(
            "--cert",
            envvar="DUBBOK_CERT",
            type=click.Path(dir_okay=False),
            help="client TLS certificate (PEM) [env DUBBOK_CERT]",
        ),
        click.option(
            "--key",
            "tls_key",
            envvar="DUBBOK_KEY",
            type=click.Path(dir_okay=False),
            help="client TLS key (PEM) [env DUBBOK_KEY]",
        ),
        click.option(
            "--timeout",
            envvar="DUBBOK_TIMEOUT",
            type=click.FloatRange(min=0.001),
            help="seconds per etcd request (default 3) [env DUBBOK_TIMEOUT]",
        ),
        click.option(
            "--history-limit",
            envvar="DUBBOK_HISTORY_LIMIT",
            type=click.IntRange(min=0),
            default=DEFAULT_HISTORY_LIMIT,
            show_default=True,
            help="history entries kept per key on writes [env DUBBOK_HISTORY_LIMIT]",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


class Output:
    """Where a command writes: a rich console on stdout (colour only on a terminal, never
    with ``NO_COLOR``), one on stderr for notes and errors, or JSON with ``--json``."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self.out = Console(highlight=False, markup=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)

    def data(self, value: Any) -> None:
        """Print ``value`` as JSON on stdout."""
        click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))

    def note(self, text: str | Text) -> None:
        """A remark for a human, on stderr (never mixed into data on stdout)."""
        self.err.print(text, style="dim")

    def done(self, text: str | Text) -> None:
        """The result of an action, on stdout."""
        self.out.print(text, style="green" if isinstance(text, str) else "")


def output_options(fn: F) -> F:
    """Add ``--json``; the command gets ``out`` (an :class:`Output`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, json_mode: bool, **kwargs: Any) -> Any:
        kwargs["out"] = Output(json_mode)
        return fn(*args, **kwargs)

    option = click.option("--json", "json_mode", is_flag=True, help="print machine-readable JSON")
    return option(wrapper)  # type: ignore[return-value]


def exit_code_of(error: BaseException) -> int:
    """The exit code for an error a command raised."""
    if isinstance(error, ConflictError):
        return EXIT_CONFLICT
    if isinstance(error, NotFoundError):
        return EXIT_USAGE
    if isinstance(error, RegistryError):
        return EXIT_UNREACHABLE
    return EXIT_USAGE


def report_error(error: BaseException, *, json_mode: bool) -> int:
    """Print ``error`` on stderr the way a user can act on it; return its exit code."""
    code = exit_code_of(error)
    problems = error.problems if isinstance(error, RuleValidationError) else ()
    if isinstance(error, DubbokError):
        message = error.message
    elif isinstance(error, click.ClickException):
        message = error.format_message()
    else:
        message = str(error)
    if isinstance(error, RegistryError) and not isinstance(error, (ConflictError, NotFoundError)):
        message += " (the registry comes from --registry or DUBBOK_REGISTRY)"
    if json_mode:
        record: dict[str, Any] = {"error": type(error).__name__, "message": message}
        if problems:
            record["problems"] = [{"path": p.path, "message": p.message} for p in problems]
        click.echo(json.dumps(record, ensure_ascii=False), err=True)
        return code
    console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    if problems:
        key = error.key if isinstance(error, RuleValidationError) else ""
        head = f"{key} is not valid" if key else "the document is not valid"
        console.print(Text.assemble(("error: ", "bold red"), f"{head}:"))
        for problem in problems:
            console.print(
                Text.assemble(
                    "  • ", (problem.path or "(document)", "bold"), f": {problem.message}"
                )
            )
        console.print(
            "Nothing was written. Fix the fields above; 'dubbok config schema' lists every field.",
            style="dim",
        )
        return code
    console.print(Text.assemble(("error: ", "bold red"), message))
    return code
