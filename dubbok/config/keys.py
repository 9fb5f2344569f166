"""Where configuration lives in etcd.

Under ``/dubbok/<namespace>/``::

    config/global/<name>                     shared by every app of the namespace
    config/apps/<app>/<name>                 one app's settings and rules
    config/services/<service>/<name>         one service's; ``governance`` is its rule document
    history/config/<scope…>/<revision>       earlier values of a config key (bounded per key)

A *config key* is written relative to ``config/``: ``global/governance``,
``apps/shop/db/pool``, ``services/helloworld.Greeter/governance``. The document named
``governance`` in any scope holds governance rules; every other name is an application
setting (any YAML or JSON value). Names may nest (``db/pool``) and may use any printable
Unicode, but no empty, ``.`` or ``..`` segment. App and service names follow the registry's
rule (letters, digits, ``.``, ``_``, ``-``).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from .errors import InvalidKeyError

__all__ = [
    "GOVERNANCE",
    "HISTORY_DIGITS",
    "ConfigKey",
    "KeyLayout",
    "Scope",
    "parse_key",
]

GOVERNANCE = "governance"
"""The name of the rule document in each scope."""

HISTORY_DIGITS = 20
"""History revisions are zero-padded so keys sort in revision order (int64 fits)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Scope(enum.Enum):
    """Where a key applies, from the widest to the narrowest."""

    GLOBAL = "global"
    APP = "apps"
    SERVICE = "services"

    @property
    def rank(self) -> int:
        """Precedence: a higher rank overrides a lower one."""
        return _RANK[self]


_RANK = {Scope.GLOBAL: 0, Scope.APP: 1, Scope.SERVICE: 2}


@dataclass(frozen=True, slots=True, order=True)
class ConfigKey:
    """A parsed config key: its scope, the app or service it belongs to, and its name."""

    scope: Scope
    owner: str
    """The app or service name; empty for the global scope."""
    name: str

    def __post_init__(self) -> None:
        if self.scope is Scope.GLOBAL and self.owner:
            raise InvalidKeyError(str(self), "the global scope has no owner")
        if self.scope is not Scope.GLOBAL:
            _check_owner(str(self), self.scope, self.owner)
        _check_name(str(self), self.name)

    @classmethod
    def global_(cls, name: str) -> ConfigKey:
        return cls(Scope.GLOBAL, "", name)

    @classmethod
    def app(cls, app: str, name: str) -> ConfigKey:
        return cls(Scope.APP, app, name)

    @classmethod
    def service(cls, service: str, name: str = GOVERNANCE) -> ConfigKey:
        return cls(Scope.SERVICE, service, name)

    @property
    def is_governance(self) -> bool:
        """True for the rule document of its scope."""
        return self.name == GOVERNANCE

    @property
    def scope_path(self) -> str:
        """``global/``, ``apps/<app>/`` or ``services/<service>/``."""
        if self.scope is Scope.GLOBAL:
            return "global/"
        return f"{self.scope.value}/{self.owner}/"

    def __str__(self) -> str:
        return f"{self.scope_path}{self.name}"


def parse_key(text: str) -> ConfigKey:
    """Parse a config key written relative to ``config/`` (a leading ``config/`` or ``/`` is
    accepted). Raises :class:`InvalidKeyError` saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidKeyError(repr(text), "a key must be text")
    raw = text.strip()
    key = raw.lstrip("/")
    if key.startswith("config/"):
        key = key[len("config/") :]
    if not key:
        raise InvalidKeyError(raw, "empty key")
    head, _, rest = key.partition("/")
    if head == Scope.GLOBAL.value:
        if not rest:
            raise InvalidKeyError(raw, "missing the name after 'global/'")
        return ConfigKey(Scope.GLOBAL, "", rest)
    for scope in (Scope.APP, Scope.SERVICE):
        if head == scope.value:
            owner, _, name = rest.partition("/")
            if not owner or not name:
                what = "app" if scope is Scope.APP else "service"
                raise InvalidKeyError(raw, f"expected '{head}/<{what}>/<name>'")
            return ConfigKey(scope, owner, name)
    raise InvalidKeyError(raw, f"unknown scope {head!r}; use 'global', 'apps' or 'services'")


def _check_owner(key: str, scope: Scope, owner: str) -> None:
    if not _NAME.match(owner):
        what = "app" if scope is Scope.APP else "service"
        raise InvalidKeyError(
            key,
            f"{what} name {owner!r} may hold letters, digits, '.', '_' and '-' only, and must "
            "start with a letter or digit",
        )


def _check_name(key: str, name: str) -> None:
    if not name:
        raise InvalidKeyError(key, "empty name")
    for segment in name.split("/"):
        if not segment:
            raise InvalidKeyError(
                key, "a name must not contain an empty segment ('//' or a trailing '/')"
            )
        if segment in (".", ".."):
            raise InvalidKeyError(key, f"a name must not contain a {segment!r} segment")
        if segment != segment.strip():
            raise InvalidKeyError(key, f"segment {segment!r} starts or ends with white space")
        if segment.isdigit() and len(segment) == HISTORY_DIGITS:
            raise InvalidKeyError(
                key, f"a {HISTORY_DIGITS}-digit segment would read as a history revision"
            )
        for char in segment:
            if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
                raise InvalidKeyError(
                    key, f"segment {segment!r} holds the control character U+{ord(char):04X}"
                )


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Absolute etcd keys for one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.namespace):
            raise InvalidKeyError(
                self.namespace,
                "a namespace may hold letters, digits, '.', '_' and '-' only",
            )

    @property
    def root(self) -> str:
        """``/dubbok/<namespace>/``."""
        return f"/dubbok/{self.namespace}/"

    @property
    def config_root(self) -> str:
        """The prefix every config key lives under (what a config watch covers)."""
        return f"{self.root}config/"

    def config(self, key: ConfigKey) -> str:
        return f"{self.config_root}{key}"

    def scope_prefix(self, scope: Scope, owner: str = "") -> str:
        """The absolute prefix of one scope: ``…/config/apps/<app>/`` and so on."""
        if scope is Scope.GLOBAL:
            return f"{self.config_root}global/"
        return f"{self.config_root}{scope.value}/{owner}/"

    def relative(self, absolute: str) -> ConfigKey | None:
        """The config key of an absolute etcd key; ``None`` for keys outside the layout."""
        if not absolute.startswith(self.config_root):
            return None
        try:
            return parse_key(absolute[len(self.config_root) :])
        except InvalidKeyError:
            return None

    def history_prefix(self, key: ConfigKey) -> str:
        """``…/history/config/<key>/``: one entry per replaced value."""
        return f"{self.root}history/config/{key}/"

    def history(self, key: ConfigKey, revision: int) -> str:
        return f"{self.history_prefix(key)}{revision:0{HISTORY_DIGITS}d}"

    def history_revision(self, key: ConfigKey, absolute: str) -> int | None:
        """The revision an absolute history key names, if it is one of ``key``'s entries
        (and not an entry of a nested key such as ``<key>/more``)."""
        prefix = self.history_prefix(key)
        if not absolute.startswith(prefix):
            return None
        tail = absolute[len(prefix) :]
        if len(tail) != HISTORY_DIGITS or not tail.isdigit():
            return None
        return int(tail)

    @property
    def services_root(self) -> str:
        """``…/services/``: where providers and consumers register."""
        return f"{self.root}services/"
