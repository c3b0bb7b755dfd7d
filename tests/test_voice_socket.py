"""Voice mode over its one socket, served for real (uvicorn on loopback), with no page and
no Gradio event: the question's speech goes in, the answer's words, audio and timings
come back on the same socket; barge-in, a closed socket and a page that stops reading."""

from __future__ import annotations

import io
import json
import queue
import shutil
import struct
import threading
import time

import numpy as np
import pytest

from conftest import voice_services_for, with_config
from fixture_models import draw_test_image
from mmchat.engine import GenerationParams
from mmchat.turn import Speech
from mmchat.turn.session import ChatSession
from mmchat.voice.loop import VoiceLoop
from mmchat.voice.websocket import ANSWER_AUDIO, AUDIO, FRAME, VoiceLoops
from speech import speech_maker
from test_api_support import LiveServer, wait_until
from ws_client import WebSocketClient

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng and sox make the test speech"
)

MIC_RATE = 48_000
STEP = MIC_RATE // 50  # 20 ms, as the page's script sends them
QUESTION = "What color is the shape?"
# Every thread a spoken answer runs on: the turn, the model, its text pump, the voice.
ANSWER_THREADS = ("mmchat-voice-answer", "mmchat-generate", "mmchat-answer-text", "mmchat-speak")
LONG = GenerationParams(max_new_tokens=3000, temperature=1.0, seed=1)


@pytest.fixture(scope="module")
def say(tmp_path_factory):
    return speech_maker(tmp_path_factory.mktemp("said"), MIC_RATE)


def _alive(names=ANSWER_THREADS) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in names and t.is_alive()]


class Microphone:
    """The page's side: 20 ms of PCM at a time in real time, silence between what is said."""

    def __init__(self, client: WebSocketClient) -> None:
        self.client = client
        self.said: queue.Queue[np.ndarray] = queue.Queue()
        self.done_saying = threading.Event()
        self._stop = threading.Event()
        client.send_text(json.dumps({"type": "hello", "sample_rate": MIC_RATE}))
        self._thread = threading.Thread(target=self._run, name="test-microphone", daemon=True)
        self._thread.start()

    def say(self, audio: np.ndarray) -> None:
        self.done_saying.clear()
        self.said.put((np.clip(audio, -1, 1) * 32767).astype("<i2"))

    def _run(self) -> None:
        pending, next_at = np.zeros(0, "<i2"), time.monotonic()
        while not self._stop.is_set():
            if not len(pending):
                try:
                    pending = self.said.get_nowait()
                except queue.Empty:
                    self.done_saying.set()
                    pending = np.zeros(STEP, "<i2")
            chunk, pending = pending[:STEP], pending[STEP:]
            try:
                self.client.send_bytes(bytes([AUDIO]) + chunk.tobytes())
            except OSError:
                return  # the socket is closed
            next_at += STEP / MIC_RATE
            time.sleep(max(next_at - time.monotonic(), 0.0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _read(client: WebSocketClient, timeout: float = 60.0):
    """The next message: a dict (text), or ("audio", turn, rate, samples) (binary)."""
    message = client.receive(timeout)
    if isinstance(message, bytes):
        assert message[0] == ANSWER_AUDIO
        turn, rate = struct.unpack_from("<II", message, 1)
        return ("audio", turn, rate, np.frombuffer(message, dtype="<i2", offset=9))
    return json.loads(message)


def _until(client: WebSocketClient, condition, timeout: float = 60.0) -> list:
    """Messages read until one meets `condition` (it included)."""
    seen, deadline = [], time.monotonic() + timeout
    while not seen or not condition(seen[-1]):
        assert time.monotonic() < deadline, f"timed out after {[_short(m) for m in seen][-12:]}"
        seen.append(_read(client, max(deadline - time.monotonic(), 0.1)))
    return seen


def _short(message):
    return message[:3] if isinstance(message, tuple) else message


def _is(kind: str, **fields):
    return lambda m: isinstance(m, dict) and m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


def _audio(messages, turn: int | None = None) -> list:
    return [m for m in messages if isinstance(m, tuple) and (turn is None or m[1] == turn)]


def _quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * MIC_RATE), np.float32)


def camera_jpeg(colour: str) -> bytes:
    picture = io.BytesIO()
    draw_test_image("circle", colour).convert("RGB").resize((240, 240)).save(picture, format="JPEG")
    return picture.getvalue()


def _voice_mode(services, store_dir):
    from mmchat.store.sqlite_store import SQLiteStore

    store = SQLiteStore(store_dir)
    loops = VoiceLoops(lambda session: VoiceLoop(session, services))
    session = ChatSession(store)
    token = loops.open(session)
    return loops, session, token, loops.get(session)


