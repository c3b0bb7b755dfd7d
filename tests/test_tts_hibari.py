"""The hibari backend through the real loader: its bundled voice, heard back by Whisper tiny.en."""

from __future__ import annotations

import dataclasses
import logging
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from mmchat.cancel import CancelToken
from mmchat.config import Config, parse_config
from mmchat.errors import ModelUnavailableError
from mmchat.events import AudioChunk
from mmchat.tts import create_text_to_speech
from mmchat.tts.hibari_backend import HibariTextToSpeech, load_hibari_voice
from mmchat.tts.worker import THREAD_NAME, SpeechWorker
from test_tts import install_fake_chinese_voice

HANG = 60.0  # only a hang reaches it; nothing here measures speed


@pytest.fixture(scope="module")
def hibari_config(tmp_path_factory) -> Config:
    return Config(device="cpu", data_dir=tmp_path_factory.mktemp("data"), tts_backend="hibari", voice="auto")


@pytest.fixture(scope="module")
def tts(hibari_config):
    return create_text_to_speech(hibari_config)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, and an empty hibari cache: only what ships in the package can load."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("HIBARI_HOME", str(tmp_path / "hibari-cache"))


def test_the_backend_is_a_choice_on_the_command_line(tmp_path):
    config = parse_config(["--tts-backend", "hibari", "--data-dir", str(tmp_path)], environ={})
    assert config.tts_backend == "hibari"


def test_a_sentence_is_spoken_as_non_silent_mono_float_audio(tts):
    chunks = list(tts.stream(["Hello there.", "  ", "How are you today?"], CancelToken.standalone()))
    assert [chunk.text for chunk in chunks] == ["Hello there.", "How are you today?"]
    for chunk in chunks:
        assert chunk.sample_rate == tts.sample_rate == 24000
        assert chunk.samples.dtype == np.float32 and chunk.samples.ndim == 1
        assert 0.4 < chunk.duration < 4.0
        assert np.abs(chunk.samples).max() <= 1.0
        assert np.sqrt(np.mean(chunk.samples**2)) > 0.01  # speech, not silence


def test_the_bundled_voice_needs_no_network(offline):
    voice = load_hibari_voice.__wrapped__("heart")  # a fresh load, not the cached one
    [chunk] = HibariTextToSpeech(voice).stream(["It works offline."], CancelToken.standalone())
    assert chunk.duration > 0.5


def test_another_voice_offline_says_what_to_do(offline, tmp_path):
    with pytest.raises(ModelUnavailableError) as error:
        create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="hibari", voice="emma"))
    message = error.value.message
    assert "'emma'" in message and "could not be downloaded" in message
    assert "--voice auto" in message and str(tmp_path / "hibari-cache") in message


def test_an_unknown_voice_lists_the_voices(tmp_path):
    with pytest.raises(ModelUnavailableError) as error:
        create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="hibari", voice="nobody"))
    assert "'nobody'" in error.value.message and "heart" in error.value.message and "emma" in error.value.message


def test_a_piper_voice_named_in_the_voice_setting_is_read_by_piper(tmp_path):
    # The page's voice menu lists the installed Piper voices whatever the backend.
    tts = create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="hibari", voice="en_US-joe-medium"))
    [chunk] = tts.stream(["Hello."], CancelToken.standalone())
    assert chunk.sample_rate == 22050 and chunk.duration > 0.2


def test_the_voice_is_cached_per_config(tts, hibari_config):
    assert create_text_to_speech(hibari_config) is tts


# --- Cancel (between sentences: the shared contract in test_tts.py, run for both voices) ----


class _CancelAfterFirstPart:
    """The bundled voice, with the turn cancelled as soon as its first part is synthesized."""

    def __init__(self, voice, cancel: CancelToken) -> None:
        self._voice, self._cancel = voice, cancel
        self.sample_rate = voice.sample_rate
        self.parts = 0

    def stream(self, text, speed=1.0):
        for part in self._voice.stream(text, speed=speed):
            self.parts += 1
            self._cancel.cancel()
            yield part


def test_cancel_inside_a_sentence_stops_before_its_next_part():
    cancel = CancelToken.standalone()
    voice = _CancelAfterFirstPart(load_hibari_voice("heart"), cancel)
    # hibari cuts this one in two itself ("at 5 p.m. Then"); the second part is never made.
    assert list(HibariTextToSpeech(voice).stream(["She left at 5 p.m. Then it rained."], cancel)) == []
    assert voice.parts == 1


# --- Rate and languages ------------------------------------------------------------------


def test_a_faster_rate_speaks_the_same_words_in_less_time(tts, hibari_config):
    fast = create_text_to_speech(dataclasses.replace(hibari_config, speech_rate=1.5))
    sentence = ["The quick brown fox jumps over the lazy dog near the river bank."]
    normal = sum(chunk.duration for chunk in tts.stream(sentence, CancelToken.standalone()))
    quick = sum(chunk.duration for chunk in fast.stream(sentence, CancelToken.standalone()))
    assert 0.5 < quick / normal < 0.8  # 1 / 1.5 = 0.67


def test_auto_reads_chinese_with_an_installed_piper_voice(tmp_path):
    install_fake_chinese_voice(tmp_path / "voices")
    tts = create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="hibari"))
    chunks = list(tts.stream(["Hello.", "你好，世界。"], CancelToken.standalone()))
    assert [chunk.text for chunk in chunks] == ["Hello.", "你好，世界。"]
    assert all(chunk.sample_rate == 24000 for chunk in chunks)
    assert chunks[1].duration > 0.2


def test_without_a_chinese_voice_chinese_is_skipped_with_one_clear_warning(tmp_path, caplog):
    tts = create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="hibari"))
    with caplog.at_level(logging.WARNING, logger="mmchat.tts"):
        chunks = list(tts.stream(["你好。", "Hello.", "谢谢。"], CancelToken.standalone()))
    assert [chunk.text for chunk in chunks] == ["Hello."]
    warnings = [r.getMessage() for r in caplog.records if "no Piper voice for language 'zh'" in r.getMessage()]
    assert len(warnings) == 1 and "voices folder" in warnings[0]


# --- The first clause through the speech worker -------------------------------------------


def test_the_worker_speaks_a_long_first_sentence_from_its_first_clause(tts):
    heard = threading.Event()
    chunks: list[AudioChunk] = []
    worker = SpeechWorker(tts, CancelToken.standalone(), lambda chunk: (chunks.append(chunk), heard.set()))
    try:
        for word in "The photo shows two cats curled up together on a red sofa, with".split(" "):
            worker.feed(word + " ")
        # The sentence has not ended, and no more text comes until its first clause is heard.
        assert heard.wait(HANG), "the first clause was not spoken before the sentence ended"
        worker.feed("afternoon light behind them. They sleep, both of them, on the old red sofa.")
        worker.finish()
        assert worker.join(HANG)
    finally:
        worker.close()
    assert [chunk.text for chunk in chunks] == [
        "The photo shows two cats curled up together on a red sofa,",
        "with afternoon light behind them.",
        "They sleep, both of them, on the old red sofa.",
    ]
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]
    assert worker.error is None

