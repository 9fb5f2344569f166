"""Governance rule documents as strict pydantic models.

A rule document is YAML or JSON, one per scope (``global/governance``,
``apps/<app>/governance``, ``services/<service>/governance``)::

    timeout: 1.0
    retries: 2
    loadbalance: roundrobin
    cluster: failover
    methods:
      SayHello: {timeout: 0.2, retries: 0, idempotent: true}
    breaker:
      instance: {consecutive_failures: 5, base_ejection_time: 10}
      method: {error_ratio: 0.5, min_calls: 20, window: 10, reset_timeout: 30}
    degrade:
      SayHello: {mode: fail, return: {message: "busy"}}
    instances:
      "10.0.0.7:50051": {weight: 20}
      "10.0.0.9:50051": {disabled: true}
    routes:
      - {match: {header: x-canary, equals: "1"}, to: {tags: {track: canary}}}
    limits:
      SayHello: {qps: 2000, max_concurrency: 64}
    gray:
      - name: faster-timeout
        select: {percent: 10}
        rules: {timeout: 0.5}

Every model refuses unknown fields and values of the wrong type (``"1"`` is not a number).
A field that is absent is *not set* and leaves the value of a lower scope (or of the code) in
place; a field set to ``null`` explicitly is set to nothing (``breaker: {method: null}``
turns the method breaker off). :func:`validate_rule` turns a parsed document into a
:class:`GovernanceRule` or raises :class:`~dubbok.config.errors.RuleValidationError` listing
every problem with its field path.

Sections reuse the runtime policies as the one source of truth for defaults and cross-field
checks: :meth:`BreakerRule.to_policy` builds :class:`~dubbok.breaker.BreakerPolicy`,
:meth:`RouteRule.to_condition` a :class:`~dubbok.routing.ConditionRule`, and the ``limits``
section a :class:`~dubbok.limit.LimitPolicy` (see :mod:`dubbok.config.effective`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import grpc
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..balancer import known_balancers
from ..breaker.policy import BreakerPolicy, InstanceBreakerPolicy, MethodBreakerPolicy
from ..cluster import known_clusters
from ..errors import ConfigurationError
from ..limit.policy import LimitPolicy
from ..routing.condition import ConditionRule, HeaderMatch, Match, Target
from ..routing.disabled import AddressSet

__all__ = [
    "AdaptiveLimitRule",
    "BreakerRule",
    "DegradeRule",
    "GovernanceRule",
    "GrayRule",
    "GraySelector",
    "HeaderRule",
    "InstanceBreakerRule",
    "InstanceRule",
    "LimitRule",
    "MatchRule",
    "MethodBreakerRule",
    "MethodRule",
    "RouteRule",
    "RuleBody",
    "RuleModel",
    "TargetRule",
]

if TYPE_CHECKING:
    from google.protobuf.message import Message

_Message = TypeVar("_Message", bound="Message")

_METHOD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def strip_where(message: str, where: str) -> str:
    """A policy's message without the field path it starts with (the path is shown apart)."""
    if message.startswith(where):
        message = message[len(where) :].lstrip(".:; ")
    return message


def _method_name(value: str) -> str:
    if not _METHOD.match(value):
        raise ValueError(
            f"{value!r} is not a method name; use the bare proto method name, e.g. SayHello"
        )
    return value


def _method_or_any(value: str) -> str:
    return value if value == "*" else _method_name(value)


def _balancer(value: str) -> str:
    name = value.strip().lower()
    known = known_balancers()
    if name not in known:
        raise ValueError(f"unknown load balancer {value!r}; known: {', '.join(known)}")
    return name


def _cluster(value: str) -> str:
    name = value.strip().lower()
    known = known_clusters()
    if name not in known:
        raise ValueError(f"unknown cluster strategy {value!r}; known: {', '.join(known)}")
    return name


def _address(value: str) -> str:
    try:
        (entry,) = AddressSet([value], owner="instances").entries
    except ConfigurationError as exc:
        raise ValueError(exc.message) from None
    return entry


def _status(value: str) -> str:
    name = value.strip().upper()
    if name not in _STATUS_NAMES:
        raise ValueError(
            f"{value!r} is not a gRPC status name; use one of {', '.join(sorted(_STATUS_NAMES))}"
        )
    return name


_STATUS_NAMES = frozenset(c.name for c in grpc.StatusCode if c is not grpc.StatusCode.OK)

