"""A closed browser tab stops its answer at once.

Gradio deletes a session's state (and calls its `delete_callback`, web.page.PageHandlers.on_close)
only an hour after the tab is gone, and on its own it drops a running answer only when
the answer next yields an update: an answer that waits in line, or for a slow token, would
keep the model busy for a tab nobody looks at.

While a page waits for an event's results it holds one streaming request open,
GET /gradio_api/queue/data?session_hash=..., which the page's script closes only after
the server has said the stream is over (`close_stream`). So that request ending before
its response did means the tab went away (closed, reloaded, or its network dropped), and
`TabWatch` cancels the answer of every chat session of that Gradio session there and then.
The connection itself is watched (as mmchat/api/sse.py does for API clients): ASGI servers
report `http.disconnect` to `receive()` as soon as the client leaves, whereas Gradio's
stream notices only when it next writes (a heartbeat, up to 15 s later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

QUEUE_STREAM_PATH = "/gradio_api/queue/data"


class TabWatch:
    """ASGI middleware: `on_gone(session_hash)` when a page's event stream is cut off
    before the server ended it. Every other request passes through untouched."""

    def __init__(self, app: ASGIApp, on_gone: Callable[[str], None]) -> None:
        self.app = app
        self.on_gone = on_gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_hash = _watched_session(scope)
        if session_hash is None:
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        answered = False  # the response's last byte went out: a later disconnect is the normal end

        async def relay() -> None:
            # The one reader of the connection: Gradio's stream reads what it needs from the inbox.
            while True:
                message = await receive()
                await inbox.put(message)
                if message["type"] == "http.disconnect":
                    if not answered:
                        self._gone(session_hash)
                    return

        async def watched_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        async def relayed_receive() -> Message:
            message = await inbox.get()
            if message["type"] == "http.disconnect":  # as from the server itself: every later read says so too
                inbox.put_nowait(message)
            return message

        watcher = asyncio.ensure_future(relay())
        try:
            await self.app(scope, relayed_receive, watched_send)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def _gone(self, session_hash: str) -> None:
        try:
            self.on_gone(session_hash)
        except Exception:  # a failure here must not take the server's connection handling down
            log.exception("stopping the answer of a closed tab failed")


def _watched_session(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope.get("method") != "GET":
        return None
    if not scope.get("path", "").endswith(QUEUE_STREAM_PATH):
        return None
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash")
    return values[0] if values else None


def stop_answers_of(demo, session_hash: str, is_session: Callable[[object], bool],
                    stop: Callable[[object], None]) -> int:
    """Call `stop(value)` for each value of the Gradio session `session_hash`'s state that
    `is_session(value)`; how many. Gradio keeps each session's gr.State values in its
    state holder, keyed by the session hash the page's requests carry."""
    holder = getattr(demo, "state_holder", None)
    state = None if holder is None else holder.session_data.get(session_hash)
    if state is None:
        return 0
    sessions = [value for value in list(state.state_data.values()) if is_session(value)]
    for session in sessions:
        stop(session)
    return len(sessions)
