"""Speech cut into stretches that may each be in a language of their own.

Whisper detects the language once per 30 s window and decodes the whole window in
it, so a recording that switches from English to German inside one window comes out
with the German turned into invented English. A person who switches language almost
always pauses first, so when the language is detected, both backends cut the speech
at pauses and let Whisper detect the language of each stretch.

Plain functions on sample ranges (no torch, no model), so the faster-whisper backend
can use them without the silero-vad package.
"""

from __future__ import annotations

from typing import Sequence

# The VAD pads each speech region by this much and gives a shorter pause half to
# each side, so two regions touch exactly when the pause between them was shorter
# than twice the padding (0.8 s): such a pause is inside a sentence, not between two.
SPEECH_PAD_MS = 400
# Whisper's language guess on a second or two of speech is often wrong, and a wrong
# language turns speech into a translation or into nonsense: a stretch this short is
# decoded with its neighbour instead, as the speech around it is the better guide.
MIN_STRETCH_SECONDS = 2.5
MAX_STRETCH_SECONDS = 30.0  # Whisper's window: one encoder pass


def language_stretches(regions: Sequence[tuple[int, int]], sample_rate: int) -> list[tuple[int, int]]:
    """Padded VAD speech regions [start, end) in samples -> the stretches to detect and
    decode one by one: regions that touch are joined (up to `MAX_STRETCH_SECONDS`),
    and a stretch shorter than `MIN_STRETCH_SECONDS` joins the one before it (or,
    first, the one after it), with the pause between them, when the two fit in a window.
    """
    longest, shortest = MAX_STRETCH_SECONDS * sample_rate, MIN_STRETCH_SECONDS * sample_rate
    stretches: list[tuple[int, int]] = []
    for start, end in regions:
        if stretches and start <= stretches[-1][1] and end - stretches[-1][0] <= longest:
            stretches[-1] = (stretches[-1][0], end)
        else:
            stretches.append((start, end))

    def short(stretch: tuple[int, int]) -> bool:
        return stretch[1] - stretch[0] < shortest

    merged: list[tuple[int, int]] = []
    for stretch in stretches:
        if merged and (short(stretch) or short(merged[-1])) and stretch[1] - merged[-1][0] <= longest:
            merged[-1] = (merged[-1][0], stretch[1])
        else:
            merged.append(stretch)
    return merged


def unpadded(start: int, end: int, sample_rate: int) -> tuple[int, int]:
    """The stretch [start, end) less the VAD's padding at each end, to detect its
    language on: Whisper's guess is easily thrown by silence before the speech
    (espeak-ng's German with 0.4 s of it in front reads as Thai, without it as German)."""
    pad = min(SPEECH_PAD_MS * sample_rate // 1000, (end - start) // 4)
    return start + pad, end - pad