@pytest.fixture
def endless(config, qwen_engine, speech_to_text, text_to_speech):
    """Voice mode on a model that never ends an answer by itself; (loops, session, token, loop)."""
    saved = qwen_engine.model.generation_config.eos_token_id
    qwen_engine.model.generation_config.eos_token_id = None
    services = voice_services_for(with_config(config, max_new_tokens=LONG.max_new_tokens), qwen_engine,
                                  speech_to_text, text_to_speech)
    loops, session, token, loop = _voice_mode(services, config.data_dir)
    loop.answer_with = (LONG, Speech())
    try:
        yield services, loops, session, token, loop
    finally:
        loop.barge_in()
        wait_until(lambda: not _alive(), 30)
        loops.close(session)
        qwen_engine.model.generation_config.eos_token_id = saved


def test_a_spoken_question_is_answered_on_the_socket_it_came_in_on(config, shapes_engine, speech_to_text,
                                                                   text_to_speech, say):
    services = voice_services_for(with_config(config, max_new_tokens=8, temperature=0.0), shapes_engine,
                                  speech_to_text, text_to_speech)
    loops, session, token, loop = _voice_mode(services, config.data_dir)
    with LiveServer(services, None, loops) as server, WebSocketClient(f"ws://127.0.0.1:{server.port}/voice/{token}") \
            as client:
        client.send_bytes(bytes([FRAME]) + camera_jpeg("yellow"))
        microphone = Microphone(client)
        try:
            microphone.say(np.concatenate([_quiet(0.3), say(QUESTION)]))
            said = _until(client, _is("done"))
        finally:
            microphone.close()
    states = [m["state"] for m in said if _is("state")(m)]
    assert states[:2] == ["listening", "hearing"] and "thinking" in states
    heard = [m for m in said if _is("heard")(m)]
    assert [m["turn"] for m in heard] == [1]
    transcript = next(m for m in said if _is("transcript")(m))
    assert transcript["turn"] == 1 and "shape" in transcript["text"].lower()
    words = "".join(m["text"] for m in said if _is("text", turn=1)(m))
    done = said[-1]
    assert done["status"] == "complete" and done["text"] == words and words.strip() == "yellow"
    audio = _audio(said, 1)
    assert audio and len({rate for _, _, rate, _ in audio}) == 1 and audio[0][2] >= 16_000
    assert sum(len(samples) for *_, samples in audio) / audio[0][2] > 0.1, "the answer is spoken"
    assert said.index(audio[0]) < len(said) - 1  # audio before the turn is done
    assert {"transcript", "first_token", "first_audio", "done"} <= set(done["timings"])
    assert done["timings"]["first_audio"] <= done["timings"]["done"]
    assert session.conversation.turns[1].text == words  # kept as the page's chat shows it
    assert not _alive()
    loops.close(session)


def test_speaking_over_the_answer_stops_its_audio_and_generation(endless, say):
    services, loops, session, token, loop = endless
    with LiveServer(services, None, loops) as server, WebSocketClient(f"ws://127.0.0.1:{server.port}/voice/{token}") \
            as client:
        microphone = Microphone(client)
        try:
            microphone.say(np.concatenate([_quiet(0.3), say(QUESTION)]))
            before = _until(client, lambda m: isinstance(m, tuple))  # it is talking
            generating = [t for t in threading.enumerate() if t.name == "mmchat-generate"]
            assert generating and any(_is("text", turn=1)(m) for m in before)
            microphone.say(say("Tell me more about it."))
            after = _until(client, _is("barge_in"))
            loop.answer_with = (GenerationParams(max_new_tokens=6, temperature=0.0), None)
            rest = _until(client, _is("done", turn=1), timeout=30)
            for thread in generating:
                thread.join(10)
                assert not thread.is_alive(), "the generation ended"
            # The one chunk being handed over when it stopped may follow; nothing after that.
            assert len(_audio(rest, 1)) <= 1
            assert rest[-1]["status"] == "interrupted"
            second = _until(client, _is("done", turn=2), timeout=90)
        finally:
            microphone.close()
    assert second[-1]["status"] == "complete"
    assert not any(_is("done", turn=1)(m) for m in after)
    stopped = session.conversation.turns[1]
    assert stopped.status == "interrupted" and stopped.text  # the partial answer is kept
    assert wait_until(lambda: not _alive(), 30), _alive()


