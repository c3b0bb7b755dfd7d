"""Voice mode's answers: each heard question is answered at once, on the server.

    answers = Answers(loop)                        # VoiceLoop makes its own: loop.answers
    answers.start(number, send)                    # the socket heard question `number` end
    with answers.watch() as watch:                 # the page's chat, while voice mode is on
        for events in watch.turns(): ...           # each spoken turn's events, in order

A turn runs on a thread of its own (`VoiceLoop.answer`, through the turn layer) and
hands every event to `send`, the socket the question came in on, which queues it and
never waits. Watchers (the page's chat view) get the same events through a bounded
queue each: a watcher that falls behind loses text deltas first (its view is rendered
from the conversation, so the next event catches it up) and is dropped if it still
falls further behind; either way the turn never waits for it. The audio goes to the
socket only: watchers get one empty AudioChunk per turn, enough to know it was spoken,
and the transcript (`Transcribed`) goes to the socket only, since the chat shows it with
the question.

A turn stops as every turn does, by the session's cancel scope (Stop, barge-in), and
also when its socket is gone (`stop`): `send` returning False closes the turn's event
stream, which ends the generation within a token.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from typing import Callable, Iterator

import numpy as np

from mmchat.events import AudioChunk, TextDelta, Transcribed, TurnEvent

log = logging.getLogger(__name__)

THREAD_NAME = "mmchat-voice-answer"
# A watcher may fall this many events behind before its text deltas are skipped, and
# twice as many before it is dropped.
WATCH_LIMIT = 256
# A watcher with no microphone feeding the loop for this long is watching a page that is
# gone (closed tab, lost socket) and stops; it gets this long to connect at first too.
IDLE_SECONDS = 10.0
_END = object()  # the end of one turn's events, in a watcher's queue

Send = Callable[[int, TurnEvent], bool]  # (turn number, event) -> still connected?


class TurnWatch:
    """One watcher's spoken turns: events in, from the turns' threads; turns out, in order."""

    def __init__(self, alive: Callable[[], bool], limit: int = WATCH_LIMIT, poll: float = 0.5) -> None:
        self._alive, self._limit, self._poll = alive, limit, poll
        self._items: deque[tuple[int, object]] = deque()
        self._changed = threading.Condition()
        self._finished: set[int] = set()  # turns whose events were all taken (or left)
        self._closing = False
        self.dropped = False  # fell too far behind

    def put(self, number: int, item: object) -> None:
        """Never waits: a full queue skips text deltas, and an overfull one drops the watcher."""
        with self._changed:
            if self.dropped or number in self._finished:
                return
            if len(self._items) >= 2 * self._limit:
                self.dropped = True
                self._items.clear()
            elif len(self._items) < self._limit or not isinstance(item, TextDelta):
                self._items.append((number, item))
            self._changed.notify_all()

    def end(self, number: int) -> None:
        """Turn `number` has no more events (its thread has ended)."""
        self.put(number, _END)

    def close(self) -> None:
        """Voice mode off: the turns begun are shown to their end, and no turn after them."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()

    def __enter__(self) -> "TurnWatch":
        return self

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._closing = self.dropped = True
            self._items.clear()

    def turns(self) -> Iterator[Iterator[TurnEvent]]:
        """Each turn's events, one turn after another (a turn that starts while another is
        still ending waits for it), until the watch is closed, dropped or its page gone."""
        while (number := self._take(None)) is not None:
            try:
                yield self._events_of(number)
            finally:
                with self._changed:
                    self._finished.add(number)
                    self._items = deque(item for item in self._items if item[0] != number)

    def _events_of(self, number: int) -> Iterator[TurnEvent]:
        while (item := self._take(number)) is not None and item is not _END:
            yield item

    def _take(self, number: int | None):
        """The next item of turn `number` (taken); None: the number of the oldest waiting
        turn (left in place). None when the watch ends."""
        with self._changed:
            while True:
                if self.dropped:
                    return None
                for index, (turn, item) in enumerate(self._items):
                    if turn in self._finished:
                        continue
                    if number is None:
                        return turn
                    if turn == number:
                        del self._items[index]
                        return item
                if (self._closing and number is None) or not self._alive():
                    return None
                self._changed.wait(self._poll)


class Answers:
    """One VoiceLoop's answers: started by its socket, watched by the page."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._watches: list[TurnWatch] = []
        self._running: dict[int, tuple[threading.Thread, object]] = {}  # number -> (its thread, whose)

    def start(self, number: int, send: Send, owner: object = None) -> threading.Thread:
        """Answer heard question `number` now, on a thread; `owner`: the socket, for `stop`."""
        thread = threading.Thread(target=self._run, args=(number, send), name=THREAD_NAME, daemon=True)
        with self._lock:
            self._running[number] = (thread, owner)
        thread.start()
        return thread

    def _run(self, number: int, send: Send) -> None:
        params, speech = self.loop.answer_with
        spoken = False
        try:
            heard = self.loop.answer(number, params, speech, on_transcript=lambda said: send(number, Transcribed(said)))
            with contextlib.closing(heard) as events:
                for event in events:
                    if not send(number, event):
                        break  # the socket is gone: closing the events ends the turn within a token
                    if isinstance(event, AudioChunk):
                        if spoken:
                            continue
                        spoken, event = True, AudioChunk(np.zeros(0, np.float32), event.sample_rate)
                    self._publish(number, event)
        except Exception:  # noqa: BLE001 - the turn layer says what went wrong in its events; this is a bug
            log.exception("voice: answering question %d failed", number)
        finally:
            self._publish(number, None)
            with self._lock:
                self._running.pop(number, None)

    def _publish(self, number: int, event: TurnEvent | None) -> None:
        """`event` to every watcher; None: the turn has ended."""
        with self._lock:
            self._watches = [watch for watch in self._watches if not watch.dropped]
            watches = list(self._watches)
        for watch in watches:
            if event is None:
                watch.end(number)
            else:
                watch.put(number, event)

    def watch(self) -> TurnWatch:
        """A new watcher of the turns started from now on (the page's chat view)."""
        started = time.monotonic()
        watch = TurnWatch(lambda: max(self.loop.fed_at, started) > time.monotonic() - IDLE_SECONDS)
        with self._lock:
            self._watches.append(watch)
        return watch

    def close_watches(self) -> None:
        """Voice mode off: every watcher ends after the turn it shows."""
        with self._lock:
            watches = list(self._watches)  # kept until they end: the turn they show goes on to its end
        for watch in watches:
            watch.close()

    def stop(self, owner: object) -> None:
        """`owner`'s socket is gone: stop the answer it asked for, if one is running."""
        with self._lock:
            mine = any(whose is owner and thread.is_alive() for thread, whose in self._running.values())
        if mine:
            self.loop.barge_in()

    def running(self) -> list[threading.Thread]:
        with self._lock:
            return [thread for thread, _ in self._running.values()]
