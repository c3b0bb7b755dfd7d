"""From Whisper's decoded segments to a Transcript, without invented text.

Whisper was trained on subtitles, so on near-silence, noise or a fragment of a word
it tends to write stock lines ("Thank you.", "Thanks for watching!") or to repeat
itself. Voice activity detection keeps most silence away from it; the rules here
drop what still gets through, judged by Whisper's own confidence numbers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

from mmchat.events import Transcript

# Whisper's own rule skips a 30 s window only when no_speech_prob > 0.6 AND
# avg_logprob < -1.0. Sub-second fragments in silence slip past it at 0.55..0.8 and
# -0.9..-1.1 (measured with tiny.en), while short real words ("yes", "stop") score
# below 0.55 or above -0.8. A voice assistant is better off asking again than
# answering a question nobody asked, so the rule here is a little stricter.
NO_SPEECH_THRESHOLD = 0.5
LOGPROB_THRESHOLD = -0.8
# A segment whose own text compresses this well repeats itself: a decoding loop
# ("Defensive Defensive Defensive ..."). Whisper reports this ratio per 30 s window,
# which also flags a person who really says the same sentence twice, so it is
# measured here on each segment's text instead.
COMPRESSION_RATIO_THRESHOLD = 2.4


@dataclass(frozen=True)
class DecodedSegment:
    """One segment as any Whisper backend decoded it."""

    start: float  # seconds from the start of the audio
    end: float
    text: str
    no_speech_prob: float
    avg_logprob: float


def is_invented(segment: DecodedSegment) -> bool:
    """True when the segment is more likely Whisper's invention than what was said."""
    if not segment.text.strip():
        return True
    if _compression_ratio(segment.text) > COMPRESSION_RATIO_THRESHOLD:
        return True
    return segment.no_speech_prob > NO_SPEECH_THRESHOLD and segment.avg_logprob < LOGPROB_THRESHOLD


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def nothing_heard(language: str | None, duration: float) -> Transcript:
    return Transcript(text="", language=language, duration=duration, no_speech_prob=1.0)


def to_transcript(segments: Sequence[DecodedSegment], *, language: str | None, duration: float) -> Transcript:
    """Keep the believable segments; an empty text means nothing was heard."""
    kept = [s for s in segments if not is_invented(s)]
    if not kept:
        return nothing_heard(language, duration)
    return Transcript(
        # Whisper puts the spaces that belong between segments at their start
        # (" ask what"), and none in Chinese, so joining with "" is right for both.
        text="".join(s.text for s in kept).strip(),
        language=language,
        duration=duration,
        no_speech_prob=sum(s.no_speech_prob for s in kept) / len(kept),
        segments=tuple((s.start, s.end, s.text.strip()) for s in kept),
    )
