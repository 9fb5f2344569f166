"""Reading configuration documents: YAML or JSON text to plain data, with errors that point.

YAML is read with the YAML 1.2 core schema rules for scalars, not PyYAML's 1.1 defaults:
only ``true``/``false`` are booleans (so ``mode: off`` stays the text ``"off"``), ``1:30``
is text rather than sexagesimal 90, and a key given twice in one mapping is an error
rather than silently the last one. JSON is YAML, so JSON documents read the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from typing import Any

import yaml

from .errors import Problem, RuleValidationError

__all__ = ["dump_text", "parse_text", "parse_value"]


# libyaml's parser when it is there (an order of magnitude faster on big documents); the
# resolver and constructor stay the Python ones, which is where the changes below apply.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]  # chosen at import time
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate-key detection."""


# Drop 1.1's bool/int/float resolvers (yes/no/on/off, sexagesimal, 0b/0x/0o 1.1 forms) and
# add the 1.2 core schema's.
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_value(text: str | bytes, *, key: str = "") -> Any:
    """The data in a YAML or JSON document (``None`` for an empty one).

    Raises :class:`RuleValidationError` with the line and column of a syntax error.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RuleValidationError(
                key, [Problem("", f"not UTF-8 text (byte {exc.start}); save it as UTF-8")]
            ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # safe: _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise RuleValidationError(key, [Problem("", f"{where}{what}")]) from None
    except yaml.YAMLError as exc:
        raise RuleValidationError(key, [Problem("", f"not YAML or JSON: {exc}")]) from None


def parse_text(text: str | bytes, *, key: str = "") -> dict[str, Any]:
    """Like :func:`parse_value` for documents that must be a mapping (rule documents); an
    empty document is an empty mapping."""
    data = parse_value(text, key=key)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RuleValidationError(
            key,
            [Problem("", f"the document must be a mapping of fields, got a {_kind(data)}")],
        )
    return data


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def dump_text(data: Any, *, json_format: bool = False) -> str:
    """Render data as YAML (block style, keys in document order) or indented JSON."""
    if json_format:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))
