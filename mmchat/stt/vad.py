"""Where the speech is, by Silero VAD (the silero-vad package, its ONNX model).

The openai-whisper backend uses it to keep silence away from Whisper and to cut a
long recording into windows it can report progress on; faster-whisper runs the
same detector inside its own `vad_filter`.
"""

from __future__ import annotations

import numpy as np
import silero_vad
import torch

from mmchat.media.audio import SAMPLE_RATE
from mmchat.stt.stretches import SPEECH_PAD_MS, language_stretches

WINDOW_SECONDS = 30.0  # Whisper's context: one window is one forward pass of the encoder

Vad = silero_vad.utils_vad.OnnxWrapper


def load_vad() -> Vad:
    # The ONNX model, not the TorchScript one: torch.jit.load is deprecated, and
    # onnxruntime is already here for faster-whisper.
    return silero_vad.load_silero_vad(onnx=True)


def speech_windows(audio: np.ndarray, vad: Vad, *, split_at_pauses: bool = False) -> list[tuple[int, int]]:
    """Sample ranges [start, end) that hold speech, merged into windows of about 30 s.

    Neighbouring speech regions share a window (with the pause between them) so a
    question is decoded with its context. Speech that goes on for longer is split,
    at a pause where there is one, so each window is one step of progress.
    With `split_at_pauses` (the language is to be detected), a window also ends at a
    pause between sentences, so each can be in its own language (mmchat.stt.stretches).
    """
    regions = silero_vad.get_speech_timestamps(
        torch.from_numpy(audio),
        vad,
        sampling_rate=SAMPLE_RATE,
        min_speech_duration_ms=250,  # shorter "speech" is a click or a breath
        max_speech_duration_s=WINDOW_SECONDS - 1,  # room for the padding
        speech_pad_ms=SPEECH_PAD_MS,  # keep the soft edges of words
    )
    if split_at_pauses:
        return language_stretches([(region["start"], region["end"]) for region in regions], SAMPLE_RATE)
    windows: list[tuple[int, int]] = []
    for region in regions:
        start, end = region["start"], region["end"]
        if windows and end - windows[-1][0] <= WINDOW_SECONDS * SAMPLE_RATE:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows
