"""The audio endpoints through the official `openai` client against a real server on
loopback: Whisper (the bundled tiny.en) behind /v1/audio/transcriptions, the bundled
Piper voice behind /v1/audio/speech, and a round trip through both."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import httpx
import jiwer
import openai
import pytest
import soundfile as sf

from conftest import voice_services_for
from mmchat.media.audio import SAMPLE_RATE, load_audio
from mmchat.config import Config
from mmchat.tts import create_text_to_speech
from test_api_support import LiveServer

JFK = Path(__file__).parent / "data" / "jfk.flac"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
SENTENCE = "The quick brown fox jumps over the lazy dog."


def wer(reference: str, heard: str) -> float:
    def words(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())

    return jiwer.wer(words(reference), words(heard))


@pytest.fixture(scope="module")
def live(tmp_path_factory, qwen_engine, speech_to_text, text_to_speech):
    config = Config(device="cpu", data_dir=tmp_path_factory.mktemp("audio"), stt_backend="faster-whisper",
                    tts_backend="piper")
    services = voice_services_for(config, qwen_engine, speech_to_text, text_to_speech)
    # As app.py builds it: each voice and rate asked for is the configured voice, changed.
    services.tts = lambda speech: create_text_to_speech(
        dataclasses.replace(services.config, voice=speech.voice, speech_rate=speech.rate))
    with LiveServer(services) as server:
        yield server


@pytest.fixture
def client(live):
    return live.client()


# --- speech in ---

def test_jfk_is_transcribed(client):
    with open(JFK, "rb") as recording:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=recording)
    assert wer(JFK_TEXT, transcript.text) <= 0.10, transcript.text


def test_each_response_format(client):
    def ask(response_format, **options):
        with open(JFK, "rb") as recording:
            return client.audio.transcriptions.create(model="whisper-1", file=recording,
                                                      response_format=response_format, **options)

    text = ask("text", language="en")
    assert isinstance(text, str) and wer(JFK_TEXT, text) <= 0.10
    verbose = ask("verbose_json")
    assert verbose.language == "en" and 10.5 < verbose.duration < 11.5
    assert verbose.segments and verbose.segments[-1].end <= verbose.duration + 0.5
    assert " ".join(s.text for s in verbose.segments).split() == verbose.text.split()
    srt = ask("srt")
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S", srt), srt
    vtt = ask("vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:") and "-->" in vtt
    assert wer(JFK_TEXT, " ".join(line for line in vtt.splitlines()[2:] if line and "-->" not in line)) <= 0.10


@pytest.mark.parametrize("files, data, status, says", [
    ({"file": ("noise.wav", b"this is not audio", "audio/wav")}, {"model": "whisper-1"}, 400, "not audio"),
    ({"file": ("jfk.flac", JFK.read_bytes(), "audio/flac")}, {"model": "whisper-1", "response_format": "doc"},
     400, "response_format"),
    ({"file": ("jfk.flac", JFK.read_bytes(), "audio/flac")}, {"model": "whisper-1", "language": "zh"}, 400, "English"),
    ({"file": ("jfk.flac", JFK.read_bytes(), "audio/flac")}, {"model": "whisper-1", "language": "english!"},
     400, "language"),
    (None, {"model": "whisper-1"}, 400, "file"),
])
def test_bad_transcription_requests_are_4xx_and_the_next_is_answered(live, client, files, data, status, says):
    response = httpx.post(live.url + "/v1/audio/transcriptions", files=files or {"other": ("x", b"x")},
                          data=data, timeout=120)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and says.lower() in error["message"].lower(), error
    test_jfk_is_transcribed(client)


# --- speech out ---

def _seconds(audio: bytes, response_format: str) -> float:
    if response_format == "pcm":
        return len(audio) / 2 / 24_000
    return len(load_audio(audio, max_seconds=60)) / SAMPLE_RATE


def test_speech_round_trip_is_heard_back_as_written(client):
    spoken = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav")
    audio = spoken.read()
    samples, rate = sf.read(io.BytesIO(audio))
    assert rate == 22050 and len(samples) / rate > 1.0
    heard = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio, "audio/wav"))
    assert wer(SENTENCE, heard.text) <= 0.2, heard.text


@pytest.mark.parametrize("response_format", ["mp3", "opus", "aac", "flac", "pcm"])
def test_every_format_holds_the_same_speech(client, response_format):
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav").read()
    other = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                       response_format=response_format).read()
    # Each request is a fresh synthesis, and Piper varies its timing a little (about 0.1 s here).
    assert abs(_seconds(other, response_format) - _seconds(wav, "wav")) < 0.1 * _seconds(wav, "wav") + 0.1
    if response_format != "pcm":  # raw pcm has no header to decode it by; its length is checked above
        heard = client.audio.transcriptions.create(model="whisper-1",
                                                   file=(f"speech.{response_format}", other, "audio/*"))
        assert wer(SENTENCE, heard.text) <= 0.2, heard.text


def test_speed_changes_the_speaking_rate(client):
    normal = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav").read()
    fast = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav",
                                      speed=2.0).read()
    assert _seconds(fast, "wav") < 0.75 * _seconds(normal, "wav")


@pytest.mark.parametrize("change, says", [
    (dict(input="a" * 4097), "input"),
    (dict(input="   "), "empty"),
    (dict(voice="../../etc/voice.onnx"), "voice"),
    (dict(voice="not-installed"), "not installed"),
    (dict(response_format="ogg"), "response_format"),
    (dict(speed=9), "speed"),
])
def test_bad_speech_requests_are_4xx_and_the_next_is_answered(client, change, says):
    request = dict(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav")
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.speech.create(**{**request, **change}).read()
    assert says.lower() in refused.value.body["message"].lower(), refused.value.body
    assert _seconds(client.audio.speech.create(**request).read(), "wav") > 1.0
