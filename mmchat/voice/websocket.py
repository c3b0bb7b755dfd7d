"""Voice mode's transport: the page's microphone and camera in, and the spoken answer out,
over one WebSocket.

Why not Gradio's streaming microphone: measured by bench/voice_transport.py, its chunks
reach the server about 300 ms late at the median (100 ms chunks, one upload each) and
audio is lost when the machine is busy (a batch of held-back chunks goes out behind the
first one's WAV header, which names one chunk's length). The page's own script
(mmchat/web/static/voice.js) sends 20 ms of 16-bit PCM at a time over this socket instead:
25 ms median, nothing lost, and echo cancellation, noise suppression and automatic gain
asked for by name. The answer comes back on the same socket, as soon as the question has
ended: no round trip through the page to start it, no second transport for its audio.

    page -> server  text    {"type": "hello", "sample_rate": 48000}           first, once
                    binary  0x01 + int16 little-endian mono samples           every ~20 ms
                    binary  0x02 + a JPEG of the camera                        about twice a second
    server -> page  text    {"type": "state", "state": "listening"}          when it changes
                            (listening, hearing, thinking, speaking)
                    text    {"type": "heard", "turn": 3}                       question 3 ended:
                            its answer starts now (turn numbers count up within a session)
                    text    {"type": "barge_in"}                               the person spoke
                            over the answer: stop its audio at once
                    text    {"type": "transcript", "turn": 3, "text": "..."}  what was heard
                    text    {"type": "text", "turn": 3, "text": "..."}        the answer's next words
                    binary  0x03 + turn (uint32 LE) + sample rate (uint32 LE)
                                 + int16 little-endian mono samples          its next audio
                                                                              (about a sentence)
                    text    {"type": "notice" | "rejected", "turn": 3, "text": "..."}
                    text    {"type": "done", "turn": 3, "status": "complete" | "interrupted" |
                            "error", "text": "...", "timings": {"transcript": 0.8, ...}}

The page plays each turn's audio back to back and drops audio of a turn older than
the newest it was told of. What the page is sent is queued and sent by a task of the
socket's own, so a slow page never holds up the microphone's side (barge-in is heard
however far behind the page is, and a barge-in's message goes ahead of the audio still
waiting, which is dropped); past MAX_QUEUED_BYTES waiting, audio is dropped too.

The socket's path holds the session's voice token (`VoiceLoops.open`): only the page
that turned voice mode on can feed that session. A socket that closes stops the answer
it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import secrets
import struct
import threading
from collections import deque
from typing import Callable

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from mmchat.events import AudioChunk, InputRejected, Notice, TextDelta, Transcribed, TurnDone, TurnEvent
from mmchat.turn.session import ChatSession
from mmchat.voice.loop import Heard, VoiceLoop

log = logging.getLogger(__name__)

AUDIO, FRAME, ANSWER_AUDIO = 0x01, 0x02, 0x03
MAX_MESSAGE_BYTES = 8_000_000  # a camera frame as a JPEG is well under this
# What may wait to be sent to a slow page: about three minutes of 22 kHz speech.
MAX_QUEUED_BYTES = 8_000_000
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
        outbox = Outbox(socket)
        try:
            await _listen(socket, loop, outbox)
        except WebSocketDisconnect:
            pass
        finally:
            await outbox.close()
            loop.answers.stop(outbox)  # no one is left to hear the answer this socket asked for
            if feeding.get(token) is socket:
                del feeding[token]
                # The page closed the socket (voice mode off, tab gone): a half-said question goes.
                loop.stop_listening()

    return router


async def _listen(socket: WebSocket, loop: VoiceLoop, outbox: "Outbox") -> None:
    """The page's messages, until it goes; each question heard is answered at once."""
    rate, shown = None, None
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            rate = _hello_rate(message["text"])
            if rate is None:
                await socket.close(code=BAD_MESSAGE)
                return
            continue
        data = message.get("bytes") or b""
        if not data or len(data) > MAX_MESSAGE_BYTES:
            continue
        if data[0] == AUDIO and rate is not None and len(data) % 2 == 1:
            heard: Heard = await run_in_threadpool(loop.hear, rate, np.frombuffer(data, dtype="<i2", offset=1))
            if heard.barged_in:  # ahead of the audio still waiting, which is never sent
                outbox.drop_audio()
                outbox.put(_json(type="barge_in"))
            if heard.turn is not None:
                outbox.put(_json(type="heard", turn=heard.turn))
                loop.answers.start(heard.turn, outbox.send_event, owner=outbox)
            if heard.state != shown:
                shown = heard.state
                outbox.put(_json(type="state", state=heard.state))
        elif data[0] == FRAME:
            frame = await run_in_threadpool(_decoded_frame, data[1:])
            if frame is not None:
                loop.see(frame)


class Outbox:
    """What one socket sends, queued from any thread and sent by a task of its own."""

    def __init__(self, socket: WebSocket, limit: int = MAX_QUEUED_BYTES) -> None:
        self._socket, self._limit = socket, limit
        self._loop = asyncio.get_running_loop()
        # Touched on the event loop only: the messages waiting, their bytes, a wake-up.
        self._waiting: deque[str | bytes] = deque()
        self._queued = 0
        self._ready = asyncio.Event()
        self.closed = False
        self._sender = asyncio.create_task(self._send_all())

    def put(self, message: str | bytes) -> bool:
        """Queue `message` from any thread (never waits); False once the socket is gone."""
        if self.closed:
            return False
        try:
            self._loop.call_soon_threadsafe(self._enqueue, message)
        except RuntimeError:  # the event loop has closed
            self.closed = True
        return not self.closed

    def send_event(self, number: int, event: TurnEvent) -> bool:
        """Turn `number`'s event, as the protocol above says (called on the turn's thread)."""
        message = encoded(number, event)
        return self.put(message) if message is not None else not self.closed

    def drop_audio(self) -> None:
        """Barge-in: the audio still waiting is not sent (call on the event loop)."""
        self._waiting = deque(message for message in self._waiting if not isinstance(message, bytes))
        self._queued = sum(len(message) for message in self._waiting)

    def _enqueue(self, message: str | bytes) -> None:
        if isinstance(message, bytes) and self._queued + len(message) > self._limit:
            log.warning("voice: the page is not keeping up; skipping %d bytes of audio", len(message))
            return
        self._queued += len(message)
        self._waiting.append(message)
        self._ready.set()

    async def _send_all(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._waiting:
                message = self._waiting.popleft()
                self._queued -= len(message)
                try:
                    if isinstance(message, bytes):
                        await self._socket.send_bytes(message)
                    else:
                        await self._socket.send_text(message)
                except Exception:  # noqa: BLE001 - the page is gone; the receiving side sees it too
                    self.closed = True
                    return

    async def close(self) -> None:
        self.closed = True
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender


def encoded(number: int, event: TurnEvent) -> str | bytes | None:
    """A turn's event as the page gets it; None for those it does not need."""
    if isinstance(event, AudioChunk):
        pcm = (np.clip(event.samples, -1.0, 1.0) * 32767).astype("<i2")
        return bytes([ANSWER_AUDIO]) + struct.pack("<II", number, event.sample_rate) + pcm.tobytes()
    if isinstance(event, TextDelta):
        return _json(type="text", turn=number, text=event.text)
    if isinstance(event, Transcribed):
        return _json(type="transcript", turn=number, text=event.transcript.text.strip())
    if isinstance(event, TurnDone):
        return _json(type="done", turn=number, status=event.status, text=event.text,
                     timings={stage: round(seconds, 3) for stage, seconds in event.timings.items()})
    if isinstance(event, Notice):
        return _json(type="notice", turn=number, text=event.message)
    if isinstance(event, InputRejected):
        return _json(type="rejected", turn=number, text=event.message)
    return None


def _json(**message) -> str:
    return json.dumps(message, ensure_ascii=False)


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
