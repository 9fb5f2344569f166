"""dubbok._fingerprint: the source of a function, comments and layout left out."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dubbok._fingerprint import fingerprint, lookup


def _load(tmp_path: Path, name: str, source: str) -> Any:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
    return module.f


def test_layout_and_comments_do_not_count_and_what_the_code_does_does(
    tmp_path: Path,
) -> None:
    base = _load(tmp_path, "fp_a", "def f(x):\n    if x is not None:\n        return x\n")
    same = _load(
        tmp_path,
        "fp_b",
        "\n\ndef f(x):\n    # a comment\n\n        if x is not None:\n            return x\n",
    )
    # the same names in another order: the co_names of the two are equal, the code is not
    other = _load(tmp_path, "fp_c", "def f(x):\n    if x is None:\n        return x\n")
    assert fingerprint(base) is not None
    assert fingerprint(base) == fingerprint(same)
    assert fingerprint(base) != fingerprint(other)


def test_no_source_no_fingerprint() -> None:
    namespace: dict[str, Any] = {}
    exec("def f():\n    return 1\n", namespace)  # a function without a file
    assert fingerprint(namespace["f"]) is None
    assert fingerprint(len) is None


def test_lookup() -> None:
    import grpc

    assert lookup(grpc, "StatusCode.OK") is grpc.StatusCode.OK
    with pytest.raises(AttributeError):
        lookup(grpc, "StatusCode.NO_SUCH_CODE")


def test_source_that_cannot_be_read_gives_none_never_an_error(tmp_path: Path) -> None:
    f = _load(tmp_path, "fp_d", "def f(x):\n    return x\n")
    assert fingerprint(f) is not None
    # the file changed on disk since the import, and no longer tokenizes
    (tmp_path / "fp_d.py").write_text("def f(x):\n    return (x,\n")
    assert fingerprint(f) is None

    def g() -> None: ...

    g.__wrapped__ = g  # type: ignore[attr-defined]  # a wrapper loop: unwrap raises
    assert fingerprint(g) is None
