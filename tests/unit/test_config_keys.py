"""Config keys: the layout, what is accepted, and how mistakes are reported."""

from __future__ import annotations

import pytest

from dubbok.config.errors import InvalidKeyError
from dubbok.config.keys import ConfigKey, KeyLayout, Scope, parse_key


@pytest.mark.parametrize(
    ("text", "scope", "owner", "name"),
    [
        ("global/governance", Scope.GLOBAL, "", "governance"),
        ("config/global/feature/flags", Scope.GLOBAL, "", "feature/flags"),
        ("/apps/shop/db", Scope.APP, "shop", "db"),
        ("apps/shop/db/pool/size", Scope.APP, "shop", "db/pool/size"),
        (
            "services/helloworld.Greeter/governance",
            Scope.SERVICE,
            "helloworld.Greeter",
            "governance",
        ),
        ("apps/shop/配置/数据库", Scope.APP, "shop", "配置/数据库"),
        ("global/émoji-🚀", Scope.GLOBAL, "", "émoji-🚀"),
    ],
)
def test_keys_parse(text: str, scope: Scope, owner: str, name: str) -> None:
    key = parse_key(text)
    assert (key.scope, key.owner, key.name) == (scope, owner, name)
    assert parse_key(str(key)) == key


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty key"),
        ("governance", "unknown scope"),
        ("global/", "missing the name"),
        ("apps/shop", "expected 'apps/<app>/<name>'"),
        ("services//governance", "expected 'services/<service>/<name>'"),
        ("apps/sh op/db", "app name"),
        ("services/a/b/../c", "'..' segment"),
        ("apps/shop/a//b", "empty segment"),
        ("apps/shop/a/", "empty segment"),
        ("apps/shop/ a", "white space"),
        ("apps/shop/a\x00b", "control character U+0000"),
        ("apps/shop/00000000000000000042", "history revision"),
    ],
)
def test_bad_keys_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        parse_key(text)
    assert problem in info.value.message
    assert "global/NAME" in info.value.message


def test_governance_documents_are_named_governance() -> None:
    assert ConfigKey.service("a.B").is_governance
    assert ConfigKey.global_("governance").is_governance
    assert not ConfigKey.app("shop", "db").is_governance


def test_layout_places_config_and_history() -> None:
    layout = KeyLayout("shop")
    key = ConfigKey.service("helloworld.Greeter")
    assert layout.config(key) == "/dubbok/shop/config/services/helloworld.Greeter/governance"
    assert layout.scope_prefix(Scope.APP, "web") == "/dubbok/shop/config/apps/web/"
    entry = layout.history(key, 42)
    assert entry == (
        "/dubbok/shop/history/config/services/helloworld.Greeter/governance/00000000000000000042"
    )
    assert layout.history_revision(key, entry) == 42
    nested = layout.history(ConfigKey.service("helloworld.Greeter", "governance/x"), 7)
    assert layout.history_revision(key, nested) is None
    assert layout.relative(layout.config(key)) == key
    assert layout.relative("/dubbok/shop/services/x/providers/h:1") is None
    assert layout.relative("/dubbok/shop/config/nowhere/x") is None
    with pytest.raises(InvalidKeyError):
        KeyLayout("a/b")
