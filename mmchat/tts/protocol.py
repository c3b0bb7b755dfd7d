"""What the turn loop needs from a text-to-speech backend."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from mmchat.cancel import CancelToken
from mmchat.events import AudioChunk


class TextToSpeech(Protocol):
    sample_rate: int  # of every chunk this voice yields

    def stream(self, sentences: Iterable[str], cancel: CancelToken) -> Iterator[AudioChunk]:
        """Speak sentences as they come: at most one chunk per sentence, in order.

        `sentences` is pulled lazily, so the first sentence is spoken while the model
        still writes the second. Once `cancel` reads cancelled, nothing more is pulled
        or yielded.
        """
        ...


def speak_each(
    sentences: Iterable[str],
    cancel: CancelToken,
    synthesize: Callable[[str], np.ndarray],
    sample_rate: int,
) -> Iterator[AudioChunk]:
    """The loop every backend shares: pull a sentence, synthesize it, yield it.

    Cancel is checked before each pull (pulling may wait on the model), and again after
    synthesis, so nothing is yielded once the turn is cancelled.
    """
    pending = iter(sentences)
    while not cancel.cancelled:
        sentence = next(pending, None)
        if sentence is None or cancel.cancelled:
            return
        if not sentence.strip():
            continue
        samples = synthesize(sentence)
        if cancel.cancelled:
            return
        if samples.size:
            yield AudioChunk(samples, sample_rate, sentence)
