"""Rule documents: what validates, and how each problem is reported (path + message)."""

from __future__ import annotations

import json

import pytest

from dubbok.breaker.policy import BreakerPolicy, InstanceBreakerPolicy, MethodBreakerPolicy
from dubbok.config.document import dump_text, parse_text, parse_value
from dubbok.config.errors import RuleValidationError
from dubbok.config.keys import ConfigKey
from dubbok.config.rules import BreakerRule, GovernanceRule
from dubbok.config.validation import check_document, rule_schema, validate_rule, validate_value
from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation

SKETCH = """
timeout: 1.0
retries: 2
loadbalance: roundrobin
cluster: failover
methods:
  SayHello: {timeout: 0.2, retries: 0, idempotent: true}
breaker:
  instance: {consecutive_failures: 5, reset_timeout: 10}
  method: {error_ratio: 0.5, slow_call_ratio: 0.8, slow_call_threshold: 0.5,
           min_calls: 20, window: 10, reset_timeout: 30}
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
  - name: faster
    select: {percent: 10}
    rules: {timeout: 0.5}
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(RuleValidationError) as info:
        validate_rule(parse_text(text))
    return {p.path: p.message for p in info.value.problems}


def test_the_design_sketch_validates() -> None:
    rule = validate_rule(parse_text(SKETCH))
    assert rule.timeout == 1.0
    assert rule.methods["SayHello"].timeout == 0.2
    assert rule.degrade["SayHello"].return_ == {"message": "busy"}
    assert rule.instances["10.0.0.9:50051"].disabled is True
    assert rule.gray[0].select.percent == 10


def test_json_documents_read_like_yaml() -> None:
    data = parse_text(SKETCH)
    again = validate_rule(parse_text(json.dumps(data)))
    assert again == validate_rule(data)


def test_an_empty_document_sets_nothing() -> None:
    assert validate_rule(parse_text("")).model_fields_set == set()
    assert validate_rule(parse_text("# only a comment\n")).model_fields_set == set()


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("timeout: -1", "timeout", "greater than 0"),
        ("timeout: '1'", "timeout", "valid number"),
        ("retries: true", "retries", "valid integer"),
        ("retries: 1.5", "retries", "valid integer"),
        ("loadbalance: fastest", "loadbalance", "unknown load balancer 'fastest'; known:"),
        ("cluster: forever", "cluster", "unknown cluster strategy"),
        ("timout: 1", "timout", "did you mean 'timeout'"),
        ("methods: {SayHello: {timout: 1}}", "methods.SayHello.timout", "did you mean"),
        ("methods: {Say-Hello: {}}", 'methods["Say-Hello"]', "not a method name"),
        ("breaker: {methd: {}}", "breaker.methd", "did you mean 'method'"),
        ("breaker: {method: {error_ratio: 1.5}}", "breaker.method.error_ratio", "less than"),
        (
            "breaker: {instance: {base_ejection_time: 100, max_ejection_time: 10}}",
            "breaker.instance",
            "max_ejection_time (10 s) is shorter than base_ejection_time",
        ),
        (
            "breaker: {instance: {base_ejection_time: 1, reset_timeout: 1}}",
            "breaker.instance",
            "not both",
        ),
        (
            "breaker: {method: {error_ratio: null}}",
            "breaker.method",
            "no trigger",
        ),
        ("degrade: {A: {mode: maybe}}", "degrade.A.mode", "'force', 'fail' or 'off'"),
        ("degrade: {A: {mode: force, throw: NOPE}}", "degrade.A.throw", "not a gRPC status"),
        ("degrade: {A: {mode: force, throw: OK}}", "degrade.A.throw", "not a gRPC status"),
        ("degrade: {A: {mode: force, return: {}, throw: UNAVAILABLE}}", "degrade.A", "not both"),
        ("degrade: {A: {mode: force, details: x}}", "degrade.A", "goes with 'throw'"),
        ("degrade: {A: {}}", "degrade.A.mode", "required"),
        ('instances: {"10.0.0.7:x": {weight: 1}}', 'instances["10.0.0.7:x"]', "not a number"),
        (
            'instances: {"10.0.0.7:1": {weight: -1}}',
            'instances["10.0.0.7:1"].weight',
            "greater than or equal to 0",
        ),
        ("routes: [{to: {tags: {}}}]", "routes[0].to", "give tags and/or addresses"),
        ("routes: [{match: {}}]", "routes[0].to", "required"),
        (
            "routes: [{match: {header: x, regex: '('}, to: {tags: {a: b}}}]",
            "routes[0].match",
            "bad regex",
        ),
        ("routes: [{match: {equals: '1'}, to: {tags: {a: b}}}]", "routes[0].match", "need"),
        ("limits: {A: {burst: 5}}", "limits.A", "burst is set without qps"),
        (
            "limits: {A: {adaptive: {min_limit: 10, initial_limit: 5}}}",
            "limits.A",
            "min_limit ≤ initial_limit",
        ),
        ("gray: [{name: g, select: {}, rules: {}}]", "gray[0].select", "at least one"),
        ("gray: [{name: g, select: {percent: 101}, rules: {}}]", "gray[0].select.percent", "100"),
        ("gray: [{name: g, select: {percent: 5}, rules: {gray: []}}]", "gray[0].rules.gray", ""),
        (
            "gray: [{name: g, select: {apps: [a]}, rules: {}}, "
            "{name: g, select: {apps: [b]}, rules: {}}]",
            "",
            "unique",
        ),
    ],
)
def test_each_problem_names_its_field(text: str, path: str, fragment: str) -> None:
    found = problems(text)
    assert path in found, found
    assert fragment in found[path]


def test_every_problem_is_reported_at_once() -> None:
    found = problems("timeout: 0\nretries: -1\nloadbalance: x\nmethods: {A: {retries: -2}}")
    assert set(found) == {"timeout", "retries", "loadbalance", "methods.A.retries"}


def test_the_error_message_lists_the_problems_and_what_to_do() -> None:
    with pytest.raises(RuleValidationError) as info:
        validate_rule(parse_text("timeout: 0"), key="services/a.B/governance")
    text = str(info.value)
    assert "services/a.B/governance" in text
    assert "timeout: must be greater than 0" in text
    assert "dubbok config schema" in text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: 1\na: 2", "key 'a' appears twice"),
        ("a: [1", ", column "),
        ("- 1\n- 2", "must be a mapping"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_syntax_errors_point_at_the_place(text: str | bytes, problem: str) -> None:
    with pytest.raises(RuleValidationError) as info:
        parse_text(text)
    assert problem in str(info.value)


def test_yaml_reads_scalars_as_yaml_1_2() -> None:
    data = parse_value("mode: off\nyes: on\ntime: 1:30\nhex: 0x10\nflag: true\nf: 1.5e3\n")
    assert data == {
        "mode": "off",
        "yes": "on",
        "time": "1:30",
        "hex": 16,
        "flag": True,
        "f": 1500.0,
    }


def test_degrade_off_is_not_a_boolean() -> None:
    rule = validate_rule(parse_text("degrade: {SayHello: {mode: off}}"))
    assert rule.degrade["SayHello"].mode == "off"


def test_dump_round_trips() -> None:
    data = parse_text(SKETCH)
    assert parse_text(dump_text(data)) == data
    assert parse_text(dump_text(data, json_format=True)) == data


def test_schema_describes_every_section() -> None:
    schema = rule_schema()
    assert schema["title"] == "dubbok governance rule document"
    properties = schema["properties"]
    for name in ("timeout", "methods", "breaker", "degrade", "instances", "routes", "limits"):
        assert name in properties
    assert properties["timeout"]["description"].startswith("Seconds")
    assert "return" in schema["$defs"]["DegradeRule"]["properties"]
    json.dumps(schema)


def test_breaker_rule_builds_the_runtime_policy_over_a_base() -> None:
    rule = BreakerRule.model_validate(
        {"instance": {"reset_timeout": 20}, "method": {"min_calls": 5}}
    )
    base = BreakerPolicy(
        instance=InstanceBreakerPolicy(consecutive_failures=3),
        method=MethodBreakerPolicy(error_ratio=0.2),
    )
    policy = rule.to_policy(base)
    assert policy.instance == InstanceBreakerPolicy(consecutive_failures=3, base_ejection_time=20)
    assert policy.method == MethodBreakerPolicy(error_ratio=0.2, min_calls=5)
    assert BreakerRule.model_validate({"method": None}).to_policy(base).method is None
    assert BreakerRule.model_validate({}).to_policy(base) == base


def test_routes_become_condition_rules() -> None:
    rule = validate_rule(parse_text(SKETCH))
    condition = rule.routes[0].to_condition()
    canary = Endpoint.parse("10.0.0.1:1", tags={"track": "canary"})
    assert condition.to.accepts(canary)
    call = Invocation(
        service="s", method="SayHello", request=None, metadata=(("x-canary", "1"),), deadline=None
    )
    assert all(h.matches(call) for h in condition.match.headers)


def test_check_document_validates_by_key_kind() -> None:
    assert isinstance(check_document(ConfigKey.service("a.B"), b"timeout: 1"), GovernanceRule)
    assert check_document(ConfigKey.app("shop", "db"), b"[1, 2]") == [1, 2]
    with pytest.raises(RuleValidationError):
        check_document(ConfigKey.service("a.B"), b"timeout: nope")
    with pytest.raises(RuleValidationError):
        check_document(ConfigKey.app("shop", "db"), b"a: [")


def test_settings_validate_as_any_type() -> None:
    assert validate_value("10", int) == 10
    assert validate_value([1, "2"], list[int]) == [1, 2]
    with pytest.raises(RuleValidationError) as info:
        validate_value({"size": "big"}, dict[str, int], key="apps/shop/pool")
    assert info.value.problems[0].path == "size"


def test_degrade_rules_build_the_response_or_the_status() -> None:
    import grpc

    from dubbok.errors import ConfigurationError
    from dubbok.testing.pb import helloworld_pb2

    rule = validate_rule(parse_text(SKETCH)).degrade["SayHello"]
    assert rule.code is None
    assert rule.response(helloworld_pb2.HelloReply).message == "busy"
    throw = validate_rule(parse_text("degrade: {A: {mode: force, throw: unavailable}}"))
    assert throw.degrade["A"].code is grpc.StatusCode.UNAVAILABLE
    assert throw.degrade["A"].response(helloworld_pb2.HelloReply) == helloworld_pb2.HelloReply()
    wrong = validate_rule(parse_text("degrade: {A: {mode: force, return: {msg: x}}}"))
    with pytest.raises(ConfigurationError, match="does not fit HelloReply"):
        wrong.degrade["A"].response(helloworld_pb2.HelloReply)
