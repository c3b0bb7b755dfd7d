"""Speech on its own thread, so the text of an answer never waits for its voice.

    speaker = SpeechWorker(voice, token, emit=events.put)   # starts "mmchat-speak"
    for delta in engine.stream(...):
        speaker.feed(delta)                                   # a queue put: never blocks
        ...                                                   # show the text at once
    speaker.finish()                                          # speak what is left
    speaker.join(timeout)                                     # all of it spoken?
    speaker.close()                                           # in `finally`: stop now

The worker pulls the text as it arrives, cuts it into sentences (SpeakableSentences)
and hands them to the voice lazily, so each sentence is synthesized as soon as it is
complete and its audio goes to `emit` as soon as it exists.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Iterator

from mmchat.cancel import CancelToken
from mmchat.events import AudioChunk
from mmchat.tts.protocol import TextToSpeech
from mmchat.tts.speakable import SpeakableSentences
from mmchat.tts.splitter import FIRST_CLAUSE_CHARS, SentenceSplitter

log = logging.getLogger(__name__)

THREAD_NAME = "mmchat-speak"
# How often a worker waiting for text looks at the turn's token: the token cannot
# wake a waiting thread, so a Stop is noticed within this long even with no text coming.
_POLL_SECONDS = 0.05
_END = object()  # put by finish(): no more text
_WAKE = object()  # put by close(): look at the stop flag now


class _StopToken(CancelToken):
    """Cancelled once the turn is cancelled or the worker is closed: what the voice sees,
    so a close() stops a synthesis between its parts as a Stop does."""

    def __init__(self, turn: CancelToken) -> None:
        self._turn = turn
        self._closed = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._closed.is_set() or self._turn.cancelled

    def cancel(self) -> None:
        self._closed.set()


class SpeechWorker:
    """Speaks a streamed answer on its own thread, named "mmchat-speak".

    `emit(chunk)` is called on that thread with each sentence's AudioChunk, in
    sentence order, as soon as it is synthesized; it must not block for long (put it
    in a queue). Once `cancel` reads cancelled, or `close()` was called, nothing more
    is emitted, nothing more is pulled, and the thread ends within one sentence's
    synthesis.

    Failures: if the voice (or `emit`) raises, the worker logs it, keeps the exception
    in `error`, drops any further text and ends; `join` then returns True like a
    finished worker, so a failing voice never hangs the turn. Nothing is raised into
    the text path (the answer goes on without speech): check `error` after `join`
    (None: no failure).

    The answer's first clause is spoken as soon as it is written, when it is at least
    `first_clause_chars` long: the person waits for the first audio, not for the rest
    (see SentenceSplitter; None: cut the first sentence only once it is seen to be long).
    """

    def __init__(
        self,
        voice: TextToSpeech,
        cancel: CancelToken,
        emit: Callable[[AudioChunk], None],
        *,
        first_clause_chars: int | None = FIRST_CLAUSE_CHARS,
    ) -> None:
        self._voice = voice
        self._first_clause_chars = first_clause_chars
        self._emit = emit
        self._stop = _StopToken(cancel)
        # Unbounded and lock-free for the producer: feed() must cost the text path nothing.
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._finished = False  # finish() was called
        self._over = False  # the thread is done pulling: later text would only pile up
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def feed(self, delta: str) -> None:
        """Text as the model writes it. Never blocks; dropped once speech has stopped
        (cancelled, closed or failed). Raises RuntimeError after `finish()`."""
        if self._finished:
            raise RuntimeError("SpeechWorker.feed() after finish()")
        if delta and not self._over:
            self._inbox.put(delta)

    def finish(self) -> None:
        """No more text: speak what is left (the splitter's last, unfinished sentence too)."""
        if not self._finished:
            self._finished = True
            self._inbox.put(_END)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True once it has: all text fed before `finish()`
        is spoken, or speech stopped early (cancel, close, or a failure in `error`).
        False if `timeout` ran out first."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop now and wait for the thread: it ends within one sentence's synthesis.
        Safe to call more than once, after `join`, and after the turn was cancelled."""
        self._stop.cancel()
        self._inbox.put(_WAKE)
        # Called from inside emit(), the thread cannot wait for itself; it ends once emit returns.
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        try:
            for chunk in self._voice.stream(self._sentences(), self._stop):
                if self._stop.cancelled:
                    break
                self._emit(chunk)
        except Exception as exc:
            log.exception("speech failed; the answer goes on as text")
            self.error = exc
        finally:
            self._over = True

    def _sentences(self) -> Iterator[str]:
        """Speakable sentences, as soon as each is complete, from the text fed so far."""
        speakable = SpeakableSentences(SentenceSplitter(first_clause_chars=self._first_clause_chars))
        while not self._stop.cancelled:
            try:
                item = self._inbox.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            # Take everything already waiting: one split over the joined text gives the
            # same sentences (the splitter does not depend on how text is cut) for less work.
            text, ended = [], False
            while True:
                if item is _END:
                    ended = True
                    break
                if isinstance(item, str):
                    text.append(item)
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
            sentences = speakable.feed("".join(text)) if text else []
            if ended:
                sentences += speakable.flush()
            yield from sentences
            if ended:
                return
