"""Typed events that a turn yields to its consumers (chat UI, voice loop, HTTP API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

import numpy as np

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Completion:
    """How an answer ended: the last item of `Engine.stream`."""

    finish_reason: FinishReason  # stop: the model ended it; length: max_new_tokens; cancelled: Stop
    prompt_tokens: int  # what the model read (the fitted history, photos included)
    completion_tokens: int  # what it wrote
    first_token_seconds: float | None = None  # from the call to the answer's first token; None: no token


@dataclass(frozen=True)
class Transcript:
    """What speech-to-text heard."""

    text: str
    language: str | None
    duration: float  # seconds of audio
    no_speech_prob: float = 0.0
    segments: tuple[tuple[float, float, str], ...] = ()  # (start s, end s, text)


@dataclass(frozen=True)
class AudioChunk:
    """A piece of synthesized speech, normally one sentence."""

    samples: np.ndarray  # [N] float32 in -1..1, mono
    sample_rate: int
    text: str = ""  # the text this audio speaks

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass(frozen=True)
class InputRejected:
    """The user's input was refused; the conversation is unchanged."""

    message: str
    key: str | None = None  # its entry in mmchat.i18n (see errors.UserFacingError)
    values: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, error) -> "InputRejected":
        """The refusal an errors.UserFacingError stands for."""
        return cls(error.message, getattr(error, "key", None), tuple(getattr(error, "values", {}).items()))

    def message_in(self, language: str | None) -> str:
        from .i18n import translated

        return translated(self.message, self.key, language, dict(self.values))


@dataclass(frozen=True)
class QuestionAdded:
    """The user's question passed every check and is now part of the conversation."""


@dataclass(frozen=True)
class Transcribed:
    """Speech became the user's text (shown before the answer starts)."""

    transcript: Transcript


@dataclass(frozen=True)
class Progress:
    """Long work under way (transcribing a long recording...)."""

    message: str
    fraction: float  # 0..1


@dataclass(frozen=True)
class Queued:
    """The answer waits for a place: `ahead` answers go first (repeated as it changes)."""

    ahead: int


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not part of the answer."""

    message: str


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class TurnDone:
    """The assistant turn has ended; `status` says how."""

    status: Literal["complete", "interrupted", "error"]
    text: str
    error: str | None = None
    completion: Optional[Completion] = None  # the engine's account (tokens, finish reason); None if none ran
    timings: dict[str, float] = field(default_factory=dict)  # the reply's stages (Turn.timings)


TurnEvent = Union[
    InputRejected, QuestionAdded, Progress, Transcribed, Queued, Notice, TextDelta, AudioChunk, TurnDone
]
