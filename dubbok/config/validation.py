"""Validating documents, with every problem reported at its field path.

Called by the CLI before a write, by :class:`~dubbok.config.store.ConfigStore` on every
write, and by :class:`~dubbok.config.center.ConfigCenter` on every change it sees. A
problem reads ``methods.SayHello.timeout: must be greater than 0 (got -1)`` or
``breaker.methd: unknown field; did you mean 'method'?``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from .document import parse_text, parse_value
from .errors import Problem, RuleValidationError
from .keys import ConfigKey
from .rules import GovernanceRule

__all__ = [
    "check_document",
    "format_path",
    "problems_of",
    "rule_schema",
    "validate_rule",
    "validate_value",
]

M = TypeVar("M")


def validate_rule(data: Any, *, key: str = "") -> GovernanceRule:
    """A parsed document as a :class:`GovernanceRule`; :class:`RuleValidationError` lists
    every problem otherwise."""
    try:
        return GovernanceRule.model_validate(data)
    except ValidationError as exc:
        raise RuleValidationError(key, problems_of(exc, GovernanceRule)) from None


def validate_value(data: Any, kind: type[M] | Any, *, key: str = "") -> M:
    """``data`` validated as ``kind`` (a pydantic model or any type pydantic knows, such as
    ``int`` or ``list[str]``). Lax where the document is text and the type is not: a YAML
    ``"10"`` is accepted for an ``int`` setting, as pydantic does by default."""
    try:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind.model_validate(data)  # type: ignore[return-value]
        result: M = TypeAdapter(kind).validate_python(data)
        return result
    except ValidationError as exc:
        model = kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None
        raise RuleValidationError(key, problems_of(exc, model)) from None


def check_document(key: ConfigKey, text: str | bytes) -> Any:
    """Parse and validate the value of ``key``: a :class:`GovernanceRule` for a governance
    document, the parsed data for a setting. Raises :class:`RuleValidationError`."""
    name = str(key)
    if key.is_governance:
        return validate_rule(parse_text(text, key=name), key=name)
    return parse_value(text, key=name)


def rule_schema() -> dict[str, Any]:
    """The JSON schema of governance rule documents (what ``dubbok config schema`` prints)."""
    schema = GovernanceRule.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dubbok governance rule document"
    return schema


def format_path(loc: Sequence[int | str]) -> str:
    """``("methods", "SayHello", "timeout")`` → ``methods.SayHello.timeout``; list indices
    as ``[0]``, keys that are not identifiers quoted (``instances["10.0.0.7:50051"]``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() or part == "*":
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def problems_of(exc: ValidationError, model: type[BaseModel] | None) -> list[Problem]:
    """One :class:`Problem` per pydantic error, with readable paths and messages."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        if loc and loc[-1] == "[key]":
            loc.pop()
            problems.append(Problem(format_path(loc), f"bad key: {_message(error)}"))
            continue
        if error["type"] == "extra_forbidden":
            problems.append(Problem(format_path(loc), _unknown_field(model, loc)))
            continue
        problems.append(Problem(format_path(loc), _message(error)))
    return problems


def _message(error: ErrorDetails) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    if error["type"] not in ("value_error", "assertion_error", "missing"):
        message += f" (got {_short(error.get('input'))})"
    if error["type"] == "missing":
        message = "required field missing"
    return message


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_field(model: type[BaseModel] | None, loc: Sequence[int | str]) -> str:
    name = str(loc[-1]) if loc else "?"
    owner = _model_at(model, loc[:-1]) if model is not None else None
    if owner is None:
        return "unknown field"
    known = sorted(f.alias or n for n, f in owner.model_fields.items())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
    return f"unknown field{hint}"


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that the value at ``loc`` (inside ``model``) is validated as."""
    current: Any = model
    for part in loc:
        current = _strip(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        if origin in (list, dict):
            current = typing.get_args(current)[-1]
            continue
        return None
    current = _strip(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _strip(annotation: Any) -> Any:
    """Remove ``Annotated`` and ``| None`` around an annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
