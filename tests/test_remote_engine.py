"""One mmchat in front of another: the front's engine is `--engine remote`, the back is
the real app of mmchat.server (uvicorn on loopback) answering with the trained shapes-vlm.

Every photo question has one right answer, so a photo lost, swapped or mangled on its
way (fitted, encoded as a JPEG data URL, decoded by the back) gives a wrong answer.
The error cases use servers that misbehave on purpose: nothing listening, one that
never answers, one that answers with an HTTP error, each on loopback.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from app import build_services
from clips import still_clip
from conftest import make_services
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.cancel import CancelToken
from mmchat.config import Config
from mmchat.engine import Completion, GenerationParams
from mmchat.engine.local import create_local_engine
from mmchat.engine.remote import STREAM_THREAD, RemoteEngine, create_remote_engine
from mmchat.errors import ModelUnavailableError
from mmchat.model_handle import ModelHandle
from mmchat.turn import Services
from mmchat.web.chat import ChatHandlers
from mmchat.web.settings import SettingsHandlers
from test_api_support import LiveServer, alive, free_port, wait_until

MODEL = str(shapes_vlm_path())
WHICH = "Which image has the {}, the first or the second?"
BACK_WORKERS = ("mmchat-generate", "mmchat-api-turn", STREAM_THREAD)
LONG = 4000  # tokens: far more than the back writes before a Stop reaches it


class Recording:
    """The back's real engine, noting how many tokens each of its answers wrote (None
    when its consumer closed it before its Completion)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.endings: list[int | None] = []

    def count_tokens(self, messages):
        return self.engine.count_tokens(messages)

    def stream(self, messages, params, cancel):
        ending = None
        try:
            for item in self.engine.stream(messages, params, cancel):
                if isinstance(item, Completion):
                    ending = item.completion_tokens
                yield item
        finally:
            self.endings.append(ending)


@pytest.fixture(scope="module")
def shapes_engine():
    return create_local_engine(Config(model=MODEL, device="cpu", quantization="none"))


def back_config(tmp_path, **changes) -> Config:
    return Config(model=MODEL, device="cpu", quantization="none", data_dir=tmp_path / "back", temperature=0.0,
                  stt_backend="none", tts_backend="none", **changes)


@pytest.fixture(scope="module")
def back(shapes_engine, tmp_path_factory):
    recording = Recording(shapes_engine)
    services = Services(config=back_config(tmp_path_factory.mktemp("back")), engine=ModelHandle.ready(recording))
    with LiveServer(services) as live:
        live.recording = recording
        yield live


@pytest.fixture(scope="module")
def guarded_back(shapes_engine, tmp_path_factory):
    """A back that wants a key and refuses model names it does not serve (as vLLM does)."""
    config = back_config(tmp_path_factory.mktemp("guarded"), api_key="back-key", strict_model_names=True)
    with LiveServer(make_services(config, shapes_engine)) as live:
        yield live


def front_config(tmp_path, base_url: str, **changes) -> Config:
    return Config(engine="remote", base_url=base_url, data_dir=tmp_path / "front", temperature=0.0,
                  stt_backend="none", tts_backend="none", **changes)


def front_with(config: Config, engine) -> ChatHandlers:
    return ChatHandlers(Services(config=config, engine=ModelHandle.ready(engine)))


def _photo(tmp_path, name, shape, colour, **scene) -> str:
    path = tmp_path / f"{name}.png"
    draw_test_image(shape, colour, **scene).save(path)
    return str(path)


def ask(handlers, session, text, files=(), max_new_tokens=8):
    return handlers.on_submit(session, {"text": text, "files": list(files)}, False, None,
                              max_new_tokens, 0.0, False, "auto", 1.0, progress=None)


def last(updates):
    result = None
    for result in updates:
        pass
    return result


def answer_of(update) -> str:
    return update.chat[-1]["content"]


# --- a photo chat through the front's page ---

