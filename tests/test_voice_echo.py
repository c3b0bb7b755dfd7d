"""The echo guard on real speech: the assistant's voice (espeak-ng, and the bundled Piper
voice) sent through simulated echo paths (delay, attenuation, a room's tail or a small
speaker's band-pass, a canceller's distorted residual, noise) must read as echo; another
voice, a person speaking over the echo, silence and nothing played must not."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mmchat.media.audio import SAMPLE_RATE, load_audio
from mmchat.voice import EchoGuard
from speech import speech_maker

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng and sox make the test speech"
)

R = SAMPLE_RATE
JFK = Path(__file__).parent / "data" / "jfk.flac"
ASSISTANT = ("The red cup is on the table, next to a blue plate and two spoons.",
             "I can also see a window behind them, with green curtains.")
PERSON = "Wait, stop, I wanted to ask about something else entirely."


@pytest.fixture(scope="module")
def say(tmp_path_factory):
    """Text -> espeak-ng speech at 16 kHz, trimmed to the voice."""
    return speech_maker(tmp_path_factory.mktemp("speech"), R)


@pytest.fixture(scope="module")
def assistant(say) -> np.ndarray:
    """What the assistant said: two sentences with a short pause, as TTS chunks play."""
    return np.concatenate([say(ASSISTANT[0]), np.zeros(R // 4, np.float32), say(ASSISTANT[1])])


@pytest.fixture(scope="module")
def people(say) -> dict[str, np.ndarray]:
    jfk = load_audio(JFK, max_seconds=60)
    return {"other espeak voice": say(PERSON, "en-gb-x-rp+f3", 170),
            "jfk": jfk[np.flatnonzero(np.abs(jfk) > 0.02)[0] :]}


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def _filter(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    n = len(x) + len(response)
    return np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(response, n), n)[: len(x)].astype(np.float32)


def room(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A direct path and a decaying noise tail (about 0.35 s to -60 dB)."""
    t = np.arange(int(0.25 * R)) / R
    response = rng.standard_normal(len(t)) * np.exp(-t / 0.05)
    response[0] = 8.0
    return _filter(x, response / np.sqrt(np.sum(response**2)))


def small_speaker(x: np.ndarray) -> np.ndarray:
    """A laptop speaker: little below 300 Hz or above 3.5 kHz."""
    f = np.fft.rfftfreq(len(x), 1 / R)
    gain = 1 / np.sqrt(1 + (300 / np.maximum(f, 1.0)) ** 4) / np.sqrt(1 + (f / 3500) ** 4)
    return np.fft.irfft(np.fft.rfft(x) * gain, n=len(x)).astype(np.float32)


