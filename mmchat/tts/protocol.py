"""What the turn loop needs from a text-to-speech backend."""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

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
