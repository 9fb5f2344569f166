"""Reconciling listings and watch events, including out-of-order arrivals."""

from __future__ import annotations

from dubbok.config.view import ConfigView, Raw

G = "/dubbok/ns/config/global/"
S = "/dubbok/ns/config/services/s/"


def test_listing_then_events() -> None:
    view = ConfigView()
    assert view.apply_listing(G, [(G + "a", b"1", 5)], 10) == {G + "a"}
    assert view.watch_from() == 11
    assert not view.apply_event(G + "a", b"0", 4)  # older than the listing
    assert not view.apply_event(G + "a", b"1", 10)  # covered by the listing
    assert view.apply_event(G + "a", b"2", 11)
    assert view.get(G + "a") == Raw(b"2", 11)
    assert view.apply_event(G + "a", None, 12)
    assert view.get(G + "a") is None
    assert not view.apply_event(G + "a", None, 13)  # already gone


def test_events_outside_the_scopes_are_ignored() -> None:
    view = ConfigView()
    view.apply_listing(G, [], 10)
    assert not view.apply_event(S + "governance", b"x", 11)
    assert view.keys() == set()


def test_a_scope_added_later_is_listed_at_its_own_revision() -> None:
    view = ConfigView()
    view.apply_listing(G, [], 10)
    view.apply_listing(S, [(S + "governance", b"v1", 12)], 15)
    assert view.watch_from() == 11  # the oldest listing
    assert not view.apply_event(S + "governance", b"v1", 12)  # replayed: already listed
    assert not view.apply_event(S + "governance", b"v0", 11)
    assert view.apply_event(S + "governance", b"v2", 16)
    assert view.get(S + "governance") == Raw(b"v2", 16)


def test_relisting_removes_what_was_deleted_meanwhile_and_keeps_newer_events() -> None:
    view = ConfigView()
    view.apply_listing(G, [(G + "a", b"1", 5), (G + "b", b"1", 6)], 10)
    view.apply_event(G + "c", b"new", 21)  # arrived before the re-list's answer
    changed = view.apply_listing(G, [(G + "a", b"1", 5)], 20)
    assert changed == {G + "b"}
    assert view.get(G + "c") == Raw(b"new", 21)
    assert view.get(G + "b") is None


def test_an_unchanged_value_is_not_a_change() -> None:
    view = ConfigView()
    view.apply_listing(G, [(G + "a", b"1", 5)], 10)
    assert not view.apply_event(G + "a", b"1", 11)
    assert view.get(G + "a") == Raw(b"1", 11)
    assert view.apply_listing(G, [(G + "a", b"1", 11)], 30) == set()


def test_a_listing_from_an_older_history_is_told_and_taken_as_the_truth() -> None:
    view = ConfigView()
    view.apply_listing(G, [(G + "a", b"1", 5), (G + "b", b"1", 6)], 10)
    view.apply_listing(S, [], 10)
    assert view.apply_event(G + "a", b"2", 14)
    # the same history, later: nothing went back
    assert not view.went_back(G, [(G + "a", b"2", 14), (G + "b", b"1", 6)], 20)
    # etcd restored from a backup taken at revision 12: listed below what was seen
    restored = [(G + "a", b"1", 5), (G + "b", b"1", 6)]
    assert view.went_back(G, restored, 12)
    # a lost write, then more writes: the listing is newer, but a key is older than seen
    assert view.went_back(G, [(G + "a", b"3", 13), (G + "b", b"1", 6)], 40)
    # a key seen later than the listing, and gone from it
    assert view.went_back(G, [(G + "b", b"1", 6)], 13)
    # a listing below the scope's own earlier listing
    assert view.went_back(S, [], 9)

    view.forget_revisions()
    assert view.apply_listing(G, [(G + "a", b"3", 13)], 13) == {G + "a", G + "b"}
    assert view.apply_listing(S, [], 13) == set()
    assert view.get(G + "a") == Raw(b"3", 13) and view.get(G + "b") is None
    assert view.watch_from() == 14
    assert view.apply_event(G + "a", b"4", 14)  # the new history's events apply
