"""Limits (issue 16, "Limits"): each is a config field with a sane default; each refusal is
a clear message in the page (a warning, the message kept in the box) and a 4xx JSON error
in the API (413 for what is too large, 429 with Retry-After for too many questions, 400
otherwise), and the conversation is as it was, in the session and in the store.

The page is driven through its handlers (ChatHandlers) and the API through a real
server on loopback; the turns-per-minute limit runs on a clock the test moves, so no
test waits for a minute to pass.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import wave

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import last as _last, make_services, with_config
from fixture_models import draw_test_image
from mmchat.config import Config, build_parser, parse_config
from mmchat.engine import GenerationParams
from mmchat.events import InputRejected
from mmchat.model_handle import ModelHandle
from mmchat.turn.rate_limit import TurnRateLimit
from mmchat.turn.session import ChatSession
from mmchat.turn import Services, UserInput, regenerate, submit
from mmchat.web.chat import ChatHandlers
from test_api_support import LiveServer

QUIET = (4, 0.0, False, "auto", 1.0)  # the page's settings: max tokens, temperature, speak, voice, rate
ONE_TOKEN = GenerationParams(max_new_tokens=1, temperature=0.0)


class Clock:
    """time.monotonic for the limiter, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def too_fast(per_minute: int, seconds: int) -> str:
    return (f"You are sending questions faster than this server allows: {per_minute} a minute. "
            f"Try again in {seconds} seconds.")


def ask_page(handlers, session, text, files=()):
    message = {"text": text, "files": [str(f) for f in files]}
    return message, _last(handlers.on_submit(session, message, False, None, *QUIET, progress=None))


# --- the config ---

def test_every_limit_is_a_documented_option_with_a_sane_default():
    defaults = Config()
    assert (defaults.max_text_chars, defaults.max_images_per_turn, defaults.max_upload_mb, defaults.max_image_pixels,
            defaults.max_audio_seconds, defaults.max_turns_per_minute) == (8000, 4, 25.0, 100_000_000, 600.0, 20)
    help_text = build_parser({}).format_help()
    for flag in ("--max-text-chars", "--max-images-per-turn", "--max-upload-mb", "--max-image-pixels",
                 "--max-audio-seconds", "--max-turns-per-minute"):
        assert flag in help_text
    assert "MMCHAT_MAX_TURNS_PER_MINUTE" in help_text
    assert parse_config(["--max-turns-per-minute", "3"], {}).max_turns_per_minute == 3
    assert parse_config([], {"MMCHAT_MAX_TURNS_PER_MINUTE": "0"}).max_turns_per_minute == 0
    assert Services(config=Config(max_turns_per_minute=7), engine=ModelHandle.ready(object())).turn_limit.per_minute == 7


def test_the_minute_slides_and_each_sender_has_their_own():
    clock = Clock()
    limit = TurnRateLimit(3, clock=clock)
    assert [limit.take("ann") for _ in range(3)] == [None, None, None]
    assert limit.take("ann") == pytest.approx(60.0)
    assert limit.take("bob") is None  # someone else is not held up
    clock.now += 20
    assert limit.take("ann") == pytest.approx(40.0)  # a refusal takes no place
    clock.now += 40
    assert limit.take("ann") is None  # the first turn has left the minute
    assert limit.take("ann") is None and limit.take("ann") is None
    assert limit.take("ann") == pytest.approx(60.0)
    assert all(TurnRateLimit(0, clock=clock).take("ann") is None for _ in range(100))  # 0: no limit


# --- the page ---

@pytest.fixture
def paced(config, shapes_engine, store):
    """The page's handlers with two questions a minute, on a clock the test moves."""
    clock = Clock()
    services = make_services(with_config(config, max_new_tokens=4, max_turns_per_minute=2), shapes_engine, store)
    services.turn_limit = TurnRateLimit(2, clock=clock)
    return ChatHandlers(services), clock


def test_the_page_refuses_a_question_too_many_and_keeps_it_in_the_box(paced, store, toasts):
    handlers, clock = paced
    session, *_ = handlers.on_load("")
    ask_page(handlers, session, "What colour is it?")
    clock.now += 15
    ask_page(handlers, session, "And its shape?")
    before, saved = session.conversation.copy().turns, store.load(session.conversation.id).turns
    assert len(before) == 4
    message, view = ask_page(handlers, session, "One more?")
    chat, box, announcement = view.chat, view.box, view.announcement
    warnings = [text for kind, text in toasts if kind == "warning"]
    assert warnings == [too_fast(2, 45)]
    assert announcement == warnings[0] and box["value"] == message
    assert session.conversation.turns == before and len(chat) == 4
    assert store.load(session.conversation.id).turns == saved
    # Answering again counts too, and is refused the same way, keeping the old answer.
    view = _last(handlers.on_regenerate(session, *QUIET))
    chat, box, announcement = view.chat, view.box, view.announcement
    assert announcement == too_fast(2, 45) and session.conversation.turns == before
    # Once the first question has left the minute, the next one is answered.
    clock.now += 45
    chat = ask_page(handlers, session, "One more?")[1].chat
    assert [m["role"] for m in chat] == ["user", "assistant"] * 3
    assert len(store.load(session.conversation.id).turns) == 6


