"""Server-sent events, and noticing that the client went away.

A client that closes the connection must free the model within a second, whether it is
reading a stream, waiting for a whole answer, or still in line. Starlette's
StreamingResponse only learns of it when a write fails (the next token, which may be
minutes away for a request in line), so the connection is watched instead: ASGI
servers report `http.disconnect` to `receive()` once the body has been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import AsyncIterator, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"


def event(data: dict) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def comment(text: str) -> bytes:
    """An SSE comment: clients skip it; it keeps proxies from closing an idle stream."""
    return b": " + text.replace("\n", " ").encode() + b"\n\n"


async def _watch(receive: Receive, on_disconnect: Callable[[], None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            on_disconnect()
            return


@contextlib.asynccontextmanager
async def disconnect_watch(receive: Receive, on_disconnect: Callable[[], None]):
    """Call `on_disconnect()` if the client goes away while the block runs."""
    watcher = asyncio.ensure_future(_watch(receive, on_disconnect))
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


class EventStream(Response):
    """An SSE response from an async iterator of ready-made event bytes; `on_disconnect`
    runs as soon as the client leaves, and again when the stream ends early for any
    reason, so the work behind it never outlives its reader."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes], on_disconnect: Callable[[], None]) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                            (b"x-accel-buffering", b"no")]
        self._body = body
        self._on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False
        async with disconnect_watch(receive, self._on_disconnect):
            try:
                await send({"type": "http.response.start", "status": self.status_code,
                            "headers": self.raw_headers})
                async for chunk in self._body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                finished = True
            except OSError:  # the client is gone (ASGI 2.4 servers say so on send)
                pass
            finally:
                if not finished:
                    self._on_disconnect()
