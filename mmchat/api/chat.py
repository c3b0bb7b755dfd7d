"""One chat completion as a turn: through `turn.submit`, the page's checks and its one admission line.

Each request gets a ChatSession of its own, holding the conversation the client sent;
nothing is saved and nothing written to disk: the session's store is a `MemoryStore`,
and the request's photos are held in memory while the turn holds them (`ChatInput.photos`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator, Union

from ..engine import Completion, GenerationParams
from ..events import InputRejected, Queued, TextDelta, TurnDone
from ..turn.rate_limit import TOO_FAST
from ..store import MemoryStore
from ..turn.session import ChatSession
from ..turn import OUT_OF_MEMORY, Services, submit
from .errors import ApiError
from .messages import ChatInput


@dataclass(frozen=True)
class Waiting:
    """The answer waits for a place in the admission line."""

    ahead: int


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int

    @property
    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


class EngineFailed(Exception):
    """The model failed while answering (not the client's fault: a 500, or an error in the stream)."""


Item = Union[Waiting, str, Finished]


class StopScanner:
    """Cuts the answer before the first stop sequence. Text that could be the start of
    one is held back until it is clear, so a client never sees part of a stop sequence."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hit = False
        self._pending = ""

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        if not self.stops:
            return text
        self._pending += text
        found = [i for i in (self._pending.find(stop) for stop in self.stops) if i >= 0]
        if found:
            self.hit = True
            out, self._pending = self._pending[:min(found)], ""
            return out
        keep = 0
        for size in range(min(len(self._pending), max(map(len, self.stops)) - 1), 0, -1):
            if any(stop.startswith(self._pending[-size:]) for stop in self.stops):
                keep = size
                break
        out, self._pending = self._pending[:len(self._pending) - keep], self._pending[len(self._pending) - keep:]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


class ApiTurn:
    """A request's turn: `items()` runs it (blocking, for a thread of its own);
    `cancel()`, from any thread, ends it wherever it is (in line, generating)."""

    def __init__(self, services: Services, chat: ChatInput, params: GenerationParams, stops: list[str]) -> None:
        config = services.config
        if chat.system_prompt is not None:
            config = dataclasses.replace(config, system_prompt=chat.system_prompt)
        # The shared model and the shared line, and speech recognition for the sound of a
        # clip; speech out stays with its own endpoint.
        self.services = Services(config=config, engine=services.engine, stt=services.stt,
                                 admission=services.admission,
                                 turn_limit=services.turn_limit)  # and each sender's questions a minute
        self.session = ChatSession(MemoryStore(), conversation=chat.history)
        self.photos = chat.photos  # held while the turn runs: its parts name them by memory:// URLs
        self.question = chat.question
        self.params = params
        self.scanner = StopScanner(stops)

    def cancel(self) -> None:
        self.session.cancel_scope.cancel()

    def items(self) -> Iterator[Item]:
        """Waiting while in line, the answer's text piece by piece, then one Finished.

        Raises ApiError when the question is refused (nothing was answered yet), and
        EngineFailed when the model fails.
        """
        scanner, pieces = self.scanner, 0
        with contextlib.closing(submit(self.session, self.question, self.services, self.params)) as events:
            for event in events:
                if isinstance(event, InputRejected):
                    if event.key == TOO_FAST:
                        raise ApiError(429, event.message, code="rate_limit_exceeded",
                                       retry_after=dict(event.values)["seconds"])
                    if event.key == OUT_OF_MEMORY:  # the prompt did not fit in the GPU: too large for now
                        raise ApiError(413, event.message, code="out_of_memory")
                    raise ApiError(400, event.message)
                if isinstance(event, Queued):
                    yield Waiting(event.ahead)
                elif isinstance(event, TextDelta) and not scanner.hit:
                    pieces += 1
                    text = scanner.feed(event.text)
                    if text:
                        yield text
                    if scanner.hit:
                        self.cancel()  # the rest would be thrown away: free the model now
                elif isinstance(event, TurnDone):
                    if event.status == "error":
                        raise EngineFailed(event.error or "The model failed while answering.")
                    rest = scanner.flush()
                    if rest:
                        yield rest
                    yield self._finished(event.completion, pieces)
                    return

    def _finished(self, completion: Completion | None, pieces: int) -> Finished:
        if completion is None:  # an engine that ends without an account of itself
            return Finished("stop", 0, pieces)
        # A stop sequence cancels the turn; the engine still ends with its Completion.
        reason = "length" if completion.finish_reason == "length" and not self.scanner.hit else "stop"
        return Finished(reason, completion.prompt_tokens, completion.completion_tokens)
