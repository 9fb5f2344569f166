"""Attachments: a bounded, validated, per-context set of key/values (no sockets)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading

import pytest

from dubbok.errors import ConfigurationError
from dubbok.tracing import attachments
from dubbok.tracing.attachments import MAX_BYTES, PREFIX


def _fresh() -> contextvars.Context:
    """A context in which no attachment is set (tests must not leak into each other)."""
    ctx = contextvars.copy_context()
    ctx.run(attachments.clear)
    return ctx


def test_set_get_remove_and_the_metadata_that_carries_them() -> None:
    def body() -> None:
        attachments.set("tenant", "acme")
        attachments.set("user-id", "42")
        assert attachments.get("tenant") == "acme"
        assert attachments.get("missing", "d") == "d"
        assert dict(attachments.current()) == {"tenant": "acme", "user-id": "42"}
        assert attachments.snapshot().metadata == (
            (PREFIX + "tenant", "acme"),
            (PREFIX + "user-id", "42"),
        )
        attachments.remove("tenant")
        attachments.remove("not-there")
        assert dict(attachments.current()) == {"user-id": "42"}

    _fresh().run(body)


def test_the_current_mapping_is_read_only() -> None:
    def body() -> None:
        attachments.set("a", "1")
        with pytest.raises(TypeError):
            attachments.current()["a"] = "2"  # type: ignore[index]

    _fresh().run(body)


def test_attached_restores_what_was_before() -> None:
    def body() -> None:
        attachments.set("a", "1")
        with attachments.attached({"b": "2", "a": "3"}) as now:
            assert dict(now) == {"a": "3", "b": "2"}
        assert dict(attachments.current()) == {"a": "1"}

    _fresh().run(body)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Tenant", "x"),  # upper case: gRPC would lower-case it
        ("", "x"),
        ("-x", "x"),
        ("a b", "x"),
        ("blob-bin", "x"),  # binary metadata
        ("k", "caf\u00e9"),  # not ASCII
        ("k", "line\nbreak"),
        ("k", 3),
    ],
)
def test_names_and_values_grpc_cannot_carry_are_refused(key: str, value: object) -> None:
    def body() -> None:
        with pytest.raises(ConfigurationError, match="attachment"):
            attachments.set(key, value)  # type: ignore[arg-type]
        assert not attachments.current()

    _fresh().run(body)


def test_the_size_bound_is_checked_and_keeps_the_previous_set() -> None:
    def body() -> None:
        attachments.set("small", "x")
        room = MAX_BYTES - attachments.snapshot().size - len(PREFIX) - len("big")
        attachments.set("big", "y" * room)  # exactly at the bound
        assert attachments.snapshot().size == MAX_BYTES
        with pytest.raises(ConfigurationError, match=f"more than the {MAX_BYTES}"):
            attachments.set("one-more", "z")
        assert set(attachments.current()) == {"small", "big"}
        with pytest.raises(ConfigurationError), attachments.attached({"x": "y" * MAX_BYTES}):
            pass
        assert set(attachments.current()) == {"small", "big"}

    _fresh().run(body)


def test_incoming_attachments_beyond_the_bound_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pairs = [(f"{PREFIX}k{i}", "v" * 1000) for i in range(12)]
    with caplog.at_level(logging.WARNING, logger="dubbok.attachments"):
        decoded = attachments.decode(pairs)
    assert decoded.size <= MAX_BYTES
    assert len(decoded.values) == MAX_BYTES // (len(PREFIX) + 2 + 1000)
    assert "ignored" in caplog.text
    # Binary values are not attachments.
    assert not attachments.decode([(PREFIX + "x", b"bytes")])


def test_each_thread_and_task_has_its_own() -> None:
    seen: dict[str, str | None] = {}

    def body() -> None:
        attachments.set("who", "main")

        def other() -> None:
            seen["thread"] = attachments.get("who")  # a new thread starts empty

        t = threading.Thread(target=other)
        t.start()
        t.join()

        async def main() -> None:
            async def child() -> None:
                attachments.set("who", "child")  # changes the task's copy only

            await asyncio.create_task(child())
            seen["task-parent"] = attachments.get("who")

        asyncio.run(main())

    _fresh().run(body)
    assert seen == {"thread": None, "task-parent": "main"}


def test_enter_and_leave_scope_an_incoming_set() -> None:
    def body() -> None:
        assert attachments.enter(attachments.EMPTY) is None  # nothing to undo
        token = attachments.enter(attachments.Attachments.of({"a": "1"}))
        assert attachments.get("a") == "1"
        attachments.leave(token)
        assert attachments.get("a") is None

    _fresh().run(body)