def canceller_residual(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What an echo canceller leaves: the room's echo, mostly removed, by a varying amount, clipped."""
    y = room(x, rng)
    left = 0.15 + 0.1 * np.sin(2 * np.pi * 0.7 * np.arange(len(y)) / R)
    return (np.tanh(3 * y * left) / 3).astype(np.float32)


def echo_of(played: np.ndarray, delay: float, path: str, attenuation_db: float, seed: int = 0) -> np.ndarray:
    """The mic stream while `played` plays from time 0: its echo, `delay` late, with noise at 20 dB SNR."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.zeros(int(delay * R), np.float32), played])
    y = {"room": lambda v: room(v, rng), "small speaker": small_speaker,
         "canceller residual": lambda v: canceller_residual(v, rng)}[path](y)
    y = y * 10 ** (-attenuation_db / 20)
    return (y + rng.standard_normal(len(y)) * rms(y) / 10).astype(np.float32)


def guard_that_played(audio: np.ndarray, rate: int = R) -> EchoGuard:
    guard = EchoGuard(clock=lambda: pytest.fail("every call here gives its time"))
    guard.played(audio, rate, at=0.0)
    return guard


def stretch(mic: np.ndarray, start: float, seconds: float) -> tuple[np.ndarray, float]:
    """mic[start : start + seconds] and the clock time its last sample was heard."""
    return mic[int(start * R) : int(start * R) + int(seconds * R)], start + seconds


@pytest.mark.parametrize("path, attenuation_db", [("room", 10), ("small speaker", 20), ("canceller residual", 15)])
@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_the_assistants_voice_coming_back_is_echo(assistant, delay, path, attenuation_db):
    guard = guard_that_played(assistant)
    mic = echo_of(assistant, delay, path, attenuation_db)
    for start in (0.4, 1.3, 2.2, 3.1, 4.0):
        audio, now = stretch(mic, start + delay, 0.5)
        match = guard.match(audio, now=now)
        assert guard.is_echo(audio, now=now), (start, match)
        assert abs(match.lag - delay) < 0.05, match  # found where it really was


def test_echo_of_playback_the_page_started_late_is_still_echo(assistant):
    guard = guard_that_played(assistant)
    mic = echo_of(assistant, 2.5, "room", 15)  # the page buffered 2.5 s before playing
    for start in (0.5, 2.0, 3.5):
        audio, now = stretch(mic, start + 2.5, 0.5)
        assert guard.is_echo(audio, now=now), guard.match(audio, now=now)


@pytest.mark.parametrize("who", ["other espeak voice", "jfk"])
def test_another_voice_is_not_echo(assistant, people, who):
    guard = guard_that_played(assistant)
    mic = echo_of(assistant, 0.2, "room", 15)
    person = people[who]
    for start in (0.5, 1.5, 2.5):
        echo, now = stretch(mic, start, 0.5)
        voice = person[: len(echo)] * rms(echo) / rms(person[: len(echo)])
        assert not guard.is_echo(voice, now=now), guard.match(voice, now=now)


@pytest.mark.parametrize("who", ["other espeak voice", "jfk"])
@pytest.mark.parametrize("path", ["room", "canceller residual"])
def test_a_person_speaking_over_the_echo_is_not_echo(assistant, people, who, path):
    """Barge-in: from the person's first word on, the mic holds their voice plus the echo, as loud."""
    guard = guard_that_played(assistant)
    mic = echo_of(assistant, 0.2, path, 15)
    person = people[who]
    for start in (0.5, 1.5, 2.5, 3.5):
        echo, now = stretch(mic, start, 0.5)
        both = echo + person[: len(echo)] * rms(echo) / rms(person[: len(echo)])
        assert not guard.is_echo(both, now=now), guard.match(both, now=now)
        assert guard.is_echo(echo, now=now)  # the same stretch without the person is echo


def test_nothing_played_is_never_echo(assistant):
    guard = EchoGuard()
    mic = echo_of(assistant, 0.2, "room", 15)
    assert guard.similarity(mic[R : R + R // 2]) == 0.0 and not guard.is_echo(mic[R : R + R // 2])


def test_silence_and_noise_during_playback_are_not_echo(assistant):
    guard = guard_that_played(assistant)
    rng = np.random.default_rng(1)
    for quiet in (np.zeros(R // 2, np.float32), (0.003 * rng.standard_normal(R // 2)).astype(np.float32)):
        assert not guard.is_echo(quiet, now=1.5), guard.match(quiet, now=1.5)


def test_playback_long_over_or_cleared_is_forgotten(assistant):
    guard = guard_that_played(assistant)
    ended = len(assistant) / R
    assert guard.playing_until == pytest.approx(ended, abs=0.01)
    mic = echo_of(assistant, 0.2, "room", 15)
    audio, now = stretch(mic, 3.0, 0.5)
    assert guard.is_echo(audio, now=now)
    # The same sound heard after playback ended more than max_delay ago: not the echo.
    assert not guard.is_echo(audio, now=ended + guard.max_delay + 1.0)
    guard.clear()
    assert not guard.is_echo(audio, now=now) and guard.playing_until == -np.inf


def test_chunks_are_scheduled_one_after_another(say):
    """Sent faster than real time, each sentence plays after the one before it."""
    first, second = say(ASSISTANT[0]), say(ASSISTANT[1])
    guard = EchoGuard()
    guard.played(first, R, at=0.0)
    guard.played(second, R, at=0.1)  # synthesized while the first plays
    assert guard.playing_until == pytest.approx((len(first) + len(second)) / R, abs=0.01)
    # The second sentence's echo is heard when it plays, seconds after it was sent.
    played_at = len(first) / R
    mic = echo_of(np.concatenate([np.zeros(len(first), np.float32), second]), 0.2, "room", 15)
    audio, now = stretch(mic, played_at + 0.2 + 1.0, 0.5)
    assert guard.is_echo(audio, now=now), guard.match(audio, now=now)


def test_the_apps_own_tts_voice_at_its_own_rate_in_chunks(tmp_path):
    """The real reference: the bundled Piper voice (22.05 kHz), sent sentence by sentence."""
    from mmchat.cancel import CancelToken
    from mmchat.config import Config
    from mmchat.tts import create_text_to_speech

    tts = create_text_to_speech(Config(device="cpu", data_dir=tmp_path, tts_backend="piper", voice="auto"))
    chunks = list(tts.stream(list(ASSISTANT), CancelToken.standalone()))
    guard = EchoGuard()
    for chunk in chunks:
        guard.played(chunk.samples, chunk.sample_rate, at=0.0)
    played = load_audio_16k(np.concatenate([c.samples for c in chunks]), tts.sample_rate)
    scores = {}
    for delay, path in ((0.05, "small speaker"), (0.3, "room"), (0.5, "canceller residual")):
        mic = echo_of(played, delay, path, 15)
        for start in (0.5, 1.3, 2.1, 2.9, 3.7, 4.5):
            audio, now = stretch(mic, start + delay, 0.5)
            scores[path, start] = guard.similarity(audio, now=now)
    # Piper speaks a little differently every time (VITS draws noise), so a stretch or two
    # may fall short: over 20 runs, 3 % of these stretches did (8 % with the canceller's
    # residual), never more than 2 in a run. Barge-in can ask again on the next stretch.
    missed = [key for key, score in scores.items() if score < guard.threshold]
    assert len(missed) <= 2, {key: round(score, 2) for key, score in scores.items()}
    assert np.median(list(scores.values())) >= guard.threshold + 0.2, scores


def load_audio_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    from mmchat.media.resample import StreamResampler

    resample = StreamResampler()
    return np.concatenate([resample(samples, rate), resample.flush()])


def test_a_check_costs_a_few_ms(assistant):
    reference = np.tile(assistant, 2)[: 8 * R]  # 8 s of playback to search
    guard = guard_that_played(reference)
    audio, now = stretch(echo_of(reference, 0.2, "room", 15), 5.0, 0.3)
    guard.match(audio, now=now)
    started = time.perf_counter()
    for _ in range(20):
        guard.match(audio, now=now)
    per_call_ms = (time.perf_counter() - started) / 20 * 1000
    assert per_call_ms < 25, per_call_ms  # a few ms alone; room for a busy shared CPU