def test_the_turn_layer_counts_edits_and_regenerations_and_not_refusals(session, config, shapes_engine, store):
    clock = Clock()
    services = make_services(config, shapes_engine, store)
    services.turn_limit = TurnRateLimit(3, clock=clock)
    list(submit(session, UserInput("x" * 9000), services, ONE_TOKEN))  # refused for its length: no place taken
    assert list(submit(session, UserInput("first"), services, ONE_TOKEN))[-1].status == "complete"
    assert list(regenerate(session, services, ONE_TOKEN))[-1].status == "complete"
    from mmchat.turn import edit_last

    assert list(edit_last(session, "edited", services, ONE_TOKEN))[-1].status == "complete"
    before = session.conversation.copy().turns
    refused = list(submit(session, UserInput("fourth"), services, ONE_TOKEN))
    assert [type(e) for e in refused] == [InputRejected] and refused[0].message == too_fast(3, 60)
    assert session.conversation.turns == before
    # Another person (with --auth, another owner) is not held up by this one.
    other = ChatSession(store, owner="someone-else")
    assert list(submit(other, UserInput("hello"), services, ONE_TOKEN))[-1].status == "complete"


def _noise_png(path, size) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def _wav(path, seconds: float, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(int(seconds * rate)))
        out.writeframes(frames)


PAGE_LIMITS = {  # name: (config changes, what to send (tmp_path -> text, files), words the refusal holds)
    "message length": (dict(max_text_chars=50), lambda tmp: ("y" * 51, []), "the limit is 50"),
    "photos per message": (dict(max_images_per_turn=2), lambda tmp: ("Colour?", [_photo(tmp, i) for i in range(3)]),
                           "at most 2"),
    "upload bytes": (dict(max_upload_mb=1.0), lambda tmp: ("Colour?", [_big_photo(tmp)]), "the limit is 1 MB"),
    "photo pixels": (dict(max_image_pixels=1_000_000), lambda tmp: ("Colour?", [_wide_photo(tmp)]), "1 MP"),
    "audio seconds": (dict(max_audio_seconds=1.0), lambda tmp: ("", [_recording(tmp)]), "1 s"),
}


def _photo(tmp, index):
    path = tmp / f"photo{index}.png"
    draw_test_image("circle", "red", seed=index).save(path)
    return path


def _big_photo(tmp):
    path = tmp / "big.png"
    _noise_png(path, (700, 700))  # about 1.5 MB of noise
    return path


def _wide_photo(tmp):
    path = tmp / "wide.png"
    Image.new("RGB", (1400, 1000), "white").save(path)
    return path


def _recording(tmp):
    path = tmp / "long.wav"
    _wav(path, 2.5)
    return path


@pytest.mark.parametrize("case", PAGE_LIMITS)
def test_each_limit_is_a_warning_on_the_page_with_the_message_kept_and_nothing_changed(
        case, config, shapes_engine, store, tmp_path, toasts):
    changes, make, says = PAGE_LIMITS[case]
    services = make_services(with_config(config, max_new_tokens=4, **changes), shapes_engine, store)
    services.stt = ModelHandle.ready(object(), "speech recognizer")  # the recording is refused before it is heard
    handlers = ChatHandlers(services)
    session, *_ = handlers.on_load("")
    ask_page(handlers, session, "What colour is it?", [_photo(tmp_path, 9)])
    before, saved = session.conversation.copy().turns, store.load(session.conversation.id).turns
    text, files = make(tmp_path)
    message, view = ask_page(handlers, session, text, files)
    chat, box, announcement = view.chat, view.box, view.announcement
    warnings = [shown for kind, shown in toasts if kind == "warning"]
    assert len(warnings) == 1 and says in warnings[0], warnings
    assert announcement == warnings[0] and box["value"] == message
    assert session.conversation.turns == before and len(chat) == 2
    assert store.load(session.conversation.id).turns == saved


# --- the API ---

