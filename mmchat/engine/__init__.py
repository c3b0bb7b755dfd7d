"""Engines turn a conversation (OpenAI chat messages) into a stream of answer text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Union

from ..cancel import CancelToken
from ..events import Completion, FinishReason  # what an answer ends with: vocabulary every layer reads

__all__ = ["Completion", "Engine", "FinishReason", "GenerationParams", "part_urls"]


def part_urls(messages: list[dict], kind: str) -> list[str]:
    """The URLs of every `kind` part ("image_url", "video_url") of OpenAI chat messages, in order."""
    return [item[kind]["url"] for message in messages if not isinstance(message["content"], str)
            for item in message["content"] if item.get("type") == kind]


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 512
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9
    # Repeatable sampling. The local engine seeds the process's random generator, so an
    # answer sampled beside another (--concurrency > 1) may still differ.
    seed: int | None = None


class Engine(Protocol):
    name: str

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt length of `messages` in the model's tokens (photos included)."""
        ...

    def stream(self, messages: list[dict], params: GenerationParams,
               cancel: CancelToken) -> Iterator[Union[str, Completion]]:
        """Yield the answer to `messages` piece by piece (str), then one `Completion`; on the
        way, a `Notice` for the user when the engine had to change how it asks (a remote
        server that refuses video clips is sent their frames instead).

        The Completion is the last item, also after a Stop (finish_reason "cancelled").
        Stops within one token once `cancel` is cancelled or the caller closes the
        iterator; either way, no work is left running when the iterator is done.
        """
        ...
