"""Voice mode's transport: the page's microphone and camera over one WebSocket.

Why not Gradio's streaming microphone: measured by bench/voice_transport.py, its chunks
reach the server about 300 ms late at the median (100 ms chunks, one upload each) and
audio is lost when the machine is busy (a batch of held-back chunks goes out behind the
first one's WAV header, which names one chunk's length). The page's own script
(ui.py's VOICE_JS) sends 20 ms of 16-bit PCM at a time over this socket instead:
25 ms median, nothing lost, and echo cancellation, noise suppression and automatic gain
asked for by name.

    page -> server   text   {"type": "hello", "sample_rate": 48000}      first, once
                     binary 0x01 + int16 little-endian mono samples      every ~20 ms
                     binary 0x02 + a JPEG of the camera                   about once a second
    server -> page   text   {"state": "listening", "turn": null, "barged_in": false}
                            when the state changes, a question ends (its number), or
                            the person barges in (the page stops its audio at once)

The socket's path holds the session's voice token (`VoiceLoops.open`): only the page
that turned voice mode on can feed that session.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
from typing import Callable

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from mmchat.turn.session import ChatSession
from mmchat.voice.loop import VoiceLoop

log = logging.getLogger(__name__)

AUDIO, FRAME = 0x01, 0x02
MAX_MESSAGE_BYTES = 8_000_000  # a camera frame as a JPEG is well under this
RATES = range(8_000, 192_001)
MAX_FRAME_PIXELS = 4096 * 4096  # far above any webcam; a picture bigger than this is not a frame
# The socket closes with these (4000-4999 are the application's own codes).
UNKNOWN_TOKEN, BAD_MESSAGE, REPLACED = 4404, 4400, 4409


class VoiceLoops:
    """Each session's voice mode, found by session (the page's events) or by token (the socket)."""

    def __init__(self, make: Callable[[ChatSession], VoiceLoop]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._by_session: dict[int, tuple[ChatSession, VoiceLoop, str]] = {}
        self._by_token: dict[str, VoiceLoop] = {}

    def open(self, session: ChatSession) -> str:
        """Voice mode on for `session` (made on first use); the token for its socket."""
        with self._lock:
            entry = self._by_session.get(id(session))
            if entry is None or entry[0] is not session:
                loop, token = self._make(session), secrets.token_urlsafe(24)
                self._by_session[id(session)] = (session, loop, token)
                self._by_token[token] = loop
                return token
            return entry[2]

    def get(self, session: ChatSession) -> VoiceLoop | None:
        with self._lock:
            entry = self._by_session.get(id(session))
            return entry[1] if entry is not None and entry[0] is session else None

    def by_token(self, token: str) -> VoiceLoop | None:
        with self._lock:
            return self._by_token.get(token)

    def close(self, session: ChatSession) -> None:
        """The session is over: its voice mode goes, and its token with it."""
        with self._lock:
            entry = self._by_session.pop(id(session), None)
            if entry is not None:
                self._by_token.pop(entry[2], None)
        if entry is not None:
            entry[1].close()


def voice_router(loops: VoiceLoops) -> APIRouter:
    router = APIRouter()
    # One socket feeds a session at a time: two would interleave their audio into one
    # stream. The newest wins (the page reconnected, or voice mode was turned on again).
    feeding: dict[str, WebSocket] = {}

    @router.websocket("/voice/{token}")
    async def voice_socket(socket: WebSocket, token: str) -> None:
        loop = loops.by_token(token)
        await socket.accept()  # before any close, so the page gets our code, not a refused handshake
        if loop is None:
            await socket.close(code=UNKNOWN_TOKEN)
            return
        previous, feeding[token] = feeding.get(token), socket
        if previous is not None:
            await previous.close(code=REPLACED)
        rate, shown = None, None
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    rate = _hello_rate(message["text"])
                    if rate is None:
                        await socket.close(code=BAD_MESSAGE)
                        break
                    continue
                data = message.get("bytes") or b""
                if not data or len(data) > MAX_MESSAGE_BYTES:
                    continue
                if data[0] == AUDIO and rate is not None and len(data) % 2 == 1:
                    samples = np.frombuffer(data, dtype="<i2", offset=1)
                    heard = await run_in_threadpool(loop.hear, rate, samples)
                    if heard.state != shown or heard.turn is not None or heard.barged_in:
                        shown = heard.state
                        await socket.send_text(json.dumps(
                            {"state": heard.state, "turn": heard.turn, "barged_in": heard.barged_in}))
                elif data[0] == FRAME:
                    frame = await run_in_threadpool(_decoded_frame, data[1:])
                    if frame is not None:
                        loop.see(frame)
        except WebSocketDisconnect:
            pass
        finally:
            if feeding.get(token) is socket:
                del feeding[token]
                # The page closed the socket (voice mode off, tab gone): a half-said question goes.
                loop.stop_listening()

    return router


def _hello_rate(text: str) -> int | None:
    try:
        hello = json.loads(text)
        rate = int(hello["sample_rate"])
    except (ValueError, KeyError, TypeError):
        return None
    return rate if hello.get("type") == "hello" and rate in RATES else None


def _decoded_frame(data: bytes) -> np.ndarray | None:
    """A camera frame as RGB, or None if it is not a picture (a frame is never worth an error)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as picture:
            if picture.width * picture.height > MAX_FRAME_PIXELS:
                return None
            return np.asarray(picture.convert("RGB"))
    except Exception:  # noqa: BLE001 - a broken frame is skipped; the next comes in a second
        log.debug("skipping an unreadable camera frame", exc_info=True)
        return None