def test_a_photo_chat_through_a_remote_mmchat(back, tmp_path):
    services = build_services(front_config(tmp_path, back.url + "/v1"))  # as `python app.py --engine remote`
    engine = services.engine.wait(60)
    assert isinstance(engine, RemoteEngine) and engine.name == MODEL  # the back's only model, picked
    handlers = ChatHandlers(services)
    session, *_ = handlers.on_load("")
    star = _photo(tmp_path, "star", "star", "purple")
    done = last(ask(handlers, session, "What colour is the shape?", [star]))
    assert answer_of(done) == "purple" and done.announcement == "purple"
    # A follow-up with no photo: only the first turn's photo, sent again, can answer it.
    assert answer_of(last(ask(handlers, session, "What shape was it?"))) == "star"
    assert [t.status for t in session.conversation.turns if t.role == "assistant"] == ["complete", "complete"]
    handlers.on_new_chat(session)
    circle = _photo(tmp_path, "circle", "circle", "red")
    assert answer_of(last(ask(handlers, session, WHICH.format("star"), [circle, star]))) == "the second"
    assert answer_of(last(ask(handlers, session, WHICH.format("circle"), [circle, star]))) == "the first"
    assert back.services.admission.running == 0


def test_two_sessions_at_once_each_get_their_own_answer(back, tmp_path):
    """The front lets both answers go at once; the back (one at a time) queues the second."""
    config = front_config(tmp_path, back.url + "/v1", concurrency=2)
    handlers = front_with(config, create_remote_engine(config))
    asked = {"red": _photo(tmp_path, "r", "square", "red"), "blue": _photo(tmp_path, "b", "triangle", "blue")}
    answers: dict[str, str] = {}

    def chat(colour: str) -> None:
        session, *_ = handlers.on_load("")
        answers[colour] = answer_of(last(ask(handlers, session, "What colour is the shape?", [asked[colour]])))

    threads = [threading.Thread(target=chat, args=(colour,)) for colour in asked]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert answers == {"red": "red", "blue": "blue"}


def test_photos_are_fitted_to_the_pixel_budget_and_sent_as_jpeg(tmp_path):
    big = tmp_path / "big.png"
    draw_test_image("square", "blue").resize((960, 960)).save(big)
    engine = RemoteEngine("http://127.0.0.1:9/v1", "m", max_pixels=96 * 96)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": big.as_uri()}},
                                             {"type": "text", "text": "What colour is the shape?"}]}]
    url = engine.outgoing(messages)[0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.format == "JPEG" and sent.size == (96, 96)
    # The estimate counts the fitted photo, not the file's 960x960 pixels.
    assert engine.count_tokens(messages) < engine.count_tokens([{"role": "user", "content": "x" * 3000}])
    assert engine.outgoing(messages)[0]["content"][0]["image_url"]["url"] is url  # encoded once


def test_the_remote_engine_loads_no_torch(back, tmp_path):
    """`--engine remote` in a fresh process: the model is the server's, so torch is never imported."""
    script = (
        "import sys; from app import build_services; from mmchat.config import parse_config\n"
        f"services = build_services(parse_config(['--engine', 'remote', '--base-url', {back.url + '/v1'!r},"
        f" '--data-dir', {str(tmp_path)!r}, '--stt-backend', 'none', '--tts-backend', 'none']))\n"
        "print(services.engine.wait(60).name); assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == MODEL


def test_the_answer_ends_with_the_servers_own_account(back, shapes_engine, tmp_path):
    engine = create_remote_engine(front_config(tmp_path, back.url + "/v1"))
    photo = Path(_photo(tmp_path, "p", "triangle", "orange"))
    messages = [{"role": "system", "content": "You are mmchat."},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": photo.as_uri()}},
                                             {"type": "text", "text": "What shape is it?"}]}]
    *pieces, completion = engine.stream(messages, GenerationParams(8, 0.0), CancelToken.standalone())
    assert "".join(pieces) == "triangle"
    # The back's real count of the prompt, photo included (its JPEG has the photo's size), not the estimate.
    assert completion == Completion("stop", shapes_engine.count_tokens(messages), 1, completion.first_token_seconds)
    assert completion.first_token_seconds is not None
    *_, cut = engine.stream(messages[1:], GenerationParams(1, 0.0), CancelToken.standalone())
    assert cut.finish_reason == "length" and cut.completion_tokens == 1


