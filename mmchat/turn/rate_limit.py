"""How many questions one person may send in a minute (--max-turns-per-minute).

One model serves everyone, so one person (or one script) asking without pause would
make everyone else wait. Each answered turn — a new question, an answer again, an
edited question — takes one place in its sender's last minute; when the minute holds
the limit already, the turn is refused before it touches the conversation, with the
seconds until a place frees up.

Who counts as one sender is decided where the question comes in (`turn.UserInput.sender`):

- with --auth: the logged-in user, on the page and through the API alike;
- otherwise on the page: the page's one local owner (all tabs share one history, so
  they are one person to the server);
- otherwise through the API: the API key the request came with, else the client's
  address.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

WINDOW_SECONDS = 60.0
# Senders not heard from in a window hold no places; forgetting them keeps a server that
# sees many clients from growing a table of them.
FORGET_EVERY = 256
# The refusal's key: its entry in mmchat.i18n (the page's other languages), and how the
# HTTP API tells it from other refusals (a 429 with Retry-After).
TOO_FAST = "too_fast"


class TurnRateLimit:
    """A sliding one-minute window of turn times per sender; thread-safe."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._turns: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._takes = 0

    def take(self, sender: str) -> float | None:
        """Count one turn for `sender` and return None, or, when their minute is full,
        count nothing and return the seconds until a turn is allowed again."""
        if self.per_minute <= 0:  # 0: no limit
            return None
        now = self._clock()
        with self._lock:
            self._takes += 1
            if self._takes % FORGET_EVERY == 0:
                self._forget(now)
            times = self._turns.setdefault(sender, deque())
            while times and now - times[0] >= WINDOW_SECONDS:
                times.popleft()
            if len(times) >= self.per_minute:
                return max(WINDOW_SECONDS - (now - times[0]), 0.001)
            times.append(now)
            return None

    def _forget(self, now: float) -> None:
        for sender in [s for s, times in self._turns.items() if not times or now - times[-1] >= WINDOW_SECONDS]:
            del self._turns[sender]


def whole_seconds(wait: float) -> int:
    """`wait` rounded up: trying again after that many seconds works."""
    return max(1, int(-(-wait // 1)))


def too_fast_message(per_minute: int, seconds: int) -> str:
    return (f"You are sending questions faster than this server allows: {per_minute} a minute. "
            f"Try again in {seconds} second{'s' if seconds != 1 else ''}.")
