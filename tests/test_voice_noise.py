"""A minute of what a room sounds like when nobody speaks, through the default
EndpointDetector as the browser streams it (48 kHz, 100 ms chunks): no turn may come of it.

Brief SpeechStarted/FalseStart pairs would be tolerable (the page goes back to listening);
a TurnEnded would send noise to Whisper and a made-up question to the model. How many
of each happened is printed (-s) and kept as a test property, for tuning."""

from __future__ import annotations

import numpy as np
import pytest

from mmchat.voice import EndpointDetector, EndpointSettings, FalseStart, SpeechStarted, TurnEnded
from mmchat.voice.endpoint import FRAME

RATE = 48_000
CHUNK = RATE // 10
MINUTE = 60 * RATE


def at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (x * 10 ** (dbfs / 20) / np.sqrt(np.mean(x.astype(np.float64) ** 2))).astype(np.float32)


def coloured_noise(rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (1: pink, 2: brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(MINUTE))
    freqs = np.fft.rfftfreq(MINUTE, 1 / RATE)
    spectrum[1:] /= np.maximum(freqs[1:], 20.0) ** (exponent / 2)  # no rumble below 20 Hz
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n=MINUTE)


def room_noise(rng: np.random.Generator) -> np.ndarray:
    """A quiet room: ventilation rumble, mains hum with harmonics, the mic's hiss (-50 dBFS)."""
    t = np.arange(MINUTE) / RATE
    rumble = coloured_noise(rng, 2.0)
    hum = sum(a * np.sin(2 * np.pi * 50 * k * t) for k, a in ((1, 1.0), (2, 0.4), (3, 0.2)))
    hiss = rng.standard_normal(MINUTE)
    x = rumble / rumble.std() + 0.3 * hum + 0.3 * hiss
    return at_dbfs(x, -50)


def music(rng: np.random.Generator) -> np.ndarray:
    """Chords and a melody: plucked-string envelopes, rich harmonics, some vibrato (-20 dBFS)."""
    scale = np.array([220.0, 246.9, 261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3])
    out, made = [], 0
    while made < MINUTE:
        seconds = rng.choice([0.25, 0.5, 0.75, 1.0])
        t = np.arange(int(seconds * RATE)) / RATE
        root = rng.choice(scale)
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(1.0, 4.0))
        vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)
        chord = sum(np.sin(2 * np.pi * f * k * t * vibrato) / k for f in (root / 2, root * 1.26, root * 1.5)
                    for k in range(1, 8))
        melody = sum(np.sin(2 * np.pi * 2 * rng.choice(scale) * k * t * vibrato) / k**1.5 for k in range(1, 6))
        out.append(envelope * (chord + melody))
        made += len(t)
    return at_dbfs(np.concatenate(out)[:MINUTE], -20)


SOUNDS = {
    "digital silence": lambda rng: np.zeros(MINUTE, np.float32),
    "low room noise": room_noise,
    "pink noise -25 dBFS": lambda rng: at_dbfs(coloured_noise(rng, 1.0), -25),
    "music -20 dBFS": music,
}


@pytest.mark.parametrize("kind", list(SOUNDS))
def test_a_minute_without_speech_ends_no_turn(kind, record_property):
    stream = SOUNDS[kind](np.random.default_rng(0))
    detector = EndpointDetector(EndpointSettings())
    events = []
    for offset in range(0, len(stream), CHUNK):
        events += detector.feed(stream[offset : offset + CHUNK], RATE)
    events += detector.flush()

    counts = {name: sum(isinstance(e, cls) for e in events)
              for name, cls in (("SpeechStarted", SpeechStarted), ("FalseStart", FalseStart), ("TurnEnded", TurnEnded))}
    record_property("events", counts)
    print(f"{kind}: {counts}")
    assert counts["TurnEnded"] == 0, [e for e in events if isinstance(e, TurnEnded)]
    # Every barge-in the noise set off was taken back, so the page returned to listening.
    assert [type(e) for e in events] == [SpeechStarted, FalseStart] * counts["SpeechStarted"]
    assert detector.position == (MINUTE // 3) // FRAME * FRAME  # the whole minute was scored

