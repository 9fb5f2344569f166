"""Condition rules: calls that match send to a chosen subset of endpoints.

A rule says *when* (method, request headers, consumer app) and *where to* (endpoint tags,
addresses)::

    ConditionRule(
        match=Match(headers=(HeaderMatch("x-canary", equals="1"),)),
        to=Target(tags={"track": "canary"}),
    )

The governance document's ``routes:`` entries map onto these. Rules are tried in
order; the first rule that matches the call *and* leaves at least one endpoint decides. A
matching rule that would leave none is skipped (Dubbo's behaviour for non-forced rules) —
unless it says ``force=True``, in which case the call fails with an error naming the rule.
A call no rule matches keeps every endpoint.

Cost per call: the rules that can apply to the method are found with one dictionary lookup
(computed when the router is made); each is a few header comparisons; its target subset was
computed once per snapshot, so applying it is one ``&``. Rules for other consumer apps are
dropped when the router is made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..endpoint import Endpoint
from ..errors import ConfigurationError
from ..invocation import Invocation
from .disabled import AddressSet
from .step import mask_of, route_prepared

__all__ = ["ConditionRouter", "ConditionRule", "HeaderMatch", "Match", "Target"]


def _strings(owner: str, option: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (tuple, list, frozenset, set)):
        raise ConfigurationError(f"{owner}: {option} must be a list of strings, got {values!r}")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigurationError(
                f"{owner}: {option} must be a list of non-empty strings, got {item!r}"
            )
    return tuple(item.strip() for item in items)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderMatch:
    """A condition on one request metadata key (lower-cased): exactly one of ``equals``
    (the first value equals it), ``regex`` (the first value matches it in full) or
    ``present`` (the key is there, or with ``False``, is not)."""

    name: str
    equals: str | None = None
    regex: str | None = None
    present: bool | None = None
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError(
                f"header match: name must be a metadata key, got {self.name!r}"
            )
        object.__setattr__(self, "name", self.name.strip().lower())
        given = [k for k in ("equals", "regex", "present") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigurationError(
                f"header match on {self.name!r}: give exactly one of equals, regex, present "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.equals is not None and not isinstance(self.equals, str):
            raise ConfigurationError(
                f"header match on {self.name!r}: equals must be a string, got {self.equals!r}"
            )
        if self.present is not None and not isinstance(self.present, bool):
            raise ConfigurationError(
                f"header match on {self.name!r}: present must be true or false, "
                f"got {self.present!r}"
            )
        if self.regex is not None:
            if not isinstance(self.regex, str):
                raise ConfigurationError(
                    f"header match on {self.name!r}: regex must be a string, got {self.regex!r}"
                )
            try:
                object.__setattr__(self, "_pattern", re.compile(self.regex))
            except re.error as exc:
                raise ConfigurationError(
                    f"header match on {self.name!r}: bad regex {self.regex!r}: {exc}"
                ) from None

    def matches(self, invocation: Invocation) -> bool:
        value = invocation.header(self.name)
        if self.present is not None:
            return (value is not None) is self.present
        if value is None:
            return False
        if self._pattern is not None:
            return self._pattern.fullmatch(value) is not None
        return value == self.equals

    def __str__(self) -> str:
        if self.present is not None:
            return f"header {self.name} {'present' if self.present else 'absent'}"
        if self.regex is not None:
            return f"header {self.name} ~ {self.regex}"
        return f"header {self.name} == {self.equals}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """When a rule applies: every given condition must hold. ``methods`` and ``apps`` (the
    consumer's app name) match any listed name; empty means any."""

    methods: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    apps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", _strings("match", "methods", self.methods))
        object.__setattr__(self, "apps", _strings("match", "apps", self.apps))
        headers: object = self.headers  # checked at run time: rules come from config files
        if not isinstance(headers, (tuple, list)):
            raise ConfigurationError(
                f"match: headers must be a list of HeaderMatch, got {headers!r}"
            )
        for header in headers:
            if not isinstance(header, HeaderMatch):
                raise ConfigurationError(f"match: headers must hold HeaderMatch, got {header!r}")
        object.__setattr__(self, "headers", tuple(headers))

    def __str__(self) -> str:
        parts = []
        if self.methods:
            parts.append(_one_of("method", self.methods))
        parts.extend(str(h) for h in self.headers)
        if self.apps:
            parts.append(_one_of("app", self.apps))
        return ", ".join(parts) or "any call"


def _one_of(what: str, names: Sequence[str]) -> str:
    return f"{what} {names[0]}" if len(names) == 1 else f"{what} in ({', '.join(names)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where matching calls go: endpoints carrying every one of ``tags`` and, when
    ``addresses`` is given, listed there (``host:port`` or a bare host)."""

    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    addresses: tuple[str, ...] = ()
    _addresses: AddressSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tags, Mapping):
            raise ConfigurationError(f"target: tags must be a mapping, got {self.tags!r}")
        for key, value in self.tags.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise ConfigurationError(
                    f"target: tags must map names to strings, got {key!r}: {value!r}"
                )
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        addresses = _strings("target", "addresses", self.addresses)
        object.__setattr__(self, "_addresses", AddressSet(addresses, owner="target"))
        object.__setattr__(self, "addresses", self._addresses.entries)
        if not self.tags and not self.addresses:
            raise ConfigurationError(
                "target: give tags and/or addresses; a rule that sends calls everywhere "
                "needs no rule"
            )

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.tags.items())), self.addresses))

    def accepts(self, endpoint: Endpoint) -> bool:
        tags = endpoint.tags
        for key, value in self.tags.items():
            if tags.get(key) != value:
                return False
        return not self.addresses or endpoint in self._addresses

    def __str__(self) -> str:
        parts = []
        if self.tags:
            parts.append("tags " + ",".join(f"{k}={v}" for k, v in self.tags.items()))
        if self.addresses:
            parts.append(f"addresses {self._addresses}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionRule:
    """``match`` → ``to``. ``force``: fail the call rather than skip the rule when ``to``
    leaves no endpoint. ``name`` (optional) labels the rule in errors."""

    match: Match = field(default_factory=Match)
    to: Target
    force: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.match, Match):
            raise ConfigurationError(f"condition rule: match must be a Match, got {self.match!r}")
        if not isinstance(self.to, Target):
            raise ConfigurationError(f"condition rule: to must be a Target, got {self.to!r}")
        if not isinstance(self.force, bool):
            raise ConfigurationError(
                f"condition rule: force must be true or false, got {self.force!r}"
            )
        if not isinstance(self.name, str):
            raise ConfigurationError(f"condition rule: name must be a string, got {self.name!r}")

    def __str__(self) -> str:
        return f"{self.match} → {self.to}{', force' if self.force else ''}"


_EQUALS, _REGEX, _PRESENT, _ABSENT = range(4)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A rule as the router runs it: its index among the kept rules, its label, and its
    header checks as ``(name, kind, argument)`` triples."""

    index: int
    label: str
    checks: tuple[tuple[str, int, Any], ...]
    force: bool

    @classmethod
    def of(cls, index: int, label: str, rule: ConditionRule) -> _Compiled:
        checks: list[tuple[str, int, Any]] = []
        for h in rule.match.headers:
            if h.present is not None:
                checks.append((h.name, _PRESENT if h.present else _ABSENT, None))
            elif h.regex is not None:
                checks.append((h.name, _REGEX, h._pattern))
            else:
                checks.append((h.name, _EQUALS, h.equals))
        return cls(index, label, tuple(checks), rule.force)


class _ConditionStep:
    __slots__ = ("_any", "_by_method", "_names", "_targets", "invariant")

    def __init__(self, router: ConditionRouter, endpoints: Sequence[Endpoint]) -> None:
        snapshot = tuple(endpoints)
        # No rule for this consumer: nothing to decide per call.
        self.invariant = not router.rules
        self._by_method = router.by_method
        self._any = router.any_method
        self._names = router.header_names
        self._targets = [mask_of(snapshot, rule.to.accepts) for rule in router.rules]

    def _decide(self, invocation: Invocation, mask: int) -> tuple[int, _Compiled | None]:
        rules = self._by_method.get(invocation.method, self._any)
        if not rules:
            return mask, None
        # The first value of each header a rule reads, in one pass over the metadata.
        names = self._names
        seen: dict[str, str | bytes] = {}
        if names:
            for key, found in invocation.metadata:
                if key in names and key not in seen:
                    seen[key] = found
        targets = self._targets
        for rule in rules:
            for name, kind, argument in rule.checks:
                value = seen.get(name)
                if isinstance(value, bytes):
                    value = value.decode(errors="replace")
                if kind == _EQUALS:
                    if value != argument:
                        break
                elif kind == _REGEX:
                    if value is None or argument.fullmatch(value) is None:
                        break
                elif (value is None) is (kind == _PRESENT):
                    break
            else:
                out = mask & targets[rule.index]
                if out or rule.force:
                    return out, rule
        return mask, None

    def select(self, invocation: Invocation | None, mask: int) -> int:
        if invocation is None:
            return mask
        return self._decide(invocation, mask)[0]

    def explain(self, invocation: Invocation | None, mask: int) -> str:
        if invocation is None:
            return ""
        _, rule = self._decide(invocation, mask)
        return "" if rule is None else rule.label

    decided = explain  # the rule that decided, whether it left endpoints or none


class ConditionRouter:
    """Applies :class:`ConditionRule`\\ s in order (see the module docstring). ``app`` is this
    consumer's app name, matched against each rule's ``match.apps``."""

    __slots__ = ("any_method", "app", "by_method", "header_names", "rules")

    name = "condition"

    def __init__(self, rules: Sequence[ConditionRule], *, app: str = "") -> None:
        if not isinstance(app, str):
            raise ConfigurationError(f"condition router: app must be a string, got {app!r}")
        kept: list[tuple[int, ConditionRule]] = []
        for number, rule in enumerate(rules, start=1):
            if not isinstance(rule, ConditionRule):
                raise ConfigurationError(
                    f"condition router: rule #{number} must be a ConditionRule, got {rule!r}"
                )
            if not rule.match.apps or app in rule.match.apps:
                kept.append((number, rule))
        self.app = app
        self.rules = tuple(rule for _, rule in kept)
        compiled = []
        for index, (number, rule) in enumerate(kept):
            title = f"rule #{number} {rule.name!r}" if rule.name else f"rule #{number}"
            compiled.append(_Compiled.of(index, f"{title}: {rule}", rule))
        self.header_names = frozenset(h.name for r in self.rules for h in r.match.headers)
        methods = {m for rule in self.rules for m in rule.match.methods}
        self.any_method = tuple(c for c in compiled if not self.rules[c.index].match.methods)
        self.by_method = {
            method: tuple(
                c
                for c in compiled
                if not self.rules[c.index].match.methods
                or method in self.rules[c.index].match.methods
            )
            for method in methods
        }

    def prepare(self, endpoints: Sequence[Endpoint]) -> _ConditionStep:
        return _ConditionStep(self, endpoints)

    def route(self, endpoints: Sequence[Endpoint], invocation: Invocation) -> Sequence[Endpoint]:
        return route_prepared(self, endpoints, invocation)
