"""SpeechToText on openai-whisper, the reference PyTorch package: fp16 on CUDA, fp32 on the CPU."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import whisper

from mmchat.media.audio import SAMPLE_RATE
from mmchat.cancel import CancelToken
from mmchat.errors import ModelUnavailableError
from mmchat.events import Transcript
from mmchat.stt import check_beam_size, vad, weights
from mmchat.stt.segments import DecodedSegment, nothing_heard, to_transcript
from mmchat.stt.stretches import unpadded


class OpenAIWhisperSpeechToText:
    """Transcribes with a loaded openai-whisper model (built by `load`)."""

    def __init__(self, model: whisper.model.Whisper, vad_model: vad.Vad, *, name: str) -> None:
        self._model = model
        self._vad = vad_model
        self.name = name
        self.multilingual = model.is_multilingual
        self._fp16 = model.device.type == "cuda"
        # decode() installs key/value-cache hooks on the shared model for the length
        # of a call, and the Silero model keeps state: one transcription at a time.
        self._lock = threading.Lock()

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: CancelToken | None = None,
        beam_size: int | None = None,
    ) -> Transcript:
        weights.check_language(self.name, self.multilingual, language)
        # openai-whisper reads no beam as greedy, and a beam of 1 as a beam search of
        # one, which is greedy with more bookkeeping: both 1 and None are greedy here.
        beams = {} if beam_size is None or check_beam_size(beam_size) == 1 else {"beam_size": beam_size}
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        duration = len(audio) / SAMPLE_RATE
        cancel = cancel or CancelToken.standalone()
        if not self.multilingual:
            language = "en"
        decoded: list[DecodedSegment] = []
        heard: list[str] = []  # the language of each window, as it is decoded
        with self._lock:
            if language is None:
                # Detected once for a whole window, a language that changes inside it
                # would turn the rest into invented text in the first: detected per
                # stretch between pauses instead (mmchat.stt.stretches).
                stretches = vad.speech_windows(audio, self._vad, split_at_pauses=True)
                windows = self._by_language(audio, stretches)
            else:
                stretches = vad.speech_windows(audio, self._vad)
                windows = iter([(start, end, language) for start, end in stretches])
            if not stretches:
                return nothing_heard(language, duration)
            for start, end, window_language in windows:
                if cancel.cancelled:  # between windows: one window is one uninterruptible decode
                    return to_transcript(decoded, language=heard[0] if heard else language, duration=duration)
                heard.append(window_language)
                result = whisper.transcribe(
                    self._model,
                    audio[start:end],
                    language=window_language,
                    fp16=self._fp16,
                    condition_on_previous_text=False,  # one hallucination must not seed the next
                    verbose=None,  # no console output
                    **beams,
                )
                offset = start / SAMPLE_RATE
                decoded.extend(
                    DecodedSegment(
                        offset + s["start"], offset + s["end"], s["text"], s["no_speech_prob"], s["avg_logprob"]
                    )
                    for s in result["segments"]
                )
                if progress is not None:
                    progress(end / len(audio))
        if progress is not None:
            progress(1.0)
        # One language for the whole Transcript: that of its first words.
        return to_transcript(decoded, language=heard[0] if heard else language, duration=duration)

    def _by_language(self, audio: np.ndarray, stretches: list[tuple[int, int]]) -> Iterator[tuple[int, int, str]]:
        """Windows (start, end, language): the language detected stretch by stretch
        (mmchat.stt.stretches), neighbours in the same language joined again up to
        30 s, so speech in one language keeps its context. Lazy: a window is detected
        just before it is decoded, so Stop also ends the detecting."""
        longest = vad.WINDOW_SECONDS * SAMPLE_RATE
        window: tuple[int, int, str] | None = None
        for start, end in stretches:
            language = self._language_of(audio[slice(*unpadded(start, end, SAMPLE_RATE))])
            if window is not None and language == window[2] and end - window[0] <= longest:
                window = (window[0], end, language)
                continue
            if window is not None:
                yield window
            window = (start, end, language)
        if window is not None:
            yield window

    def _language_of(self, speech: np.ndarray) -> str:
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(speech), self._model.dims.n_mels)
        mel = mel.to(self._model.device, torch.float16 if self._fp16 else torch.float32)
        _, probabilities = self._model.detect_language(mel)
        return max(probabilities, key=probabilities.get)


def load(model: str, *, language: str | None, device: str) -> OpenAIWhisperSpeechToText:
    """Load `model`: a size name (tiny.en, base, ...; downloaded once to ~/.cache/whisper),
    a checkpoint file (.pt), or "auto" (tiny.en for English, else multilingual base).

    `language` is the configured speech language (None: detect it); `device` is
    "auto", "cuda" or "cpu".
    """
    on_cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not on_cuda:
        raise ModelUnavailableError(
            "--device cuda was asked for, but PyTorch sees no CUDA GPU. Fix: use --device auto or cpu."
        )
    if model == "auto":
        model = "tiny.en" if language == "en" else "base"
    name = Path(model).name if Path(model).is_file() else model
    try:
        loaded = whisper.load_model(model, device="cuda" if on_cuda else "cpu")
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise ModelUnavailableError(
            f"Could not load the openai-whisper model {model!r} ({exc}). Offline, it needs the "
            "checkpoint in ~/.cache/whisper (downloaded once while online) or a local .pt file. "
            "Fix: pass --whisper-model /path/to/model.pt, or use the default backend "
            "(--stt-backend faster-whisper), which works offline with the bundled weights."
        ) from exc
    weights.check_language(name, loaded.is_multilingual, language)
    return OpenAIWhisperSpeechToText(loaded, vad.load_vad(), name=name)