# --- Stop ---

def test_stop_ends_the_front_turn_and_the_back_generation(back, shapes_engine, tmp_path):
    generation = shapes_engine.model.generation_config
    saved_eos, generation.eos_token_id = generation.eos_token_id, None  # the back's answer never ends by itself
    try:
        engine = create_remote_engine(front_config(tmp_path, back.url + "/v1"))
        handlers = front_with(front_config(tmp_path, back.url + "/v1"), engine)
        session, *_ = handlers.on_load("")
        updates = ask(handlers, session, "What colour is the shape?", [_photo(tmp_path, "p", "circle", "red")],
                      max_new_tokens=LONG)
        endings = len(back.recording.endings)
        for update in updates:  # bounded: the back writes at most LONG tokens
            if answer_of(update).strip():
                break
        assert answer_of(update).strip(), "the answer never started"
        stopper = threading.Thread(target=handlers.on_stop, args=(session,))
        stopper.start()
        stopper.join()
        done = last(updates)
    finally:
        generation.eos_token_id = saved_eos
    assert done.announcement.startswith("Stopped.")
    assert session.conversation.turns[-1].status == "interrupted"
    # The back's generation ended because the front went away, long before LONG tokens.
    assert wait_until(lambda: len(back.recording.endings) > endings and back.services.admission.running == 0
                      and not alive(BACK_WORKERS))
    assert back.recording.endings[-1] < LONG
    # and both still answer.
    assert answer_of(last(ask(handlers, session, "What shape was it?"))) == "circle"


def test_closing_the_stream_closes_the_connection(back, shapes_engine, tmp_path):
    generation = shapes_engine.model.generation_config
    saved_eos, generation.eos_token_id = generation.eos_token_id, None
    try:
        engine = create_remote_engine(front_config(tmp_path, back.url + "/v1"))
        endings = len(back.recording.endings)
        stream = engine.stream([{"role": "user", "content": "Hi"}], GenerationParams(LONG, 0.0),
                               CancelToken.standalone())
        assert isinstance(next(stream), str)
        stream.close()
        assert not alive((STREAM_THREAD,))  # closed: its connection is gone at once
        assert wait_until(lambda: len(back.recording.endings) > endings and not alive(BACK_WORKERS))
    finally:
        generation.eos_token_id = saved_eos
    assert back.recording.endings[-1] < LONG


# --- errors: each a clear message, and the front still works ---

class Scripted(BaseHTTPRequestHandler):
    """Answers /models with one model and /chat/completions as `server.reply` says."""

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).encode())

    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(json.loads(request))
        status, body = self.server.reply
        if getattr(self.server, "refuse_video", False) and b'"video_url"' in request:  # a model without video input
            status, body = 400, "At most 0 video(s) may be provided in one prompt."
        if status == 200:  # a short streamed answer in OpenAI's shape
            events = [{"choices": [{"index": 0, "delta": {"content": body}, "finish_reason": None}]},
                      {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                      {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 1}}]
            data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
            self._send(200, data, "text/event-stream")
        else:
            self._send(status, json.dumps({"error": {"message": body, "type": "server_error"}}).encode())


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.reply = (200, "fine")
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, name="test-scripted", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(30)


