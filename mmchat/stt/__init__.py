"""Speech to text: one small Protocol, two Whisper backends, one cached factory.

    stt = create_speech_to_text(config)           # loads once per model setting
    transcript = stt.transcribe(load_audio(...), language=speech_language(config),
                                cancel=token)      # Stop ends it at the next segment
    if not transcript.text: ...                    # nothing was heard
    stt.transcribe(piece, language="en", beam_size=1)   # a quick look: greedy decoding

Backends are imported only when chosen, so the app starts without torch when
faster-whisper is used, and without CTranslate2 when openai-whisper is.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

import numpy as np

from mmchat.cancel import CancelToken
from mmchat.config import Config
from mmchat.errors import ModelUnavailableError
from mmchat.events import Transcript


class SpeechToText(Protocol):
    name: str  # the model, for messages and logs ("tiny.en (bundled)")
    multilingual: bool  # False: English only

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: CancelToken | None = None,
        beam_size: int | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio (see mmchat.media.audio.load_audio).

        `language` None detects it, stretch by stretch between pauses, so a recording
        that switches language midway comes out in both (Transcript.language is that of
        its first words; see mmchat.stt.stretches). `progress` receives 0..1 as the
        audio is worked through. Silence, noise and fragments give a Transcript with empty text.
        Once `cancel` reads cancelled, the work stops at its next step (a segment or
        a 30 s window) and returns what was decoded so far, without a final 1.0
        progress; the caller tells a cut-short Transcript by its own token.
        `beam_size` is the decoder's beam for this call: 1 is greedy decoding, None
        the backend's default for a whole recording (faster-whisper: 5; openai-whisper:
        greedy, as its own transcribe does). Higher-temperature retries of a window
        that decoded badly sample instead, whatever the beam. bench/stt_short.py
        measures what it buys on short utterances (the voice mode's pieces).
        Raises ValueError for a beam that is not a whole number of at least 1.
        Raises ModelUnavailableError for a language an English-only model can't do.
        """
        ...


def check_beam_size(beam_size: int) -> int:
    """`beam_size` if a decoder can use it, else ValueError (0 or less means nothing)."""
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a whole number of at least 1, got {beam_size!r}")
    return beam_size


def speech_language(config: Config) -> str | None:
    """The configured speech language as `transcribe` takes it (None: detect it)."""
    return None if config.speech_language == "auto" else config.speech_language


_loaded: dict[tuple[str, str, str | None, str], SpeechToText] = {}
_loading = threading.Lock()  # two sessions asking at once must not load twice


def create_speech_to_text(config: Config) -> SpeechToText:
    """The backend for `config`, loaded on first use and cached for the process.

    Raises ModelUnavailableError, naming the fix, when the weights can't be loaded.
    """
    if config.stt_backend == "none":
        raise ModelUnavailableError(
            "Speech input is turned off. Fix: start the app with --stt-backend faster-whisper."
        )
    key = (config.stt_backend, config.whisper_model, speech_language(config), config.device)
    with _loading:
        if key not in _loaded:
            _loaded[key] = _load(*key)
        return _loaded[key]


def _load(backend: str, model: str, language: str | None, device: str) -> SpeechToText:
    if backend == "faster-whisper":
        from mmchat.stt import faster_backend

        return faster_backend.load(model, language=language, device=device)
    if backend == "openai-whisper":
        from mmchat.stt import openai_backend

        return openai_backend.load(model, language=language, device=device)
    raise ValueError(f"unknown speech-to-text backend {backend!r}")
