"""Don't cut people off mid-thought: wait longer when the turn so far ends in "and", "um"...

An `EndpointDetector(hold=TrailingWordHold(stt))` asks this at a pause that would end
the turn; a quick transcript of the last few seconds decides. A word that promises
more ("and", "but", "because") or a filler ("um", "uh") is a pause for thought, and so
is Whisper's own trailing "...", which it writes for speech that trails off.
"""

from __future__ import annotations

import re

import numpy as np

from mmchat.media.audio import SAMPLE_RATE
from mmchat.stt import SpeechToText, check_beam_size

TRAILING_WORDS = frozenset({
    "and", "or", "but", "so", "because", "if", "then", "um", "uh", "uhm", "er", "erm", "hmm", "like",
    "with", "the", "a", "an", "of", "to", "my",
})
# Chinese has no spaces to split words on; these end a clause that goes on.
TRAILING_ZH = ("和", "还有", "然后", "但是", "因为", "所以", "那个", "就是", "嗯", "呃")


class TrailingWordHold:
    """A hold callback for EndpointDetector, on a quick transcript of the turn's tail.

    The transcription runs inside `feed`, once per pause that reached end_of_turn_ms,
    on `tail_seconds` of audio at most (Whisper tiny.en, greedy: about 0.7 s on a
    shared 2-core CPU); the detector catches up on the chunks that queued meanwhile.
    """

    def __init__(self, stt: SpeechToText, *, language: str | None = "en", tail_seconds: float = 4.0,
                 words: frozenset[str] = TRAILING_WORDS, beam_size: int = 1) -> None:
        self._stt = stt
        self._language = language
        self._tail = int(tail_seconds * SAMPLE_RATE)
        self._words = words
        # Greedy: the detector waits on this call, and only the last word counts; a beam
        # of 5 costs more on every pause for a better guess at words further back
        # (bench/stt_short.py).
        self._beam_size = check_beam_size(beam_size)
        self.last_text = ""  # what the last question heard, for logs and tests

    def __call__(self, audio: np.ndarray) -> bool:
        self.last_text = self._stt.transcribe(
            audio[-self._tail :], language=self._language, beam_size=self._beam_size
        ).text.strip()
        return ends_mid_thought(self.last_text, self._words)


def ends_mid_thought(text: str, words: frozenset[str] = TRAILING_WORDS) -> bool:
    """True when `text` (a partial transcript) sounds unfinished."""
    text = text.strip()
    if text.endswith(("...", "…")) or text.endswith(TRAILING_ZH):
        return True
    tokens = re.findall(r"[\w']+", text.lower())
    return bool(tokens) and tokens[-1] in words
