"""Settings across scopes, nested keys, and bound models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dubbok.config.settings import MISSING, Bound, deep_merge, resolve_setting

SCOPES = ["global/", "apps/shop/", "services/s/"]


def test_the_highest_scope_wins_and_mappings_merge() -> None:
    values: dict[str, Any] = {
        "global/db": {"host": "db", "pool": {"size": 5, "timeout": 1}},
        "apps/shop/db": {"pool": {"size": 20}},
        "services/s/db": {"host": "db-s"},
    }
    value, sources = resolve_setting(values, SCOPES, "db")
    assert value == {"host": "db-s", "pool": {"size": 20, "timeout": 1}}
    assert sources == ["global/db", "apps/shop/db", "services/s/db"]
    assert resolve_setting(values, SCOPES[:2], "db")[0]["host"] == "db"


def test_keys_below_a_name_become_nested_fields() -> None:
    values: dict[str, Any] = {
        "global/db": {"pool": {"size": 5}},
        "apps/shop/db/pool/size": 30,
        "apps/shop/db/host": "db-1",
    }
    value, _ = resolve_setting(values, SCOPES, "db")
    assert value == {"pool": {"size": 30}, "host": "db-1"}
    assert resolve_setting(values, SCOPES, "db/pool/size") == (
        30,
        ["global/db", "apps/shop/db/pool/size"],
    )


def test_names_reach_into_enclosing_documents() -> None:
    values: dict[str, Any] = {
        "global/db": {"pool": {"size": 5, "timeout": 1}},
        "apps/shop/db/pool": {"size": 8},
    }
    assert resolve_setting(values, SCOPES, "db/pool/size") == (
        8,
        ["global/db", "apps/shop/db/pool"],
    )
    assert resolve_setting(values, SCOPES, "db/pool/timeout") == (1, ["global/db"])
    assert resolve_setting(values, SCOPES, "db/pool/other") == (MISSING, [])


def test_a_missing_setting_is_missing() -> None:
    assert resolve_setting({"global/other": 1}, SCOPES, "db") == (MISSING, [])
    assert resolve_setting({"global/dbx": 1}, SCOPES, "db") == (MISSING, [])


def test_scalars_and_lists_are_replaced() -> None:
    assert deep_merge([1, 2], [3]) == [3]
    assert deep_merge({"a": [1]}, {"a": [2]}) == {"a": [2]}
    assert deep_merge({"a": 1}, 5) == 5


class Db(BaseModel):
    host: str = "localhost"
    pool_size: int = 10


def test_bound_values_update_and_tell_listeners() -> None:
    bound = Bound("db", Db(), [])
    seen: list[Db] = []

    def broken(value: Db) -> None:
        raise RuntimeError("a broken listener does not stop the others")

    bound.on_change(broken)
    bound.on_change(seen.append)
    bound._update(Db(pool_size=20), ["apps/shop/db"])
    assert bound.value.pool_size == 20
    assert bound.pool_size == 20
    assert bound.sources == ("apps/shop/db",)
    assert seen == [Db(pool_size=20)]
