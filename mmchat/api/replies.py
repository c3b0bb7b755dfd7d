"""Chat completion objects and chunks, as OpenAI's clients parse them.

A stream: a first chunk with the role, the text piece by piece, exactly one chunk with
a finish_reason, with `include_usage` one more with the usage and no choices, then
`data: [DONE]`. A failure after the stream began is an `error` event, which OpenAI's
clients raise as an APIError.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import AsyncIterator

from fastapi.responses import JSONResponse

from .bridge import ThreadedIterator
from .chat import EngineFailed, Finished, Waiting
from .errors import ApiError, error_body
from .sse import DONE, comment, event

log = logging.getLogger(__name__)


class Reply:
    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    async def whole(self, run: ThreadedIterator):
        pieces, finished = [], None
        try:
            async for item in run:
                if isinstance(item, str):
                    pieces.append(item)
                elif isinstance(item, Finished):
                    finished = item
        except EngineFailed as exc:
            log.warning("answer failed: %s", exc)
            return JSONResponse(error_body(500, str(exc)), 500)
        finished = finished or Finished("stop", 0, 0)
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                             "logprobs": None, "finish_reason": finished.finish_reason}],
                "usage": finished.usage}

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> bytes:
        data = {**self._head("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if self.include_usage:
            data["usage"] = None
        return event(data)

    async def stream(self, first: list, run: ThreadedIterator) -> AsyncIterator[bytes]:
        yield self._chunk({"role": "assistant", "content": ""})
        finished = None
        try:
            async for item in _chain(first, run):
                if isinstance(item, Waiting):
                    yield comment(f"waiting for a place: {item.ahead} ahead")
                elif isinstance(item, str):
                    yield self._chunk({"content": item})
                elif isinstance(item, Finished):
                    finished = item
        except (EngineFailed, ApiError) as exc:
            log.warning("answer failed mid-stream: %s", exc)
            status = exc.status if isinstance(exc, ApiError) else 500
            yield event(error_body(status, str(exc)))
            yield DONE
            return
        finished = finished or Finished("stop", 0, 0)
        yield self._chunk({}, finished.finish_reason)
        if self.include_usage:
            yield event({**self._head("chat.completion.chunk"), "choices": [], "usage": finished.usage})
        yield DONE


async def _chain(first: list, run: ThreadedIterator):
    for item in first:
        yield item
    async for item in run:
        yield item