def test_server_errors_become_clear_messages_and_the_front_recovers(scripted, tmp_path):
    url = f"http://127.0.0.1:{scripted.server_address[1]}/v1"
    handlers = ChatHandlers(Services(config=front_config(tmp_path, url),
                                     engine=ModelHandle(lambda p: create_remote_engine(front_config(tmp_path, url), p))))
    session, *_ = handlers.on_load("")
    for status, said, expected in (
        (500, "CUDA error: out of memory", "failed while answering (HTTP 500: CUDA error: out of memory)"),
        (503, "loading", "failed while answering (HTTP 503: loading)"),
        (400, "prompt is too long", "refused the question (HTTP 400: prompt is too long). If it says"),
        (401, "Invalid API key", "refused mmchat's API key (HTTP 401: Invalid API key). Fix: pass the key"),
    ):
        scripted.reply = (status, said)
        done = last(ask(handlers, session, "Hi"))
        assert expected in done.announcement and url in done.announcement, done.announcement
        assert session.conversation.turns[-1].status == "error"
    scripted.reply = (200, "fine")
    done = last(ask(handlers, session, "Hi"))
    assert answer_of(done) == "fine" and session.conversation.turns[-1].status == "complete"
    assert handlers.services.admission.running == 0 and not alive((STREAM_THREAD,))


def _clip(tmp_path, name: str, colour: str) -> str:
    return str(still_clip(tmp_path / name, draw_test_image("circle", colour)))


def test_a_clip_goes_to_the_server_as_a_video_url_part(back, tmp_path):
    handlers = ChatHandlers(build_services(front_config(tmp_path, back.url + "/v1")))
    session, *_ = handlers.on_load("")
    done = last(ask(handlers, session, "What colour is the shape?", [_clip(tmp_path, "blue.mp4", "blue")]))
    assert answer_of(done) == "blue"  # the back decoded the front's video_url (its sampled frames, as MP4)


def test_a_server_without_video_input_gets_clips_as_frames_and_is_told_once(scripted, tmp_path):
    from mmchat.events import Notice

    url = f"http://127.0.0.1:{scripted.server_address[1]}/v1"
    scripted.refuse_video = True
    engine = RemoteEngine(url, "scripted", max_pixels=200_000)
    clip = Path(_clip(tmp_path, "red.mp4", "red")).as_uri()
    question = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip}},
                                             {"type": "text", "text": "What happens?"}]}]
    items = list(engine.stream(question, GenerationParams(8, 0.0), CancelToken.standalone()))
    notices = [item for item in items if isinstance(item, Notice)]
    assert len(notices) == 1 and "does not take video clips" in notices[0].message
    assert "".join(item for item in items if isinstance(item, str)) == "fine"
    first, second = scripted.requests
    assert first["messages"][0]["content"][0]["type"] == "video_url"
    assert first["messages"][0]["content"][0]["video_url"]["url"].startswith("data:video/mp4;base64,")
    kinds = [item["type"] for item in second["messages"][0]["content"]]
    assert "video_url" not in kinds and kinds.count("image_url") == 4
    # The next clip goes as frames at once, and nothing more is said.
    items = list(engine.stream(question, GenerationParams(8, 0.0), CancelToken.standalone()))
    assert not [item for item in items if isinstance(item, Notice)] and len(scripted.requests) == 3
    assert "video_url" not in json.dumps(scripted.requests[-1])