MethodName = Annotated[str, AfterValidator(_method_name)]
MethodOrAny = Annotated[str, AfterValidator(_method_or_any)]
Address = Annotated[str, AfterValidator(_address)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
NonEmpty = Annotated[str, Field(min_length=1)]


class RuleModel(BaseModel):
    """Base of every rule model: strict types, unknown fields refused, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    def settings(self) -> dict[str, Any]:
        """The fields this document sets (by their document names), nothing else."""
        return self.model_dump(exclude_unset=True, by_alias=True)


# -- calls ---------------------------------------------------------------------------------


class MethodRule(RuleModel):
    """Call settings of one method; they win over the service-wide ones."""

    timeout: Seconds | None = None
    """Seconds the whole call (every attempt) may take."""
    retries: Annotated[int, Field(ge=0, le=100)] | None = None
    """Extra attempts after the first (failover); 0 disables retries."""
    idempotent: bool | None = None
    """The method may run twice safely: retry it after timeouts and server errors too."""


# -- breakers ------------------------------------------------------------------------------


class InstanceBreakerRule(RuleModel):
    """Outlier ejection of single endpoints (see ``InstanceBreakerPolicy``)."""

    consecutive_failures: Annotated[int, Field(ge=1)] | None = None
    """Counted failures in a row that eject an endpoint."""
    base_ejection_time: Seconds | None = None
    """Seconds of the first ejection; later ones last longer."""
    reset_timeout: Seconds | None = None
    """Another name for ``base_ejection_time``."""
    max_ejection_time: Seconds | None = None
    """Upper bound of an ejection, in seconds."""
    max_ejection_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    """At most this share of a service's endpoints is ejected at once."""

    @model_validator(mode="after")
    def _check(self) -> InstanceBreakerRule:
        if self.base_ejection_time is not None and self.reset_timeout is not None:
            raise ValueError("set base_ejection_time or reset_timeout (the same thing), not both")
        try:
            _overlay(InstanceBreakerPolicy, None, self.policy_options())
        except ConfigurationError as exc:
            raise ValueError(strip_where(exc.message, "breaker.instance")) from None
        return self

    def policy_options(self) -> dict[str, Any]:
        options = self.settings()
        if "reset_timeout" in options:
            options["base_ejection_time"] = options.pop("reset_timeout")
        return options


class MethodBreakerRule(RuleModel):
    """The per service/method breaker (see ``MethodBreakerPolicy``); ``null`` turns a trigger
    off."""

    error_ratio: Ratio | None = None
    """Share of counted failures in the window that opens the breaker."""
    slow_call_ratio: Ratio | None = None
    """Share of slow calls in the window that opens the breaker."""
    slow_call_threshold: Seconds | None = None
    """A call slower than this many seconds is slow."""
    consecutive_failures: Annotated[int, Field(ge=1)] | None = None
    """Counted failures in a row that open the breaker."""
    min_calls: Annotated[int, Field(ge=1)] | None = None
    """Calls the window must hold before a ratio can open the breaker."""
    window: Seconds | None = None
    """Length of the sliding window, in seconds."""
    buckets: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Slices of the window."""
    reset_timeout: Seconds | None = None
    """Seconds an open breaker waits before letting probe calls through."""
    half_open_max_calls: Annotated[int, Field(ge=1)] | None = None
    """Probe calls that must succeed to close the breaker."""

    @model_validator(mode="after")
    def _check(self) -> MethodBreakerRule:
        try:
            _overlay(MethodBreakerPolicy, None, self.settings())
        except ConfigurationError as exc:
            raise ValueError(strip_where(exc.message, "breaker.method")) from None
        return self


class BreakerRule(RuleModel):
    """Both breaker levels. A level set to ``null`` is off."""

    instance: InstanceBreakerRule | None = None
    """Per endpoint: eject endpoints that keep failing."""
    method: MethodBreakerRule | None = None
    """Per service/method: stop calling when too many calls fail or are slow."""

    def to_policy(self, base: BreakerPolicy | None = None) -> BreakerPolicy:
        """This rule over ``base`` (the code's policy, or the defaults): fields the rule sets
        replace the base's, a level set to ``null`` is off. Raises
        :class:`~dubbok.errors.ConfigurationError` for a combination the policy refuses."""
        base = base if base is not None else BreakerPolicy()
        instance = base.instance
        method = base.method
        if "instance" in self.model_fields_set:
            instance = (
                None
                if self.instance is None
                else _overlay(InstanceBreakerPolicy, base.instance, self.instance.policy_options())
            )
        if "method" in self.model_fields_set:
            method = (
                None
                if self.method is None
                else _overlay(MethodBreakerPolicy, base.method, self.method.settings())
            )
        return BreakerPolicy(instance=instance, method=method)


def _overlay(cls: type[Any], base: object | None, changes: Mapping[str, Any]) -> Any:
    """``cls`` built from ``base``'s fields (or the defaults) with ``changes`` applied."""
    start: dict[str, Any] = {}
    if base is not None:
        start = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}
    start.update(changes)
    return cls(**start)


# -- degradation ----------------------------------------------------------------------------


class DegradeRule(RuleModel):
    """What a consumer answers instead of (``force``) or after a failed (``fail``) call.

    ``return`` is the response as JSON (protobuf JSON mapping; ``{}`` is the empty
    response); ``throw`` fails the call with that gRPC status instead. ``off`` cancels a
    degrade rule of a lower scope.
    """

    mode: Literal["force", "fail", "off"]
    """``force``: never call, answer at once; ``fail``: call, answer this when the call
    fails; ``off``: no degradation."""
    return_: dict[str, Any] | None = Field(default=None, alias="return")
    """The response to answer with, as a JSON object (the default: an empty response)."""
    throw: Annotated[str, AfterValidator(_status)] | None = None
    """Fail with this gRPC status name (e.g. ``UNAVAILABLE``) instead of answering."""
    details: str | None = None
    """The status details that go with ``throw``."""

    @model_validator(mode="after")
    def _check(self) -> DegradeRule:
        if self.return_ is not None and self.throw is not None:
            raise ValueError("give 'return' or 'throw', not both")
        if self.details is not None and self.throw is None:
            raise ValueError("'details' goes with 'throw'; add throw: UNAVAILABLE (or another)")
        return self

    @property
    def active(self) -> bool:
        return self.mode != "off"

    @property
    def forced(self) -> bool:
        return self.mode == "force"

    @property
    def code(self) -> grpc.StatusCode | None:
        """The status to fail with (``throw``), or ``None`` to answer with a response."""
        return None if self.throw is None else grpc.StatusCode[self.throw]

    def response(self, message_type: type[_Message]) -> _Message:
        """``return`` as a ``message_type`` (protobuf's JSON mapping; absent: the empty
        message). Raises :class:`~dubbok.errors.ConfigurationError` naming the field that
        does not fit the message."""
        from google.protobuf import json_format

        message = message_type()
        try:
            json_format.ParseDict(self.return_ or {}, message)
        except json_format.ParseError as exc:
            raise ConfigurationError(
                f"degrade: 'return' does not fit {message_type.__name__}: {exc}; fix the rule "
                "to match the response message's fields"
            ) from None
        return message


# -- instances, routes, limits ----------------------------------------------------------------


class InstanceRule(RuleModel):
    """Overrides for one provider instance (``host:port``, or a host for all its ports)."""

    weight: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    """Relative weight for balancing (providers advertise 100 by default; 0 drains)."""
    disabled: bool | None = None
    """Take the instance out of rotation for this service."""


class HeaderRule(RuleModel):
    """A condition on one request metadata key: exactly one of equals, regex, present."""

    name: NonEmpty
    equals: str | None = None
    regex: str | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> HeaderRule:
        self.to_match()
        return self

    def to_match(self) -> HeaderMatch:
        try:
            return HeaderMatch(
                name=self.name, equals=self.equals, regex=self.regex, present=self.present
            )
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None


class MatchRule(RuleModel):
    """When a route applies; every condition given must hold. ``header`` with ``equals``,
    ``regex`` or ``present`` is a shorthand for one entry of ``headers``."""

    methods: list[MethodName] = []
    """Method names (any, when empty)."""
    apps: list[NonEmpty] = []
    """Consumer app names (any, when empty)."""
    headers: list[HeaderRule] = []
    """Conditions on request metadata."""
    header: NonEmpty | None = None
    equals: str | None = None
    regex: str | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> MatchRule:
        shorthand = (self.equals, self.regex, self.present)
        if self.header is None and shorthand != (None, None, None):
            raise ValueError("equals, regex and present need 'header' (the metadata key)")
        self.to_match()
        return self

    def to_match(self) -> Match:
        headers = [h.to_match() for h in self.headers]
        if self.header is not None:
            try:
                headers.append(
                    HeaderMatch(
                        name=self.header,
                        equals=self.equals,
                        regex=self.regex,
                        present=self.present,
                    )
                )
            except ConfigurationError as exc:
                raise ValueError(exc.message) from None
        return Match(methods=tuple(self.methods), headers=tuple(headers), apps=tuple(self.apps))


class TargetRule(RuleModel):
    """Where matching calls go: instances carrying every tag, and (if given) listed."""

    tags: dict[NonEmpty, str] = {}
    addresses: list[NonEmpty] = []

    @model_validator(mode="after")
    def _check(self) -> TargetRule:
        self.to_target()
        return self

    def to_target(self) -> Target:
        try:
            return Target(tags=dict(self.tags), addresses=tuple(self.addresses))
        except ConfigurationError as exc:
            raise ValueError(strip_where(exc.message, "target")) from None


class RouteRule(RuleModel):
    """``match`` → ``to``; the first route that matches and leaves an instance decides."""

    name: str = ""
    """A label shown in errors."""
    match: MatchRule = MatchRule()
    to: TargetRule
    force: bool = False
    """Fail the call rather than skip the route when ``to`` leaves no instance."""

    def to_condition(self) -> ConditionRule:
        return ConditionRule(
            match=self.match.to_match(), to=self.to.to_target(), force=self.force, name=self.name
        )


class AdaptiveLimitRule(RuleModel):
    """A concurrency limit that follows latency (see ``AdaptiveLimitPolicy``)."""

    initial_limit: Annotated[int, Field(ge=1)] | None = None
    min_limit: Annotated[int, Field(ge=1)] | None = None
    max_limit: Annotated[int, Field(ge=1)] | None = None
    smoothing: Ratio | None = None
    tolerance: Annotated[float, Field(ge=1, allow_inf_nan=False)] | None = None
    backoff_ratio: Annotated[float, Field(ge=0.5, le=1)] | None = None
    min_rtt_window: Seconds | None = None


class LimitRule(RuleModel):
    """What a provider admits for one method (``"*"``: every method not listed)."""

    qps: Seconds | None = None
    """Calls per second (token bucket)."""
    burst: Annotated[float, Field(ge=1, allow_inf_nan=False)] | None = None
    """Bucket size (default: a tenth of a second's worth)."""
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    """Calls in progress at once."""
    adaptive: AdaptiveLimitRule | None = None
    """A gradient concurrency limit; ``true`` for the defaults."""

    @field_validator("adaptive", mode="before")
    @classmethod
    def _adaptive_flag(cls, value: object) -> object:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @model_validator(mode="after")
    def _check(self) -> LimitRule:
        try:
            LimitPolicy.from_dict({"m": self.settings()})
        except ConfigurationError as exc:
            raise ValueError(strip_where(exc.message, "limits.m")) from None
        return self


# -- documents -------------------------------------------------------------------------------


class RuleBody(RuleModel):
    """The governance fields of a document (and of a gray overlay)."""

    timeout: Seconds | None = None
    """Seconds a call (all its attempts) may take."""
    retries: Annotated[int, Field(ge=0, le=100)] | None = None
    """Extra attempts after the first."""
    idempotent: bool | None = None
    """Every method of the service may run twice safely."""
    loadbalance: Annotated[str, AfterValidator(_balancer)] | None = None
    """Load balancer: random, roundrobin, leastactive, consistenthash, p2c, or a plug-in."""
    cluster: Annotated[str, AfterValidator(_cluster)] | None = None
    """Cluster strategy: failover, failfast, or a plug-in."""
    warmup: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """Seconds over which a new instance's weight ramps up."""
    methods: dict[MethodName, MethodRule] = {}
    """Per-method call settings."""
    breaker: BreakerRule | None = None
    """Circuit breakers."""
    degrade: dict[MethodOrAny, DegradeRule] = {}
    """Per-method degradation (``"*"``: every method not listed)."""
    instances: dict[Address, InstanceRule] = {}
    """Per-instance weight and disabling, keyed by ``host:port`` or host."""
    routes: list[RouteRule] = []
    """Condition routes, tried in order. A list replaces a lower scope's list whole."""
    limits: dict[MethodOrAny, LimitRule] = {}
    """Provider-side admission limits per method (``"*"``: every method not listed)."""


class GraySelector(RuleModel):
    """Which instances a gray rule applies to; every condition given must hold."""

    percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    """This share of instances, chosen by a stable hash of the rule name and the instance
    id: raising the percentage keeps the instances already chosen."""
    tags: dict[NonEmpty, str] | None = None
    """Instances carrying every one of these tags."""
    apps: list[NonEmpty] | None = None
    """Instances of these apps."""
    instances: list[NonEmpty] | None = None
    """Instance ids (``host:pid`` by default) or host names."""

    @model_validator(mode="after")
    def _check(self) -> GraySelector:
        if not self.model_fields_set:
            raise ValueError(
                "select at least one of percent, tags, apps, instances; a rule for every "
                "instance belongs in the document itself"
            )
        return self


class GrayRule(RuleModel):
    """Rules tried on a subset of instances before all: ``rules`` apply over the document
    where ``select`` matches."""

    name: NonEmpty
    """Names the rollout; also seeds the stable percentage choice."""
    select: GraySelector
    rules: RuleBody


class GovernanceRule(RuleBody):
    """A governance rule document."""

    gray: list[GrayRule] = []
    """Gray releases, applied in order over the rest of the document."""

    @model_validator(mode="after")
    def _unique_gray(self) -> GovernanceRule:
        names = [g.name for g in self.gray]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"gray rule names must be unique; repeated: {', '.join(doubled)}")
        return self
