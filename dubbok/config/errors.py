"""Errors of the configuration center, placed in dubbok's tree::

DubbokError
├── ConfigurationError
│   ├── RuleValidationError     a document that does not validate; ``problems`` has each
│   │                           field path and what is wrong with it
│   ├── InvalidKeyError         a config key outside the layout (``global/…``, ``apps/…``,
│   │                           ``services/…``)
│   └── ValueTooLargeError      a write that etcd would refuse for its size
└── RegistryError
    ├── ConflictError           a compare-and-swap write lost: someone else wrote first
    └── NotFoundError           a key or a history revision that does not exist
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from ..errors import ConfigurationError, RegistryError

__all__ = [
    "ConflictError",
    "InvalidKeyError",
    "NotFoundError",
    "Problem",
    "RuleValidationError",
    "ValueTooLargeError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document: where (a field path such as
    ``methods.SayHello.timeout`` or ``routes[0].match``; empty for the whole document) and
    what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class RuleValidationError(ConfigurationError):
    """A document that does not parse or validate. Nothing was written or applied."""

    def __init__(self, key: str, problems: Sequence[Problem]) -> None:
        listed = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        where = f"{key}: " if key else ""
        super().__init__(
            f"{where}invalid document: {listed}{more}. Fix the fields named and try again; "
            "'dubbok config schema' prints every field"
        )
        self.key = key
        self.problems = tuple(problems)


class InvalidKeyError(ConfigurationError):
    """A config key the layout does not allow."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(
            f"invalid config key {key!r}: {problem}. Keys look like 'global/NAME', "
            "'apps/APP/NAME' or 'services/SERVICE/governance'"
        )
        self.key = key
        self.problem = problem


class ValueTooLargeError(ConfigurationError):
    """A write bigger than etcd accepts in one request."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class ConflictError(RegistryError):
    """A compare-and-swap write found another revision than the one expected."""

    code = grpc.StatusCode.ABORTED

    def __init__(self, key: str, expected: int, current: int) -> None:
        now = "does not exist" if current == 0 else f"is at revision {current}"
        wanted = "to be absent" if expected == 0 else f"at revision {expected}"
        super().__init__(
            f"{key} was changed by someone else: expected it {wanted}, but it {now}. "
            f"Nothing was written; look at 'dubbok config diff {key}' and retry with "
            f"--expect-revision {current}"
        )
        self.key = key
        self.expected = expected
        self.current = current


class NotFoundError(RegistryError):
    """A key, or a revision of it, that is not there."""

    code = grpc.StatusCode.NOT_FOUND
