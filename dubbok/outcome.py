"""The one classifier of call outcomes.

Every question about a finished attempt — retry it? count it against the breaker? — is
answered from the :class:`Verdict` that :func:`classify` gives, so the cluster strategies and
the breakers can never disagree about what a failure is.

========================  =========================================  =======  =============
verdict                   gRPC statuses                              counted  retried
========================  =========================================  =======  =============
``OK``                    OK                                         no       —
``BUSINESS``              INVALID_ARGUMENT, NOT_FOUND, ALREADY_...   no       never
``NOT_SENT``              UNAVAILABLE before the request left, or    yes      always
                          RESOURCE_EXHAUSTED from a provider limit
``UNAVAILABLE``           UNAVAILABLE otherwise                      yes      idempotent only
``TIMEOUT``               DEADLINE_EXCEEDED                          yes      idempotent only
``OVERLOADED``            RESOURCE_EXHAUSTED                         yes      idempotent only
``SERVER_ERROR``          INTERNAL, UNKNOWN, DATA_LOSS               yes      idempotent only
========================  =========================================  =======  =============

A business error says the provider looked at the request and refused it: another provider
would refuse it too, and the provider is healthy.
"""

from __future__ import annotations

import enum

import grpc

__all__ = ["Verdict", "classify", "counts_as_failure", "is_retryable"]


class Verdict(enum.Enum):
    OK = "ok"
    BUSINESS = "business"
    NOT_SENT = "not_sent"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"


_S = grpc.StatusCode
_BY_CODE: dict[grpc.StatusCode, Verdict] = {
    _S.OK: Verdict.OK,
    _S.CANCELLED: Verdict.BUSINESS,
    _S.UNKNOWN: Verdict.SERVER_ERROR,
    _S.INVALID_ARGUMENT: Verdict.BUSINESS,
    _S.DEADLINE_EXCEEDED: Verdict.TIMEOUT,
    _S.NOT_FOUND: Verdict.BUSINESS,
    _S.ALREADY_EXISTS: Verdict.BUSINESS,
    _S.PERMISSION_DENIED: Verdict.BUSINESS,
    _S.RESOURCE_EXHAUSTED: Verdict.OVERLOADED,
    _S.FAILED_PRECONDITION: Verdict.BUSINESS,
    _S.ABORTED: Verdict.BUSINESS,
    _S.OUT_OF_RANGE: Verdict.BUSINESS,
    _S.UNIMPLEMENTED: Verdict.BUSINESS,
    _S.INTERNAL: Verdict.SERVER_ERROR,
    _S.UNAVAILABLE: Verdict.UNAVAILABLE,
    _S.DATA_LOSS: Verdict.SERVER_ERROR,
    _S.UNAUTHENTICATED: Verdict.BUSINESS,
}

# Texts grpc core puts in UNAVAILABLE when no connection could be made, so the request never
# left this process. Matched case-insensitively against the status details.
_NOT_SENT_MARKERS = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "no route to host",
    "name resolution",
    "dns resolution failed",
    "channel closed",
    "connections to all backends failing",
)

_RETRY_IDEMPOTENT = frozenset(
    {Verdict.UNAVAILABLE, Verdict.TIMEOUT, Verdict.OVERLOADED, Verdict.SERVER_ERROR}
)


# A provider limit refused the call before its handler ran (see dubbok.server).
_REJECTED_MARKER = "rejected by provider limit: "


def classify(code: grpc.StatusCode, details: str | None = "") -> Verdict:
    """Map a finished attempt's status to its :class:`Verdict`."""
    verdict = _BY_CODE.get(code, Verdict.SERVER_ERROR)
    if verdict is Verdict.OVERLOADED and details and details.startswith(_REJECTED_MARKER):
        return Verdict.NOT_SENT
    if verdict is Verdict.UNAVAILABLE and details:
        lowered = details.lower()
        if any(marker in lowered for marker in _NOT_SENT_MARKERS):
            return Verdict.NOT_SENT
    return verdict


def is_retryable(verdict: Verdict, idempotent: bool) -> bool:
    """May another attempt be made after this one? Business errors: never."""
    if verdict is Verdict.NOT_SENT:
        return True
    return idempotent and verdict in _RETRY_IDEMPOTENT


def counts_as_failure(verdict: Verdict) -> bool:
    """Does this outcome count against breakers and health? Business errors do not."""
    # Every verdict but these two counts. (Identity tests: an Enum member's hash is
    # computed in Python, on every set lookup.)
    return verdict is not _OK and verdict is not _BUSINESS


_OK, _BUSINESS = Verdict.OK, Verdict.BUSINESS
