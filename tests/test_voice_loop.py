"""Voice mode end to end below the page: microphone chunks in (48 kHz, 100 ms, as the
browser sends them), the camera's frame, real Silero VAD, the bundled Whisper tiny.en,
the trained shapes-vlm and the bundled voice; barge-in and echo from other threads."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import voice_services_for, with_config
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.config import Config
from mmchat.engine import GenerationParams
from mmchat.engine.local import create_local_engine
from mmchat.events import AudioChunk, Notice, TurnDone
from mmchat.store.legacy import ConversationStore
from mmchat.turn.session import ChatSession
from mmchat.presets import DESCRIBE, Verbosity
from mmchat.voice.loop import VoiceLoop
from mmchat.web.view import SKIP
from speech import speech_maker

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng and sox make the test speech"
)

MIC_RATE = 48_000
CHUNK = MIC_RATE // 10
GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)
# tiny.en writes American spelling; shapes-vlm was trained on "colour" and reads both.
QUESTION = "What color is the shape?"


@pytest.fixture(scope="module")
def say(tmp_path_factory):
    """Text -> espeak-ng speech at 48 kHz, trimmed to the voice."""
    return speech_maker(tmp_path_factory.mktemp("said"), MIC_RATE)


@pytest.fixture(scope="module")
def shapes_engine():
    return create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))


@pytest.fixture
def voice(config, shapes_engine, speech_to_text, text_to_speech):
    services = voice_services_for(with_config(config, max_new_tokens=8), shapes_engine, speech_to_text,
                                  text_to_speech)
    session = ChatSession(ConversationStore(config.data_dir))
    loop = VoiceLoop(session, services)
    yield loop
    loop.close()


def _quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * MIC_RATE), np.float32)


def _feed(loop: VoiceLoop, audio: np.ndarray, *, paced: bool = False, rate: int = MIC_RATE) -> list:
    """Feed `audio` in 100 ms chunks (in real time when `paced`); what each chunk changed, in order."""
    heard, chunk = [], rate // 10
    for start in range(0, len(audio), chunk):
        heard.append(loop.hear(rate, audio[start : start + chunk]))
        if paced:
            time.sleep(chunk / rate)
    return heard


def _turns(heard) -> list[int]:
    return [h.turn for h in heard if h.turn is not None]


def _frame(colour: str, shape: str = "circle") -> np.ndarray:
    return np.asarray(draw_test_image(shape, colour).convert("RGB").resize((240, 240)))


def test_a_spoken_question_about_the_camera_is_answered_aloud_and_kept_with_its_timings(voice, say):
    voice.see(_frame("red"))
    turns = _turns(_feed(voice, np.concatenate([_quiet(0.5), say(QUESTION), _quiet(1.2)])))
    assert len(turns) == 1
    events = list(voice.answer(turns[0], GREEDY, speech=object()))
    done = events[-1]
    assert isinstance(done, TurnDone) and done.status == "complete", events
    assert done.text.strip() == "red"
    assert any(isinstance(e, AudioChunk) and e.duration > 0.1 for e in events), "the answer is spoken"

    conversation = voice.session.conversation
    question, reply = conversation.turns
    assert len(question.images) == 1  # the camera's frame, stored like an upload
    assert "shape" in question.text.lower()
    recording = [p for p in question.parts if hasattr(p, "transcript")][0]
    assert sf.info(recording.path).duration > 1.0  # the question's audio is kept too
    for stage in ("transcript", "first_token", "first_audio", "done"):
        assert stage in reply.timings
    assert reply.timings["transcript"] <= reply.timings["first_token"] <= reply.timings["done"]
    saved = voice.session.store.load(conversation.id)
    assert saved.turns[1].timings == reply.timings  # kept with the turn, on disk


def test_what_changed_sends_the_previous_frame_too(voice, say):
    voice.see(_frame("red"))
    first = _turns(_feed(voice, np.concatenate([say(QUESTION), _quiet(1.2)])))
    list(voice.answer(first[0], GREEDY, speech=None))
    voice.see(_frame("blue"))
    second = _turns(_feed(voice, np.concatenate([say("What has changed?"), _quiet(1.2)])))
    assert len(second) == 1
    events = list(voice.answer(second[0], GREEDY, speech=None))
    assert isinstance(events[-1], TurnDone)
    question = voice.session.conversation.turns[2]
    assert len(question.images) == 2
    earlier = voice.session.conversation.turns[0].images[0].path
    assert Path(question.images[0].path).read_bytes() == Path(earlier).read_bytes()  # the previous view, first


def _moving(x: float) -> np.ndarray:
    """A camera view with a red square whose left edge is at `x` (a fraction of the free width)."""
    from clips import draw_frame

    return draw_frame((240, 180), x, (255, 0, 0))


def test_what_just_happened_is_asked_about_the_cameras_last_seconds_as_a_clip(voice, say):
    from clips import square_left
    from mmchat.media.video import ClipLimits, read_clip

    for step in range(9):  # the page sends a frame every 0.5 s; here every 0.25 s, the square moving right
        voice.see(_moving(step / 8))
        time.sleep(0.25)
    turns = _turns(_feed(voice, np.concatenate([say("What just happened?"), _quiet(1.2)])))
    assert len(turns) == 1
    events = list(voice.answer(turns[0], GREEDY, speech=None))
    assert isinstance(events[-1], TurnDone) and events[-1].status == "complete", events
    question = voice.session.conversation.turns[0]
    assert question.images == [] and len(question.clips) == 1  # the last seconds, not the last frame
    assert question.shown_text == "What is happening (brief)"  # said as the task's words: the describe preset
    frames = read_clip(question.clips[0].path, limits=ClipLimits(), max_bytes=10**8).frames
    assert 1.5 <= frames.duration <= 4.5 and len(frames.images) >= 4
    lefts = [square_left(image) for image in frames.images]
    assert lefts == sorted(lefts) and lefts[-1] - lefts[0] > 0.4  # in the order seen: left to right

    # A question about movement in other words is asked about the clip too, with its own words.
    for step in range(9):
        voice.see(_moving(1 - step / 8))
        time.sleep(0.25)
    turns = _turns(_feed(voice, np.concatenate([say("Which way is it moving?"), _quiet(1.2)])))
    list(voice.answer(turns[0], GREEDY, speech=None))
    moving = voice.session.conversation.turns[2]
    assert len(moving.clips) == 1 and "moving" in moving.text.lower()


def test_the_camera_keeps_only_its_last_seconds_and_a_camera_just_on_is_asked_about_its_frame(voice, say,
                                                                                                  tmp_path):
    for step in range(200):  # far faster than any page sends: what is kept stays bounded
        voice.see(_moving((step % 9) / 8))
    assert voice.camera.kept <= 4 * voice.services.config.camera_clip_seconds + 1
    assert voice.camera_clip(tmp_path) is None  # all within a moment: no motion to show
    turns = _turns(_feed(voice, np.concatenate([say("Is it moving?"), _quiet(1.2)])))
    list(voice.answer(turns[0], GREEDY, speech=None))
    question = voice.session.conversation.turns[0]
    assert len(question.images) == 1 and question.clips == []


def test_spoken_commands_stop_start_a_new_chat_and_describe(voice, say):
    voice.see(_frame("green"))
    first = _turns(_feed(voice, np.concatenate([say(QUESTION), _quiet(1.2)])))
    list(voice.answer(first[0], GREEDY, speech=None))
    answered = voice.session.conversation

    stop = _turns(_feed(voice, np.concatenate([say("Stop."), _quiet(1.2)])))
    assert [type(e) for e in voice.answer(stop[0], GREEDY, speech=None)] == [Notice]
    assert voice.session.conversation is answered and len(answered.turns) == 2  # no question was added

    new = _turns(_feed(voice, np.concatenate([say("New conversation."), _quiet(1.2)])))
    events = list(voice.answer(new[0], GREEDY, speech=None))
    assert events == [Notice("New chat started.")]
    assert voice.session.conversation is not answered and not voice.session.conversation.turns

    voice.see(_frame("green"))  # the camera streams a frame a second
    describe = _turns(_feed(voice, np.concatenate([say("Describe."), _quiet(1.2)])))
    events = list(voice.answer(describe[0], GREEDY, speech=None))
    assert isinstance(events[-1], TurnDone)
    question = voice.session.conversation.turns[0]
    assert question.text == DESCRIBE.question(Verbosity.BRIEF) and len(question.images) == 1
    assert question.shown_text == "Describe (brief)"  # the chat shows the task, not its prompt

    voice.see(_frame("green"))  # any preset by its name: the light level, read from the frame's pixels
    light = _turns(_feed(voice, np.concatenate([say("How bright is it?"), _quiet(1.2)])))
    events = list(voice.answer(light[0], GREEDY, speech=None))
    assert events[-1].status == "complete" and "brightness" in events[-1].text
    assert voice.session.conversation.turns[-2].shown_text == "Light level"


def test_silence_and_a_cough_make_no_question(voice):
    rng = np.random.default_rng(0)
    cough = (rng.standard_normal(int(0.08 * MIC_RATE)) * 0.3).astype(np.float32)
    heard = _feed(voice, np.concatenate([_quiet(20), cough, _quiet(5)]))
    assert not _turns(heard)
    assert voice.state == "listening"


@pytest.fixture
def endless_voice(config, qwen_engine, speech_to_text, text_to_speech):
    """Voice mode on a model that never ends an answer by itself: there is always speech to interrupt."""
    saved = qwen_engine.model.generation_config.eos_token_id
    qwen_engine.model.generation_config.eos_token_id = None
    services = voice_services_for(with_config(config, max_new_tokens=LONG.max_new_tokens), qwen_engine, speech_to_text,
                                  text_to_speech)
    loop = VoiceLoop(ChatSession(ConversationStore(config.data_dir)), services)
    try:
        yield loop
    finally:
        loop.close()
        qwen_engine.model.generation_config.eos_token_id = saved


def _answer_in_background(loop: VoiceLoop, number: int, params: GenerationParams):
    events: list = []
    thread = threading.Thread(target=lambda: events.extend(loop.answer(number, params, speech=object())),
                              name="test-voice-answer")
    thread.start()
    return thread, events


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# Long enough to outlast a barge-in: the random tiny model writes a token in about 2 ms, so
# 400 tokens ended (complete) 1.1 s into the answer, racing the barge-in, on a quiet machine.
LONG = GenerationParams(max_new_tokens=3000, temperature=1.0, seed=1)


def test_speaking_over_the_answer_stops_it_and_the_new_question_is_answered(endless_voice, say):
    loop = endless_voice
    first = _turns(_feed(loop, np.concatenate([say(QUESTION), _quiet(1.2)])))
    thread, events = _answer_in_background(loop, first[0], LONG)
    _wait_for(lambda: any(isinstance(e, AudioChunk) for e in events))  # it is talking
    assert loop.state == "speaking"

    heard = _feed(loop, np.concatenate([say("What is this?"), _quiet(1.2)]), paced=True)
    assert any(h.barged_in for h in heard)
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(events[-1], TurnDone) and events[-1].status == "interrupted"
    stopped = loop.session.conversation.turns[1]
    assert stopped.status == "interrupted" and stopped.text  # the partial answer is kept

    second = _turns(heard)
    assert len(second) == 1
    thread, events = _answer_in_background(loop, second[0], GenerationParams(max_new_tokens=6, temperature=0.0))
    thread.join(60)
    assert isinstance(events[-1], TurnDone) and events[-1].status == "complete"
    assert "this" in loop.session.conversation.turns[2].text.lower()


def test_its_own_voice_coming_back_is_no_question_and_no_barge_in(endless_voice, say):
    loop = endless_voice
    first = _turns(_feed(loop, np.concatenate([say(QUESTION), _quiet(1.2)])))
    thread, events = _answer_in_background(loop, first[0], LONG)
    _wait_for(lambda: sum(isinstance(e, AudioChunk) for e in events) >= 2)
    # What the page was sent to play comes back through the microphone: 150 ms late, 12 dB down,
    # with a little room noise, as speakers and a microphone on one desk would give it.
    spoken = [e for e in events if isinstance(e, AudioChunk)][:2]
    rate = spoken[0].sample_rate
    played = np.concatenate([e.samples for e in spoken])
    rng = np.random.default_rng(1)
    echo = np.concatenate([np.zeros(int(0.15 * rate), np.float32), played * 0.25, np.zeros(rate, np.float32)])
    echo = (echo + rng.standard_normal(len(echo)).astype(np.float32) * 0.002).astype(np.float32)
    heard = _feed(loop, echo, paced=True, rate=rate)
    try:
        assert not any(h.barged_in for h in heard)
        assert not _turns(heard)
        # The answer went on: still running, or ended by itself (its token limit), not stopped.
        assert not any(isinstance(e, TurnDone) and e.status != "complete" for e in events), events[-1]
    finally:
        loop.barge_in()
        thread.join(10)


def test_the_voice_socket_feeds_the_session_and_answers_with_the_page_showing_its_timings(
        config, shapes_engine, speech_to_text, text_to_speech, say):
    """The page's side of voice mode through the app's own routes, served for real: voice
    mode on gives a token; the socket takes 20 ms PCM chunks and a JPEG frame, says when a
    question ended and answers it aloud on the same socket; the page's chat shows the turn
    from the same events (its voice view), with its timings."""
    import json

    from mmchat.server import build_page
    from mmchat.voice.websocket import ANSWER_AUDIO, AUDIO, BAD_MESSAGE, FRAME, UNKNOWN_TOKEN
    from mmchat.web.page import PageHandlers, build_ui
    from test_api_support import LiveServer
    from test_voice_socket import camera_jpeg
    from ws_client import Closed, WebSocketClient

    services = voice_services_for(with_config(config, max_new_tokens=8, temperature=0.0), shapes_engine,
                                  speech_to_text, text_to_speech)
    _, voices = build_page(services)
    handlers = PageHandlers(services, voices)
    demo = build_ui(services, handlers, voice=voices)
    session, *_ = handlers.chat.on_load("")
    _, _, token = handlers.voice.on_voice_mode(session, True, 8, 0.0, "auto", 1.0)
    assert token
    views: list = []
    viewing = threading.Thread(target=lambda: views.extend(handlers.voice.on_voice_views(session, token)),
                               name="test-voice-views")
    viewing.start()
    audio = (np.concatenate([_quiet(0.3), say(QUESTION), _quiet(1.2)]) * 32767).astype("<i2")
    step = MIC_RATE // 50
    with LiveServer(services, demo, voices) as server:
        base = f"ws://127.0.0.1:{server.port}/voice/"
        with pytest.raises(Closed) as refused, WebSocketClient(base + "not-a-token") as other:
            other.receive(30)
        assert refused.value.code == UNKNOWN_TOKEN
        with pytest.raises(Closed) as refused, WebSocketClient(base + token) as bad:
            bad.send_text(json.dumps({"type": "hello", "sample_rate": 12}))  # no microphone records at 12 Hz
            bad.receive(30)
        assert refused.value.code == BAD_MESSAGE
        with WebSocketClient(base + token) as socket:
            socket.send_text(json.dumps({"type": "hello", "sample_rate": MIC_RATE}))
            socket.send_bytes(bytes([FRAME]) + camera_jpeg("yellow"))
            for start in range(0, len(audio), step):
                socket.send_bytes(bytes([AUDIO]) + audio[start : start + step].tobytes())
            said = []
            while not (said and isinstance(said[-1], dict) and said[-1]["type"] == "done"):
                message = socket.receive(60)
                said.append(json.loads(message) if isinstance(message, str) else message)
        handlers.voice.on_voice_mode(session, False)  # the chat's voice view ends with it
        viewing.join(30)
    assert not viewing.is_alive()
    states = [message["state"] for message in said if isinstance(message, dict) and message["type"] == "state"]
    assert states[:2] == ["listening", "hearing"] and states[-1] == "thinking"
    assert [m["turn"] for m in said if isinstance(m, dict) and m["type"] == "heard"] == [1]
    assert any(isinstance(m, bytes) and m[0] == ANSWER_AUDIO and len(m) > 9 for m in said), "the answer was spoken"
    assert said[-1]["status"] == "complete" and said[-1]["text"] == "yellow"
    chat, timings = views[-1].chat, views[-1].timings  # the turn view's chat and timings
    assert chat[-1] == {"role": "assistant", "content": "yellow"}
    assert all(view.speech is SKIP for view in views)  # its audio is the socket's, not the page's player
    assert "first audio" in timings and "| 1 |" in timings
    handlers.on_close(session)
