"""Transcribe while the person speaks, so at the end of the turn only the last stretch is left.

    stream = StreamingTranscriber(stt, language="en")
    for event in detector.feed(chunk, rate):
        if isinstance(event, TurnEnded):
            transcript = stream.finish(event, cancel)   # a Transcript, as if done whole
    stream.update(detector)                    # after every feed: settles what it can

At a pause inside the turn (the VAD's silence, shorter than the end of turn), the audio
up to the middle of the pause is settled: no word crosses it, so Whisper can have it
now, in a background thread, while the person goes on. `finish` then transcribes only
what came after the last cut and joins the pieces.
"""

from __future__ import annotations

import threading

import numpy as np

from mmchat.media.audio import SAMPLE_RATE
from mmchat.cancel import CancelToken
from mmchat.events import Transcript
from mmchat.stt import SpeechToText, check_beam_size
from mmchat.voice.endpoint import EndpointDetector, TurnEnded


# bench/stt_short.py, tiny.en int8 on 2 cores: beam 5 got 8% of the words of short
# spoken questions wrong where greedy got 12% ("What am I holding?" only at beam 5),
# for about 0.1 s more per call (0.78 against 0.68 s). The remainder is what the person
# waits on, but a misheard question costs them more than that.
FINAL_BEAM = 5


class StreamingTranscriber:
    """One per microphone stream; `update` and `finish` are called from the feeding thread."""

    def __init__(self, stt: SpeechToText, *, language: str | None = "en", pause_ms: float = 250.0,
                 min_piece_seconds: float = 3.0, piece_beam_size: int = 5, final_beam_size: int = FINAL_BEAM) -> None:
        self._stt = stt
        self._language = language
        self._pause_ms = pause_ms
        # Pieces are done while the person speaks, so their beam costs no waiting as long
        # as each ends before the next pause; the remainder is waited on (bench/stt_short.py).
        self._piece_beam, self._final_beam = check_beam_size(piece_beam_size), check_beam_size(final_beam_size)
        # Whisper reads short pieces worse (less context) and each call has a fixed cost.
        self._min_piece = int(min_piece_seconds * SAMPLE_RATE)
        self._start_turn()

    def _start_turn(self, turn_start: int | None = None) -> None:
        self._turn_start = turn_start
        self._cut = 0  # samples of the turn's audio handed to the background so far
        # Each turn's own list, handed to its worker: a stale worker of an abandoned turn
        # can only ever write into its own: (offset in the turn, Transcript or None if it failed).
        self._texts: list[tuple[int, Transcript | None]] = []
        self._worker: threading.Thread | None = None
        self._cancel = CancelToken.standalone()
        self.remainder_samples = 0  # what `finish` had left to do, for tests and the timing panel

    def update(self, detector: EndpointDetector) -> None:
        """Settle the turn up to the middle of the current pause, if it is long enough."""
        if detector.turn_start != self._turn_start and detector.in_turn:
            self.abandon()  # a turn that ended without `finish` (a false start) left its pieces
            self._start_turn(detector.turn_start)
        if not detector.in_turn or detector.silence_ms < self._pause_ms:
            return
        audio = detector.turn_audio()
        cut = len(audio) - int(detector.silence_ms / 2 * SAMPLE_RATE / 1000)
        if cut - self._cut < self._min_piece:
            return
        piece, self._cut = audio[self._cut : cut], cut
        # Pieces are cut by stream time alone, whether or not Whisper is still on the last
        # one; each waits for the one before, so one Whisper call runs at a time, in order.
        self._worker = threading.Thread(target=self._transcribe, daemon=True, name="mmchat-stream-stt",
                                        args=(piece, self._cut - len(piece), self._cancel, self._texts, self._worker))
        self._worker.start()

    def _transcribe(self, piece: np.ndarray, offset: int, cancel: CancelToken,
                    texts: list[tuple[int, Transcript | None]], before: threading.Thread | None) -> None:
        if before is not None:
            before.join()
        try:
            texts.append((offset, self._stt.transcribe(piece, language=self._language, cancel=cancel,
                                                       beam_size=self._piece_beam)))
        except Exception:  # noqa: BLE001 - `finish` redoes the whole turn rather than lose a piece
            texts.append((offset, None))

    def finish(self, turn: TurnEnded, cancel: CancelToken | None = None) -> Transcript:
        """The whole turn's Transcript: the settled pieces and the remainder, in order.

        Its text and segments read as one transcription of `turn.audio` would (segment
        times on the turn's clock); a cancelled `cancel` gives what was done by then.
        """
        cancel = cancel or CancelToken.standalone()
        try:
            if self._worker is not None:
                if cancel.cancelled:
                    self._cancel.cancel()
                self._worker.join()  # the last piece's thread ends after all the others
            pieces = list(self._texts)
            if any(t is None for _, t in pieces) or turn.start != self._turn_start:
                pieces, self._cut = [], 0  # nothing usable settled for this very turn: do it all
            rest = turn.audio[self._cut :]
            self.remainder_samples = len(rest)
            if len(rest) and not cancel.cancelled:
                pieces.append((self._cut, self._stt.transcribe(rest, language=self._language, cancel=cancel,
                                                               beam_size=self._final_beam)))
            return _joined(pieces, len(turn.audio))
        finally:
            remainder = self.remainder_samples
            self._start_turn()
            self.remainder_samples = remainder

    def wait_settled(self) -> None:
        """Block until the background pieces so far are transcribed (benchmarks pacing a stream)."""
        if self._worker is not None:
            self._worker.join()

    def abandon(self) -> None:
        """The turn was dropped (reset, barge-in of the other kind): stop its background work."""
        self._cancel.cancel()
        self._start_turn()


def _joined(pieces: list[tuple[int, Transcript]], samples: int) -> Transcript:
    heard = [(offset, t) for offset, t in pieces if t.text]
    language = next((t.language for _, t in pieces if t.language), None)
    if not heard:
        return Transcript(text="", language=language, duration=samples / SAMPLE_RATE, no_speech_prob=1.0)
    return Transcript(
        # Pieces end at pauses, so they are whole words: a space between them is right for
        # English (a Chinese turn gets a space at each pause, which it can bear).
        text=" ".join(t.text.strip() for _, t in heard),
        language=language,
        duration=samples / SAMPLE_RATE,
        no_speech_prob=sum(t.no_speech_prob for _, t in heard) / len(heard),
        segments=tuple(
            (offset / SAMPLE_RATE + start, offset / SAMPLE_RATE + end, text)
            for offset, t in heard for start, end, text in t.segments
        ),
    )
