"""Stop while a recording is transcribed: both Whisper backends end at their next step
and return what they had, on a recording of several 30 s windows."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mmchat.media.audio import load_audio
from mmchat.cancel import CancelToken
from mmchat.config import Config
from mmchat.stt import create_speech_to_text, weights
from test_stt import JFK, normalized, parrot_checkpoint, silence

HANG = 120.0  # only a transcription that ignores Stop gets near this; nothing measures speed


@pytest.fixture(scope="module")
def long_recording() -> np.ndarray:
    """jfk.flac six times with pauses: 66 s of speech in 116 s, more than two 30 s windows
    for either backend (each groups the speech into windows its own way)."""
    jfk = load_audio(JFK, max_seconds=60)
    pause = silence(10.0)
    return np.concatenate([jfk, *([pause, jfk] * 5)])


@pytest.fixture(scope="module")
def faster_tiny_en():
    from faster_whisper import WhisperModel
    from mmchat.stt.faster_backend import FasterWhisperSpeechToText

    # A model of its own, so counting its decoding steps touches no other test's model.
    model = WhisperModel(str(weights.bundled_english_dir()), device="cpu", compute_type="int8")
    return FasterWhisperSpeechToText(model, name="tiny.en")


@pytest.fixture(scope="module")
def parrot_en(tmp_path_factory):
    path = parrot_checkpoint(tmp_path_factory.mktemp("whisper") / "parrot-en.pt", multilingual=False)
    return create_speech_to_text(Config(stt_backend="openai-whisper", whisper_model=str(path), device="cpu"))


def transcribe_and_stop_after_first_progress(stt, audio: np.ndarray):
    """Transcribe on a thread; Stop from this thread once it first reports progress.

    The progress callback waits until Stop has been pressed, so the backend's next
    step is sure to find the token cancelled: what it does then is what is tested.
    """
    token = CancelToken.standalone()
    seen: list[float] = []
    reported, pressed = threading.Event(), threading.Event()
    result: list = []

    def progress(fraction: float) -> None:
        seen.append(fraction)
        reported.set()
        pressed.wait(HANG)

    worker = threading.Thread(
        target=lambda: result.append(stt.transcribe(audio, language="en", progress=progress, cancel=token)),
        name="transcribe-under-test",
    )
    worker.start()
    try:
        assert reported.wait(HANG), "no progress was reported"
        token.cancel()
    finally:
        pressed.set()
        worker.join(HANG)
    assert not worker.is_alive(), "the transcription went on after Stop"
    assert result, "the transcription failed"
    return result[0], seen


class Counting:
    """Wraps a callable and counts its calls (a decoding step of a backend)."""

    def __init__(self, wrapped) -> None:
        self.wrapped = wrapped
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.wrapped(*args, **kwargs)


def test_faster_whisper_stops_at_the_next_segment(faster_tiny_en, long_recording, monkeypatch):
    model = faster_tiny_en._model
    windows = Counting(model.generate_with_fallback)  # one call per 30 s window decoded
    monkeypatch.setattr(model, "generate_with_fallback", windows)

    transcript, seen = transcribe_and_stop_after_first_progress(faster_tiny_en, long_recording)

    assert len(seen) == 1 and seen[0] < 0.5, seen  # no further segment, and no final 1.0
    assert len(transcript.segments) == 1, transcript.segments
    # The first window's words (tiny.en hears "and so my fellow americans" as "and so am i,
    # fellow-americans" on some runs: its temperature fallback samples), not the later ones.
    words = normalized(transcript.text)
    assert "fellow americans" in words and "ask not" in words, transcript.text
    assert transcript.segments[0][1] < 30.0  # from the first window, on the recording's clock
    assert windows.calls == 1  # the second and third windows were never decoded


def test_openai_whisper_stops_at_the_next_window(parrot_en, long_recording, monkeypatch):
    import whisper

    windows = Counting(whisper.transcribe)  # the backend decodes one speech window per call
    monkeypatch.setattr(whisper, "transcribe", windows)

    transcript, seen = transcribe_and_stop_after_first_progress(parrot_en, long_recording)

    assert len(seen) == 1 and seen[0] < 0.5, seen
    assert [text for _, _, text in transcript.segments] == ["hello world"]  # the first window's only
    assert windows.calls == 1


@pytest.mark.parametrize("backend", ["faster_tiny_en", "parrot_en"])
def test_a_stop_before_transcription_starts_decodes_nothing(backend, long_recording, request):
    stt = request.getfixturevalue(backend)
    token = CancelToken.standalone()
    token.cancel()
    seen: list[float] = []
    transcript = stt.transcribe(long_recording, progress=seen.append, cancel=token)
    assert transcript.text == "" and transcript.segments == () and seen == []


def test_without_a_stop_every_window_is_transcribed(parrot_en, long_recording, monkeypatch):
    import whisper

    windows = Counting(whisper.transcribe)
    monkeypatch.setattr(whisper, "transcribe", windows)
    seen: list[float] = []
    transcript = parrot_en.transcribe(long_recording, progress=seen.append, cancel=CancelToken.standalone())
    assert windows.calls >= 3 and len(transcript.segments) == windows.calls  # one "hello world" each
    assert seen[-1] == 1.0
