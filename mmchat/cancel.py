"""Cancellation by generation number.

A session owns one `CancelScope`. Starting a turn (or pressing Stop, or barging in)
bumps the scope's generation; every `CancelToken` handed out for an older generation
reads as cancelled from then on. Nothing has to be reset, so a stale worker of an old
turn can never be revived by a new one.
"""

from __future__ import annotations

import threading


class CancelScope:
    def __init__(self) -> None:
        self._generation = 0
        self._lock = threading.Lock()

    def new_token(self) -> "CancelToken":
        """Cancel whatever runs now and return the token for the next piece of work."""
        with self._lock:
            self._generation += 1
            return CancelToken(self, self._generation)

    def cancel(self) -> None:
        """Cancel the current work (Stop button, barge-in, closed tab)."""
        with self._lock:
            self._generation += 1

    def is_stale(self, generation: int) -> bool:
        return generation != self._generation


class CancelToken:
    """What a worker checks; cheap enough to read once per generated token."""

    def __init__(self, scope: CancelScope, generation: int) -> None:
        self._scope = scope
        self._generation = generation

    @classmethod
    def standalone(cls) -> "CancelToken":
        """A token with a scope of its own (scripts, tests, one-off work)."""
        return CancelScope().new_token()

    @property
    def cancelled(self) -> bool:
        return self._scope.is_stale(self._generation)

    def cancel(self) -> None:
        """Cancel this token's work (and anything else of its generation)."""
        if not self.cancelled:
            self._scope.cancel()
