"""One admission point for every front end: a bounded number of answers at once.

The page, the voice mode and the HTTP API all run their answers through the same
`Admission`, so `--concurrency` holds whichever way a question arrives. Answers
beyond the limit wait in one first-come, first-served line and are told their place
in it; a waiting answer that is stopped (Stop, a new question, a closed tab) leaves
the line at once and never starts.

    slot = yield from admission.enter(cancel)   # yields Queued(ahead) while waiting
    if slot is None: ...                        # cancelled before its turn came
    with slot: ...generate...
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Iterator

from ..cancel import CancelToken
from ..events import Queued

# How often a waiting answer looks at its cancel token. A place freeing up wakes it
# at once; this only bounds how long a Stop of a waiting answer takes to be seen.
POLL_SECONDS = 0.1


class Slot:
    """A place among the answers being generated; give it back with `release()`."""

    def __init__(self, admission: "Admission") -> None:
        self._admission = admission
        self._released = False

    def release(self) -> None:
        if not self._released:  # idempotent: finally blocks may call it twice
            self._released = True
            self._admission._release()

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Admission:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one answer must be allowed at a time")
        self.limit = limit
        self._running = 0
        self._line: deque[object] = deque()  # tickets of waiting answers, first come first
        self._changed = threading.Condition()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._line)

    def enter(self, cancel: CancelToken) -> Iterator[Queued]:
        """Wait for a place (a generator: yields Queued whenever the place in line
        changes); returns the Slot, or None if `cancel` was cancelled first."""
        ticket = object()
        with self._changed:
            self._line.append(ticket)
        try:
            told = None
            while True:
                with self._changed:
                    if cancel.cancelled:
                        return None
                    ahead = self._ahead(ticket)
                    if ahead == 0:
                        self._line.remove(ticket)
                        self._running += 1
                        return Slot(self)
                    if ahead == told:
                        self._changed.wait(POLL_SECONDS)
                        continue
                told = ahead
                yield Queued(ahead)  # outside the lock: the consumer may take its time
        finally:
            with self._changed:
                if ticket in self._line:  # cancelled, or the consumer left while waiting
                    self._line.remove(ticket)
                    self._changed.notify_all()  # those behind move up

    def _ahead(self, ticket: object) -> int:
        """How many answers must start or finish before this one can start (0: now)."""
        before = self._line.index(ticket)
        free = self.limit - self._running
        return 0 if before < free else before - free + 1

    def _release(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()
