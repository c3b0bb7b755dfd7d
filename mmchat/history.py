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

    Dropping exchanges only ever shortens the prompt, so the fewest to drop are found by
    bisection: a handful of counts however long the conversation, where counting every
    candidate from the oldest on cost a count per dropped exchange, each of the whole rest.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    # Exchanges start at each user message, so dropping one never splits question and answer.
    starts = [i for i, m in enumerate(turns) if m["role"] == "user"] or [0]
    counted: dict[int, int] = {}

    def tokens_without(dropped: int) -> int:
        if dropped not in counted:
            counted[dropped] = count_tokens(system + turns[starts[dropped]:])
        return counted[dropped]

    if tokens_without(0) > budget:
        last = len(starts) - 1
        if tokens_without(last) > budget:
            raise HistoryTooLong(tokens_without(last), budget)
        too_many_kept, enough_dropped = 0, last
        while enough_dropped - too_many_kept > 1:
            middle = (too_many_kept + enough_dropped) // 2
            if tokens_without(middle) <= budget:
                enough_dropped = middle
            else:
                too_many_kept = middle
        dropped = enough_dropped
    else:
        dropped = 0
    dropped_images = sum(_image_count(m) for m in turns[starts[0]:starts[dropped]])
    return FittedHistory(system + turns[starts[dropped]:], tokens_without(dropped), dropped, dropped_images)


def _image_count(message: dict) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return 0
    return sum(1 for item in content or [] if item.get("type") in ("image_url", "image"))
