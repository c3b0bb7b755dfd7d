"""Transcribe a short turn at its first pause, before knowing whether the pause ends it.

The end of a turn is only known `end_of_turn_ms` into the silence (600 ms by default),
and Whisper then still has the question to read. But once the pause has lasted
`pause_ms`, the words are all there: the turn's audio up to the pause (with the
detector's post-roll) is exactly what its TurnEnded will carry if no more speech comes.
So it is transcribed then, on a thread, and by the end of the turn the transcript is
ready (or nearly). If the person goes on, the guess is dropped and the next pause makes
a new one. The same transcript answers the hold question ("and...", "um..."), which
would otherwise cost a Whisper call while the detector waits.

Long turns are left to StreamingTranscriber, which has most of them settled by then.
"""

from __future__ import annotations

import threading

import numpy as np

from mmchat.media.audio import SAMPLE_RATE
from mmchat.cancel import CancelToken
from mmchat.events import Transcript
from mmchat.stt import SpeechToText
from mmchat.voice.endpoint import FRAME, EndpointDetector, TurnEnded

FRAME_MS = FRAME * 1000 / SAMPLE_RATE


class Speculation:
    """One per microphone stream; `update` is called from the feeding thread after each feed."""

    def __init__(self, stt: SpeechToText, *, language: str | None = "en", beam_size: int = 5,
                 pause_ms: float = 150.0, max_seconds: float = 10.0) -> None:
        self._stt = stt
        self._language = language
        self._beam_size = beam_size
        self._pause_ms = pause_ms
        self._max_samples = int(max_seconds * SAMPLE_RATE)
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None  # (turn start, speech end) of the current guess
        self._done = threading.Event()
        self._result: Transcript | None = None
        self._cancel = CancelToken.standalone()

    def update(self, detector: EndpointDetector) -> None:
        """At a long enough pause in a short turn, start transcribing it (once per pause)."""
        if not detector.in_turn or detector.silence_ms < self._pause_ms:
            return
        key = _key(detector)
        audio = detector.turn_audio()
        if key == self._key or len(audio) > self._max_samples:
            return
        # What TurnEnded.audio will be: the speech and at most the post-roll of its silence
        # (whole frames, as the detector keeps them).
        post_roll = int(np.ceil(detector.settings.post_roll_ms / FRAME_MS)) * FRAME
        kept = key[1] - key[0] + min(detector.position - key[1], post_roll)
        self._start(key, audio[:kept])

    def _start(self, key: tuple[int, int], audio: np.ndarray) -> None:
        with self._lock:
            self._cancel.cancel()  # the person went on: the last guess is of no use
            self._key, self._result, self._done = key, None, threading.Event()
            self._cancel = cancel = CancelToken.standalone()
            done = self._done
        threading.Thread(target=self._transcribe, args=(audio, cancel, done, key), daemon=True,
                         name="mmchat-speculate").start()

    def _transcribe(self, audio: np.ndarray, cancel: CancelToken, done: threading.Event,
                    key: tuple[int, int]) -> None:
        try:
            result = self._stt.transcribe(audio, language=self._language, beam_size=self._beam_size, cancel=cancel)
        except Exception:  # noqa: BLE001 - a failed guess is no guess: the turn is transcribed as usual
            result = None
        with self._lock:
            if self._key == key and not cancel.cancelled:
                self._result = result
        done.set()

    def _wait(self, key: tuple[int, int]) -> Transcript | None:
        with self._lock:
            if key != self._key:
                return None
            done = self._done
        done.wait()
        with self._lock:
            return self._result if key == self._key else None

    def for_turn(self, turn: TurnEnded) -> Transcript | None:
        """The transcript of `turn` if the guess was of exactly its audio (waits for it)."""
        return self._wait((turn.start, turn.speech_end))

    def for_pause(self, detector: EndpointDetector) -> Transcript | None:
        """The transcript of the turn up to the current pause, if one was guessed (waits)."""
        return self._wait(_key(detector)) if detector.in_turn else None

    def drop(self) -> None:
        with self._lock:
            self._cancel.cancel()
            self._key, self._result = None, None


def _key(detector: EndpointDetector) -> tuple[int, int]:
    """(turn start, end of its speech) on the stream clock, as TurnEnded gives them."""
    silence = int(round(detector.silence_ms * SAMPLE_RATE / 1000))
    return detector.turn_start, detector.position - silence
