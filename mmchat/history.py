"""Keep the conversation sent to the model within a token budget.

Whole turns are dropped, oldest first: a question is never separated from its answer,
and the latest question (with its photos) is never dropped. When photos leave the
context the caller is told, so it can say so to the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class FittedHistory:
    messages: list[dict]
    tokens: int
    dropped_turns: int = 0  # whole exchanges (a question and its answer)
    dropped_images: int = 0

    @property
    def notice(self) -> str | None:
        if not self.dropped_turns:
            return None
        photos = ""
        if self.dropped_images:
            photos = f", including {self.dropped_images} photo{'s' if self.dropped_images > 1 else ''}"
        plural = "s" if self.dropped_turns > 1 else ""
        return (
            f"The conversation is long: the {self.dropped_turns} oldest question{plural} and "
            f"answer{plural}{photos} no longer fit in the model's context "
            "and were left out of this answer. Start a new chat, or send the photo again, "
            "if the answer needs them."
        )


class HistoryTooLong(ValueError):
    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(
            f"This message needs {tokens} tokens on its own, more than the budget of {budget}. "
            "Send fewer or smaller photos, or a shorter message."
        )
        self.tokens = tokens
        self.budget = budget


def fit_history(messages: list[dict], count_tokens: Callable[[list[dict]], int], budget: int) -> FittedHistory:
    """Drop the oldest whole exchanges until `count_tokens(messages) <= budget`.

    `messages` is in the OpenAI chat format, optionally starting with a system message,
    and ends with the user message being answered.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    # Exchanges start at each user message, so dropping one never splits question and answer.
    starts = [i for i, m in enumerate(turns) if m["role"] == "user"]
    dropped_images = 0
    for kept_from_index, start in enumerate(starts):
        candidate = system + turns[start:]
        tokens = count_tokens(candidate)
        if tokens <= budget:
            return FittedHistory(candidate, tokens, kept_from_index, dropped_images)
        next_start = starts[kept_from_index + 1] if kept_from_index + 1 < len(starts) else len(turns)
        dropped_images += sum(_image_count(m) for m in turns[start:next_start])
    raise HistoryTooLong(tokens, budget)


def _image_count(message: dict) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return 0
    return sum(1 for item in content or [] if item.get("type") in ("image_url", "image"))
