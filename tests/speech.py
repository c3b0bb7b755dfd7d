"""Test speech made by espeak-ng (support for tests and benchmarks; no tests here)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf


def espeak(text: str, folder: Path, *, rate: int, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    """`text` spoken by espeak-ng as float32 mono at `rate`, trimmed to the voice (so its onset is known)."""
    raw, wav = folder / "espeak.raw.wav", folder / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    # Float output: 16-bit would be dithered, a different noise floor every run.
    subprocess.run(["sox", str(raw), "-b", "32", "-e", "floating-point", "-r", str(rate), str(wav)], check=True)
    audio, read_rate = sf.read(wav, dtype="float32")
    assert read_rate == rate
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def speech_maker(folder: Path, rate: int) -> Callable[..., np.ndarray]:
    """`make(text, voice="en-us", speed=150)`: `espeak`, each utterance made once."""
    made: dict[tuple[str, str, int], np.ndarray] = {}

    def make(text: str, voice: str = "en-us", speed: int = 150) -> np.ndarray:
        if (text, voice, speed) not in made:
            made[text, voice, speed] = espeak(text, folder, rate=rate, voice=voice, speed=speed)
        return made[text, voice, speed]

    return make
