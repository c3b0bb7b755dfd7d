"""Shared fixtures: tiny fixture models loaded through the app's real loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image

from fixture_models import fixture_model_path
from mmchat.config import Config
from mmchat.engine.local import create_local_engine
from mmchat.model_handle import ModelHandle
from mmchat.turn.session import ChatSession
from mmchat.store import SQLiteStore
from mmchat.turn import Services

FAMILIES = ("tiny-qwen3-vl", "tiny-idefics3")


def engine_for(name: str, quantization: str = "none", **config):
    """Load a fixture exactly as `python app.py --model FOLDER` would (on the CPU)."""
    settings = Config(model=str(fixture_model_path(name)), device="cpu", quantization=quantization, **config)
    return create_local_engine(settings)


@pytest.fixture(scope="session")
def qwen_engine():
    return engine_for("tiny-qwen3-vl")


@pytest.fixture(scope="session")
def idefics_engine():
    return engine_for("tiny-idefics3")


@pytest.fixture(scope="session", params=FAMILIES)
def any_engine(request):
    return request.getfixturevalue({"tiny-qwen3-vl": "qwen_engine", "tiny-idefics3": "idefics_engine"}[request.param])


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(device="cpu", data_dir=tmp_path / "data", temperature=0.0, stt_backend="none", tts_backend="none")


def make_services(config: Config, engine, store: SQLiteStore | None = None) -> Services:
    return Services(config=config, engine=ModelHandle.ready(engine), store=store)


@pytest.fixture
def store(config) -> SQLiteStore:
    """The app's conversation store in the test's data folder."""
    with SQLiteStore(config.data_dir) as opened:
        yield opened


@pytest.fixture
def services(config, qwen_engine, store) -> Services:
    return make_services(config, qwen_engine, store)


@pytest.fixture
def session(store) -> ChatSession:
    return ChatSession(store)


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    """Two small distinct photos."""
    paths = []
    for name, colour, size in (("red.png", "red", (64, 48)), ("blue.jpg", "blue", (40, 80))):
        path = tmp_path / name
        Image.new("RGB", size, colour).save(path)
        paths.append(path)
    return paths


def last(events):
    """The last of a handler's updates (or a turn's events)."""
    result = None
    for result in events:
        pass
    return result


@pytest.fixture
def toasts(monkeypatch):
    """What the page's handlers show as toasts: ("warning" | "info", message), in order."""
    import gradio as gr

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: shown.append(("warning", message)))
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: shown.append(("info", message)))
    return shown


def with_config(config: Config, **changes) -> Config:
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="session")
def shapes_engine():
    """The trained shapes-vlm in full precision, loaded as `python app.py --model` would."""
    from fixture_models import shapes_vlm_path

    return create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))


@pytest.fixture
def shapes_app(config, shapes_engine):
    """The page served on loopback (Gradio's own server), shapes-vlm answering in a word; its URL."""
    from test_browser import _serve

    url, demo = _serve(make_services(with_config(config, max_new_tokens=8), shapes_engine))
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="session")
def speech_to_text():
    """The app's Whisper adapter with the bundled tiny.en weights."""
    from mmchat.stt import create_speech_to_text

    return create_speech_to_text(Config(device="cpu", stt_backend="faster-whisper", speech_language="en"))


@pytest.fixture(scope="session")
def text_to_speech(tmp_path_factory):
    """The app's default voice (hibari, the bundled English voice), as `python app.py` speaks."""
    from mmchat.tts import create_text_to_speech

    return create_text_to_speech(Config(device="cpu", data_dir=tmp_path_factory.mktemp("voices")))


def voice_services_for(config: Config, engine, speech_to_text, text_to_speech) -> Services:
    services = make_services(with_config(config, speech_language="en"), engine)
    services.stt = ModelHandle.ready(speech_to_text, "speech recognizer")
    services.tts = lambda speech: text_to_speech
    return services
