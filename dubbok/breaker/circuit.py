"""A thin adapter that drives :class:`pybreaker.CircuitBreaker` without ever calling through it.

pybreaker's ``call()`` and ``calling()`` hold the breaker's lock for the whole wrapped call,
which serialises every RPC through one breaker, and its open→half-open step reads the wall
clock inside ``call()``. So dubbok uses pybreaker only as the state holder: its state objects,
its memory storage (consecutive failure and half-open success counters), its ``fail_max`` /
``success_threshold`` settings and its listener hook. The callers (:mod:`.method`,
:mod:`.instance`) ask :attr:`Circuit.state` before an attempt, record the outcome after it,
and decide when to half-open from their own injected clock.

A :class:`Circuit` is not thread-safe by itself: its owner calls the mutating methods under
its own short lock. :attr:`Circuit.state` is a plain attribute, safe to read without a lock.
"""

from __future__ import annotations

import sys

import pybreaker

from .events import BreakerState

__all__ = ["Circuit"]

_STATES = {state.value: state for state in BreakerState}


class _Mirror(pybreaker.CircuitBreakerListener):
    """Keeps :attr:`Circuit.state` equal to pybreaker's state and queues each change."""

    def __init__(self, circuit: Circuit) -> None:
        self._circuit = circuit

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        new = _STATES[new_state.name]
        old = _STATES[old_state.name] if old_state is not None else BreakerState.CLOSED
        self._circuit.state = new
        self._circuit.changes.append((old, new))


class Circuit:
    """State, counters and transitions of one breaker, kept by pybreaker.

    ``fail_max`` is the number of consecutive failures that :meth:`failure` reports as
    reached (``None``: never); ``success_threshold`` the number of half-open successes that
    :meth:`probe_succeeded` reports as enough to close.
    """

    __slots__ = ("_cb", "_storage", "changes", "state")

    def __init__(self, name: str, *, fail_max: int | None, success_threshold: int) -> None:
        self.state = BreakerState.CLOSED
        self.changes: list[tuple[BreakerState, BreakerState]] = []
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._cb = pybreaker.CircuitBreaker(
            name=name,
            state_storage=self._storage,
            listeners=[_Mirror(self)],
            throw_new_error_on_trip=False,
        )
        self.configure(fail_max=fail_max, success_threshold=success_threshold)

    def configure(self, *, fail_max: int | None, success_threshold: int) -> None:
        # pybreaker wants an int; "never trip on a streak" is a streak nobody can reach.
        self._cb.fail_max = sys.maxsize if fail_max is None else fail_max
        self._cb.success_threshold = success_threshold

    @property
    def failures(self) -> int:
        """Consecutive counted failures since the last success (closed state)."""
        return int(self._storage.counter)

    @property
    def successes(self) -> int:
        """Successful probes since the circuit half-opened."""
        return int(self._storage.success_counter)

    @property
    def fail_max(self) -> int:
        return int(self._cb.fail_max)

    def failure(self) -> bool:
        """Count one failure; true once the consecutive-failure threshold is reached."""
        self._storage.increment_counter()
        return bool(self._storage.counter >= self._cb.fail_max)

    def success(self) -> None:
        """A call that did not fail: the failure streak ends."""
        self._storage.reset_counter()

    def probe_succeeded(self) -> bool:
        """Count one successful half-open probe; true once enough have succeeded to close."""
        self._storage.increment_success_counter()
        return bool(self._storage.success_counter >= self._cb.success_threshold)

    def open(self) -> None:
        self._cb.open()

    def half_open(self) -> None:
        self._cb.half_open()

    def close(self) -> None:
        # pybreaker's closed state resets the failure counter when it is entered.
        self._cb.close()

    def take_changes(self) -> list[tuple[BreakerState, BreakerState]]:
        """The transitions since the last call, oldest first."""
        changes, self.changes = self.changes, []
        return changes
