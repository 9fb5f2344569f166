"""Fingerprints of grpc functions that dubbok stands in for or relies on.

Where dubbok does on its own what a grpc internal function does (a faster path for a call
or a served request), it does so only for a grpc whose function is the one read when that
path was written. :func:`fingerprint` is a hash of the function's source with blank lines,
comments and indentation left out: a grpc release that changes what the function does
(a condition, a constant, a message) changes it; one that only reformats it does not. A
function whose source cannot be read (a grpc installed without its ``.py`` files) has no
fingerprint, and the path it guards is not taken; so has one whose source cannot be
parsed (a file changed on disk since the import). :func:`fingerprint` never raises: it runs
at import time, and a grpc it cannot read must not keep dubbok from importing.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

__all__ = ["fingerprint", "lookup"]


def fingerprint(fn: Any) -> str | None:
    """The fingerprint of ``fn``'s source, or ``None`` when it has none to read."""
    try:
        lines, _ = inspect.getsourcelines(fn)
    except Exception:  # OSError, TypeError, tokenize.TokenError, ValueError (unwrap)
        return None
    kept = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            kept.append(text)
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]


def lookup(root: Any, path: str) -> Any:
    """``root.a.b.c`` for ``path`` ``"a.b.c"`` (AttributeError when a part is missing)."""
    target = root
    for part in path.split("."):
        target = getattr(target, part)
    return target