def test_nothing_listening(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    config = front_config(tmp_path, url)
    # At start-up (not waiting for a server to come up): the page says why there is no model.
    handlers = ChatHandlers(Services(config=config, engine=ModelHandle(
        lambda progress: create_remote_engine(config, progress, wait_for_server=0))))
    session, *_ = handlers.on_load("")
    done = last(ask(handlers, session, "Hi"))
    assert done.announcement.startswith(
        f"Cannot reach the model server at {url} (connection refused): is it running?")
    assert "--base-url" in done.announcement and session.conversation.turns == []
    assert "Model unavailable" in SettingsHandlers(handlers.services).model_status()[0]
    # A server that was there at start-up and went away: the answer says so, the next one works again.
    handlers = front_with(config, RemoteEngine(url, "m", max_pixels=config.max_pixels))
    session, *_ = handlers.on_load("")
    done = last(ask(handlers, session, "Hi"))
    assert done.announcement.startswith(f"Cannot reach the model server at {url} (connection refused)")
    assert session.conversation.turns[-1].status == "error"
    assert handlers.services.admission.running == 0


def test_loading_waits_for_a_server_still_starting(shapes_engine, tmp_path):
    later = LiveServer(make_services(back_config(tmp_path), shapes_engine))  # its port is chosen, nothing listens yet
    config = front_config(tmp_path, later.url + "/v1")
    handle = ModelHandle(lambda progress: create_remote_engine(config, progress, wait_for_server=300), "model").start()
    assert wait_until(lambda: "Waiting for the model server" in handle.status.message)
    assert not handle.loaded(0)
    with later:
        assert handle.wait(60).name == MODEL


@pytest.mark.parametrize("base_url", ["", "localhost:8000/v1"])
def test_a_missing_or_malformed_base_url(tmp_path, base_url):
    with pytest.raises(ModelUnavailableError) as refused:
        create_remote_engine(front_config(tmp_path, base_url))
    assert "--base-url" in str(refused.value) and "http://HOST:8000/v1" in str(refused.value)


def test_a_server_that_never_answers_times_out(tmp_path):
    silent = socket.socket()  # the kernel completes each connection; nobody ever reads or writes
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        config = front_config(tmp_path, url, remote_timeout=0.5)
        handlers = front_with(config, RemoteEngine(url, "m", max_pixels=config.max_pixels, timeout=0.5))
        session, *_ = handlers.on_load("")
        done = last(ask(handlers, session, "Hi"))
        assert done.announcement.startswith(f"The model server at {url} sent nothing for 0.5 s."), done.announcement
        assert "--remote-timeout" in done.announcement
        # Stop while it is silent ends the turn at once, not at the time-out.
        handlers = front_with(config, RemoteEngine(url, "m", max_pixels=config.max_pixels, timeout=600))
        session, *_ = handlers.on_load("")
        updates = ask(handlers, session, "Hi")
        next(updates)  # the question is shown; the answer waits for the server
        handlers.on_stop(session)
        done = last(updates)
        assert done.announcement == "Stopped. " and session.conversation.turns[-1].status == "interrupted"
        assert wait_until(lambda: not alive((STREAM_THREAD,)), within=5)
    finally:
        silent.close()


def test_a_wrong_key_or_model_name_at_start_up(guarded_back, tmp_path):
    url = guarded_back.url + "/v1"
    with pytest.raises(ModelUnavailableError) as refused:
        create_remote_engine(front_config(tmp_path, url, remote_api_key="wrong"))
    assert "refused mmchat's API key (HTTP 401" in str(refused.value) and "--remote-api-key" in str(refused.value)
    with pytest.raises(ModelUnavailableError) as missing:
        create_remote_engine(front_config(tmp_path, url, remote_api_key="back-key", remote_model="gpt-4o"))
    assert str(missing.value) == (f"The model server at {url} has no model 'gpt-4o'; it offers: {MODEL}. "
                                  "Fix: pass one of them with --remote-model.")
    engine = create_remote_engine(front_config(tmp_path, url, remote_api_key="back-key", remote_model=MODEL))
    assert engine.name == MODEL


def test_a_wrong_key_or_model_name_while_answering(guarded_back, tmp_path, config):
    url = guarded_back.url + "/v1"
    for engine, expected in (
        (RemoteEngine(url, MODEL, max_pixels=config.max_pixels, api_key="wrong"), "refused mmchat's API key (HTTP 401"),
        (RemoteEngine(url, "gpt-4o", max_pixels=config.max_pixels, api_key="back-key"),
         f"has no model 'gpt-4o' (HTTP 404: The model 'gpt-4o' does not exist; this server serves '{MODEL}'.). "
         f"It offers: {MODEL}. Fix: pass one of them with --remote-model."),
    ):
        handlers = front_with(front_config(tmp_path, url), engine)
        session, *_ = handlers.on_load("")
        done = last(ask(handlers, session, "Hi"))
        assert expected in done.announcement, done.announcement
    right = front_with(front_config(tmp_path, url),
                       RemoteEngine(url, MODEL, max_pixels=config.max_pixels, api_key="back-key"))
    session, *_ = right.on_load("")
    star = _photo(tmp_path, "s", "star", "green")
    assert answer_of(last(ask(right, session, "What colour is the shape?", [star]))) == "green"
