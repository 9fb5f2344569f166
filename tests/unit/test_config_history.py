"""History entries and the versions rebuilt from them."""

from __future__ import annotations

from dubbok.config.history import HistoryEntry, versions


def entry(
    action: str, previous_revision: int, previous: bytes | None, who: str = "a"
) -> HistoryEntry:
    return HistoryEntry(
        action, who, 1000.0 + previous_revision, f"{action} by {who}", previous_revision, previous
    )


def test_entries_round_trip_including_bytes_that_are_not_text() -> None:
    for previous in (b"timeout: 1\n", "é".encode(), b"\xff\x00", None):
        e = entry("set", 4, previous)
        assert HistoryEntry.decode(e.encode()) == e


def test_unreadable_entries_are_skipped() -> None:
    for raw in (b"\xff", b"[]", b'{"format": 2}', b'{"format": 1, "time": "x"}'):
        assert HistoryEntry.decode(raw) is None


def test_versions_rebuild_authors_values_and_the_current_one() -> None:
    # v5 created by a, v9 set by b (replacing v5), v12 set by c (replacing v9) - current.
    listed = versions(
        (12, b"v12"),
        [
            (5, entry("set", 0, None, "a")),
            (9, entry("set", 5, b"v5", "b")),
            (12, entry("set", 9, b"v9", "c")),
        ],
    )
    assert [(v.revision, v.value, v.author, v.current) for v in listed] == [
        (12, b"v12", "c", True),
        (9, b"v9", "b", False),
        (5, b"v5", "a", False),
    ]


def test_a_deleted_key_shows_the_deletion_as_current() -> None:
    listed = versions(None, [(5, entry("set", 0, None)), (7, entry("rm", 5, b"v5"))])
    assert [(v.revision, v.deleted, v.current, v.value) for v in listed] == [
        (7, True, True, None),
        (5, False, False, b"v5"),
    ]


def test_values_written_by_other_tools_appear_without_authors() -> None:
    # v3 was written by another tool (no entry); v8 replaced it through dubbok.
    listed = versions((8, b"v8"), [(8, entry("set", 3, b"v3"))])
    assert [(v.revision, v.value, v.author) for v in listed] == [(8, b"v8", "a"), (3, b"v3", "")]
    # The current value written by another tool after dubbok's last write: value known,
    # author unknown; the version dubbok wrote lost its value (nobody kept it).
    listed = versions((11, b"v11"), [(8, entry("set", 3, b"v3"))])
    assert [(v.revision, v.known, v.author) for v in listed] == [
        (11, True, ""),
        (8, False, "a"),
        (3, True, ""),
    ]
