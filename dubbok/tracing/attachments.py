"""Attachments under their earlier name: the same API as :mod:`dubbok.attachments`.

Attachments belong to the call path, not to tracing: every dubbok call carries them and
every provider reads them back, whether or not an observer is installed. Import them from
:mod:`dubbok.attachments` (``from dubbok import attachments``); this module re-exports that
one's names, so ``from dubbok.tracing import attachments`` keeps working.
"""

from __future__ import annotations

from ..attachments import EMPTY as EMPTY
from ..attachments import (
    MAX_BYTES,
    PREFIX,
    Attachments,
    attached,
    clear,
    current,
    get,
    remove,
    set,
)
from ..attachments import decode as decode
from ..attachments import enter as enter
from ..attachments import leave as leave
from ..attachments import snapshot as snapshot

__all__ = [
    "MAX_BYTES",
    "PREFIX",
    "Attachments",
    "attached",
    "clear",
    "current",
    "get",
    "remove",
    "set",
]
