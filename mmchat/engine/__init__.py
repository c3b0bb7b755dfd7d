"""Engines turn a conversation (OpenAI chat messages) into a stream of answer text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

from ..cancel import CancelToken


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 512
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9


class Engine(Protocol):
    name: str

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt length of `messages` in the model's tokens (photos included)."""
        ...

    def stream(self, messages: list[dict], params: GenerationParams, cancel: CancelToken) -> Iterator[str]:
        """Yield the answer to `messages` piece by piece.

        Stops within one token once `cancel` is cancelled or the caller closes the
        iterator; either way, no work is left running when the iterator is done.
        """
        ...