def test_a_closed_socket_stops_its_answer(endless, say):
    services, loops, session, token, loop = endless
    with LiveServer(services, None, loops) as server:
        client = WebSocketClient(f"ws://127.0.0.1:{server.port}/voice/{token}")
        microphone = Microphone(client)
        try:
            microphone.say(np.concatenate([_quiet(0.3), say(QUESTION)]))
            _until(client, lambda m: isinstance(m, tuple))
            assert "mmchat-generate" in _alive()
        finally:
            microphone.close()
            client.close()  # the tab is gone
        assert wait_until(lambda: not _alive(), 15), f"still running: {_alive()}"
    assert session.conversation.turns[1].status == "interrupted"


def _slow_sends(app, seconds: float):
    """The app as a page on a slow link gets it: each binary message takes `seconds` to send
    (the socket's sending side waits; its receiving side must not)."""
    import asyncio

    async def slowed(scope, receive, send):
        async def slow(message):
            if message["type"] == "websocket.send" and message.get("bytes"):
                await asyncio.sleep(seconds)
            await send(message)
        await app(scope, receive, slow if scope["type"] == "websocket" else send)
    return slowed


def test_a_page_that_falls_behind_does_not_hold_up_barge_in(endless, say):
    services, loops, session, token, loop = endless
    server = LiveServer(services, None, loops)
    server.server.config.app = _slow_sends(server.app, 3.0)
    with server, WebSocketClient(f"ws://127.0.0.1:{server.port}/voice/{token}") as client:
        microphone = Microphone(client)
        try:
            microphone.say(np.concatenate([_quiet(0.3), say(QUESTION)]))
            _until(client, lambda m: isinstance(m, tuple))
            time.sleep(2.0)  # the page is still being sent the first sentences
            generating = [t for t in threading.enumerate() if t.name == "mmchat-generate"]
            assert generating
            microphone.say(say("Tell me more about it."))
            spoken_at = time.monotonic()
            microphone.done_saying.wait(30)
            for thread in generating:
                thread.join(10)
                assert not thread.is_alive()
            stopped_after = time.monotonic() - spoken_at
            loop.answer_with = (GenerationParams(max_new_tokens=6, temperature=0.0), None)
            after = _until(client, _is("barge_in"), timeout=30)
            rest = _until(client, _is("done", turn=1), timeout=30)
        finally:
            microphone.close()
    # Heard while the page was still being sent audio (the interruption lasts about 1.3 s).
    assert stopped_after < 4.0, stopped_after
    # The audio that was waiting was dropped at the barge-in: at most the one chunk being sent.
    assert len(_audio(rest, 1)) <= 1
    assert len(_audio(after, 1)) >= 1
    assert rest[-1]["status"] == "interrupted"


def test_a_watcher_gets_each_turn_in_order_and_one_that_falls_behind_is_dropped():
    """The chat's view of spoken turns (TurnWatch), fed from the turns' threads: two turns
    whose events interleave (a new question while the stopped answer ends) come out one
    after the other; a watcher that does not keep up loses text deltas, then is dropped,
    and never makes a turn wait; one whose page is gone ends."""
    from mmchat.events import Notice, TextDelta, TurnDone
    from mmchat.voice.answering import TurnWatch

    watch = TurnWatch(lambda: True, limit=8, poll=0.01)
    watch.put(1, TextDelta("a"))
    watch.put(2, Notice("asked"))
    watch.put(1, TurnDone("interrupted", "a"))
    watch.put(2, TextDelta("b"))
    watch.end(1)
    watch.close()  # voice mode off: the turns begun are still shown to their end
    turns = watch.turns()
    assert list(next(turns)) == [TextDelta("a"), TurnDone("interrupted", "a")]
    second = next(turns)
    assert next(second) == Notice("asked") and next(second) == TextDelta("b")
    watch.put(2, TurnDone("complete", "b"))
    watch.end(2)
    assert list(second) == [TurnDone("complete", "b")]
    assert not list(turns)  # closed: no turn after it

    behind = TurnWatch(lambda: True, limit=8)
    started = time.monotonic()
    for index in range(8):
        behind.put(3, TextDelta(str(index)))
    behind.put(3, TextDelta("skipped"))  # full: text is skipped ...
    behind.put(3, Notice("kept"))  # ... the rest is kept ...
    for _ in range(20):
        behind.put(3, Notice("more"))  # ... until it is twice as far behind
    assert time.monotonic() - started < 0.5  # no put waited
    assert behind.dropped and not list(behind.turns())

    gone = TurnWatch(lambda: False, poll=0.01)
    assert not list(gone.turns())
