"""Tag routing: lanes chosen by a header or use_tag(), with Dubbo's fallback rules."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dubbok.endpoint import Endpoint
from dubbok.errors import ConfigurationError, NoProviderError
from dubbok.invocation import Invocation
from dubbok.routing import TagRouter, route_chain, use_tag
from dubbok.routing.tag import RequestTag, current_tag

STABLE = [Endpoint("10.0.7.1", 50051), Endpoint("10.0.7.2", 50051)]
CANARY = [Endpoint("10.0.7.3", 50051, tags={"tag": "canary", "zone": "a"})]
BLUE = [Endpoint("10.0.7.4", 50051, tags={"tag": "blue"})]
FLEET = STABLE + CANARY + BLUE


def call(tag: str | None = None) -> Invocation:
    metadata = (("x-dubbok-tag", tag),) if tag is not None else ()
    return Invocation("demo.Svc", "Get", b"", metadata, None)


@pytest.mark.parametrize(
    ("fleet", "tag", "force", "expected"),
    [
        (FLEET, "canary", False, CANARY),  # the lane
        (FLEET, "blue", False, BLUE),
        (FLEET, "green", False, STABLE),  # no such lane: fall back to untagged
        (FLEET, "green", True, None),  # ...unless forced
        (FLEET, None, False, STABLE),  # untagged calls never reach a lane
        (FLEET, "", False, STABLE),  # an empty tag is no tag
        (CANARY + BLUE, None, False, None),  # nothing untagged
        (CANARY + BLUE, "green", False, None),  # no lane, no fallback
        (STABLE, "canary", False, STABLE),
    ],
)
def test_header_tag_routing(
    fleet: list[Endpoint], tag: str | None, force: bool, expected: list[Endpoint] | None
) -> None:
    routers = [TagRouter(force=force)]
    if expected is None:
        with pytest.raises(NoProviderError, match="router 'tag'"):
            route_chain(routers, fleet, call(tag))
    else:
        assert route_chain(routers, fleet, call(tag)) == tuple(expected)


def test_use_tag_sets_the_lane_for_the_block() -> None:
    router = [TagRouter()]
    assert current_tag() is None
    with use_tag("canary") as tag:
        assert tag == RequestTag("canary")
        assert route_chain(router, FLEET, call()) == tuple(CANARY)
        with use_tag(""):
            assert route_chain(router, FLEET, call()) == tuple(STABLE)
        # The call's own header wins over the context.
        assert route_chain(router, FLEET, call("blue")) == tuple(BLUE)
    assert current_tag() is None
    assert route_chain(router, FLEET, call()) == tuple(STABLE)


def test_use_tag_can_force() -> None:
    with use_tag("green", force=True), pytest.raises(NoProviderError) as info:
        route_chain([TagRouter()], FLEET, call())
    assert "call tagged 'green', forced" in str(info.value)
    assert "'blue', 'canary'" in str(info.value)


def test_use_tag_is_per_thread_and_per_task() -> None:
    seen: dict[str, object] = {}

    def other_thread() -> None:
        seen["thread"] = current_tag()

    async def main() -> None:
        async def task(tag: str) -> None:
            with use_tag(tag):
                await asyncio.sleep(0)
                seen[tag] = route_chain([TagRouter()], FLEET, call())

        await asyncio.gather(task("canary"), task("blue"))

    with use_tag("canary"):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    asyncio.run(main())
    assert seen == {"thread": None, "canary": tuple(CANARY), "blue": tuple(BLUE)}


def test_custom_header_and_tag_key() -> None:
    fleet = [Endpoint("10.0.7.1", 50051), Endpoint("10.0.7.2", 50051, tags={"lane": "dev-ann"})]
    router = TagRouter(header="X-Lane", key="lane")
    inv = Invocation("demo.Svc", "Get", b"", (("x-lane", "dev-ann"),), None)
    assert route_chain([router], fleet, inv) == (fleet[1],)


def test_untagged_call_on_an_all_lane_fleet_says_what_to_do() -> None:
    with pytest.raises(NoProviderError) as info:
        route_chain([TagRouter()], CANARY + BLUE, call())
    text = str(info.value)
    assert "untagged call" in text and "x-dubbok-tag" in text and "left no endpoint of 2" in text


@pytest.mark.parametrize(
    "options",
    [{"header": ""}, {"key": " "}, {"force": "yes"}, {"header": 3}],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        TagRouter(**options)  # type: ignore[arg-type]


def test_use_tag_rejects_non_strings() -> None:
    with pytest.raises(ConfigurationError), use_tag(3):  # type: ignore[arg-type]
        pass