def data_url(image: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return f"data:image/{format.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def photo_part(image: Image.Image) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(image)}}


def question(text: str, *images: dict) -> list[dict]:
    return [{"role": "user", "content": [*images, {"type": "text", "text": text}]}]


def post(live, body: dict | bytes, key: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(live.url + "/v1/chat/completions", content=content, headers=headers, timeout=120)


def chat(messages, **options) -> dict:
    return {"model": "m", "messages": messages, "max_tokens": 2, "temperature": 0, **options}


@pytest.fixture
def limited_server(shapes_engine, tmp_path):
    """The app's server, page and API, with small limits and two questions a minute on a moved clock."""
    keys = tmp_path / "keys.txt"
    keys.write_text("key-one\nkey-two\n")
    config = Config(device="cpu", data_dir=tmp_path / "data", temperature=0.0, stt_backend="none", tts_backend="none",
                    max_new_tokens=2, max_text_chars=50, max_images_per_turn=2, max_upload_mb=1.0,
                    max_image_pixels=1_000_000, max_turns_per_minute=2, api_keys_file=str(keys))
    clock = Clock()
    services = make_services(config, shapes_engine)
    services.turn_limit = TurnRateLimit(2, clock=clock)
    with LiveServer(services) as live:
        live.clock = clock
        yield live


def test_the_api_says_429_with_retry_after_to_a_client_too_fast_and_others_go_on(limited_server, toasts):
    live = limited_server
    ok = chat(question("What colour is the shape?", photo_part(draw_test_image("circle", "red"))))
    assert post(live, ok, "key-one").status_code == 200
    live.clock.now += 10
    assert post(live, ok, "key-one").status_code == 200
    for stream in (False, True):
        refused = post(live, {**ok, "stream": stream}, "key-one")
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "50"
        assert refused.headers["content-type"].startswith("application/json")
        error = refused.json()["error"]
        assert error["message"] == too_fast(2, 50)
        assert error["type"] == "rate_limit_exceeded" and error["code"] == "rate_limit_exceeded"
    # Another key is another client; the page is another person too (no --auth here).
    assert post(live, ok, "key-two").status_code == 200
    handlers = ChatHandlers(live.services)
    session, *_ = handlers.on_load("")
    chat_shown = ask_page(handlers, session, "What colour is it?")[1].chat
    assert [m["role"] for m in chat_shown] == ["user", "assistant"]
    # A minute after the first question, key-one may ask again.
    live.clock.now += 50
    assert post(live, ok, "key-one").status_code == 200


API_LIMITS = {  # name: (the request body, status, words the error holds)
    "message length": (lambda: chat(question("z" * 51)), 400, "the limit is 50"),
    "photos per message": (lambda: chat(question("Colour?", *[photo_part(draw_test_image("star", "blue", seed=i))
                                                             for i in range(3)])), 400, "at most 2"),
    "photos per earlier message": (lambda: chat([*question("Colour?", *[photo_part(draw_test_image("star", "red"))] * 3),
                                                 {"role": "assistant", "content": "red"}, *question("Shape?")]),
                                   400, "at most 2"),
    "upload bytes": (lambda: chat(question("Colour?", {"type": "image_url", "image_url": {"url": _noise_url()}})),
                     413, "the limit is 1 MB"),
    "photo pixels": (lambda: chat(question("Colour?", photo_part(Image.new("RGB", (1400, 1000), "white")))),
                     400, "1 MP"),
    "request body": (lambda: json.dumps(chat(question("Colour?"), padding="p" * 16_000_000)).encode(), 413,
                     "larger than this server accepts"),
}


def _noise_url() -> str:
    return data_url(Image.fromarray(np.random.default_rng(1).integers(0, 255, (700, 700, 3), dtype=np.uint8)))


@pytest.mark.parametrize("case", API_LIMITS)
def test_each_limit_is_a_4xx_json_error_in_the_api_and_the_server_goes_on(limited_server, case):
    make, status, says = API_LIMITS[case]
    for stream in (False, True):
        body = make()
        if isinstance(body, dict):
            body["stream"] = stream
        refused = post(limited_server, body, "key-one")
        assert refused.status_code == status, refused.text[:500]
        error = refused.json()["error"]
        assert says in error["message"], error
        assert error["type"] == "invalid_request_error"
    # A refusal takes no place in the minute: two questions are still answered.
    ok = chat(question("What colour is the shape?", photo_part(draw_test_image("circle", "green"))))
    for _ in range(2):
        answered = post(limited_server, ok, "key-one")
        assert answered.status_code == 200
    assert answered.json()["choices"][0]["message"]["content"].strip() == "green"


def test_with_auth_one_person_is_one_sender_on_the_page_and_every_key_of_theirs(shapes_engine, tmp_path):
    from mmchat.users import Accounts

    data = tmp_path / "data"
    with Accounts(data) as accounts:
        for name in ("alice", "bob"):
            accounts.add_user(name, f"{name}-password-long-enough")
        alice_keys = [accounts.add_key("alice"), accounts.add_key("alice")]
        bob_key = accounts.add_key("bob")
    config = Config(device="cpu", data_dir=data, temperature=0.0, stt_backend="none", tts_backend="none",
                    max_new_tokens=2, auth=True, max_turns_per_minute=2)
    services = make_services(config, shapes_engine)
    services.turn_limit = TurnRateLimit(2, clock=Clock())
    ok = chat(question("What colour is the shape?", photo_part(draw_test_image("circle", "blue"))))
    with LiveServer(services) as live:
        assert post(live, ok, alice_keys[0]).status_code == 200
        on_the_page = ChatSession(services.open_store(), owner="alice")  # her logged-in page session
        assert list(submit(on_the_page, UserInput("Hello"), services, ONE_TOKEN))[-1].status == "complete"
        for key in alice_keys:  # her minute is full, whichever key she uses
            refused = post(live, ok, key)
            assert refused.status_code == 429 and refused.json()["error"]["message"] == too_fast(2, 60)
        assert post(live, ok, bob_key).status_code == 200
