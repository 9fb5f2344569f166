"""Condition rules from plain data (rule documents, reference options).

::

    {"match": {"header": "x-canary", "equals": "1"}, "to": {"tags": {"track": "canary"}}}
    {"match": {"methods": ["SayHello"], "headers": [{"name": "x-user", "regex": "vip-.*"}],
               "apps": ["web"]},
     "to": {"addresses": ["10.0.0.7:50051"]}, "force": true, "name": "vip"}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from .condition import ConditionRule, HeaderMatch, Match, Target

__all__ = ["parse_rule", "parse_rules"]


def _header(data: Any, where: str) -> HeaderMatch:
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{where} must be a mapping like {{name: x-canary, equals: '1'}}")
    unknown = set(data) - {"name", "equals", "regex", "present"}
    if unknown:
        raise ConfigurationError(f"{where} has unknown keys {sorted(unknown)}")
    given = {k: data[k] for k in ("equals", "regex", "present") if data.get(k) is not None}
    # A bare header name means "the header is present".
    return HeaderMatch(name=str(data.get("name", "")), **(given or {"present": True}))


def parse_rule(data: Any, where: str = "routes[0]") -> ConditionRule:
    """One rule from a mapping; :class:`ConfigurationError` naming the path when malformed."""
    if isinstance(data, ConditionRule):
        return data
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{where} must be a mapping with 'match' and 'to'")
    unknown = set(data) - {"match", "to", "force", "name"}
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown keys {sorted(unknown)}; known: match, to, force, name"
        )
    match_data = data.get("match") or {}
    if not isinstance(match_data, Mapping):
        raise ConfigurationError(f"{where}.match must be a mapping")
    unknown = set(match_data) - {
        "header",
        "equals",
        "regex",
        "present",
        "headers",
        "methods",
        "apps",
    }
    if unknown:
        raise ConfigurationError(f"{where}.match has unknown keys {sorted(unknown)}")
    headers = [
        _header(h, f"{where}.match.headers[{i}]")
        for i, h in enumerate(match_data.get("headers") or ())
    ]
    if "header" in match_data:
        headers.append(
            _header(
                {
                    "name": match_data["header"],
                    **{k: match_data[k] for k in ("equals", "regex", "present") if k in match_data},
                },
                f"{where}.match",
            )
        )
    match = Match(
        methods=tuple(match_data.get("methods") or ()),
        headers=tuple(headers),
        apps=tuple(match_data.get("apps") or ()),
    )
    to = data.get("to")
    if not isinstance(to, Mapping):
        raise ConfigurationError(f"{where}.to must be a mapping with tags and/or addresses")
    unknown = set(to) - {"tags", "addresses"}
    if unknown:
        raise ConfigurationError(f"{where}.to has unknown keys {sorted(unknown)}")
    target = Target(tags=dict(to.get("tags") or {}), addresses=tuple(to.get("addresses") or ()))
    return ConditionRule(
        match=match, to=target, force=bool(data.get("force", False)), name=str(data.get("name", ""))
    )


def parse_rules(data: Sequence[Any] | None, where: str = "routes") -> tuple[ConditionRule, ...]:
    if not data:
        return ()
    if isinstance(data, (str, bytes, Mapping)):
        raise ConfigurationError(f"{where} must be a list of rules")
    return tuple(parse_rule(item, f"{where}[{i}]") for i, item in enumerate(data))
