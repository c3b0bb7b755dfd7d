"""Piper: a fast VITS voice in ONNX, synthesizing a sentence in a fraction of its length on a CPU."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
from piper import PiperVoice, SynthesisConfig

from mmchat.cancel import CancelToken
from mmchat.errors import ModelUnavailableError
from mmchat.events import AudioChunk
from mmchat.media.resample import resample
from mmchat.tts.language import script_language
from mmchat.tts.protocol import speak_each
from mmchat.tts.voices import VoiceFile, installed_voices, resolve_voice

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def load_voice(model: Path) -> PiperVoice:
    """Load a voice once per process; sessions and speaking rates share it."""
    try:
        return PiperVoice.load(model, download_dir=model.parent)
    except Exception as exc:  # onnxruntime and json raise many kinds; the user needs one message
        raise ModelUnavailableError(f"Cannot load the Piper voice {model}: {exc}") from exc


class PiperTextToSpeech:
    """Speaks with one Piper voice, or, for 'auto', with a voice for each answer's language.

    `language` is the family of `voice` ("en"); `language_voices` maps another family
    ("zh") to the voice for sentences written in it, loaded when first needed.
    """

    def __init__(
        self,
        voice: PiperVoice,
        *,
        language: str,
        speech_rate: float = 1.0,
        language_voices: Mapping[str, Path] | None = None,
    ) -> None:
        self._voice = voice
        self._language = language
        self._speech_rate = speech_rate
        self._language_voices = dict(language_voices or {})
        self._warned: set[str] = set()
        self.sample_rate = voice.config.sample_rate

    def stream(self, sentences: Iterable[str], cancel: CancelToken) -> Iterator[AudioChunk]:
        return speak_each(sentences, cancel, lambda sentence: self._synthesize(sentence, cancel), self.sample_rate)

    def _synthesize(self, sentence: str, cancel: CancelToken) -> np.ndarray:
        voice = self.voice_for(sentence)
        options = SynthesisConfig(length_scale=voice.config.length_scale / self._speech_rate)
        parts = []
        # Piper's phonemizer may split one sentence in two ("J. K. Rowling"): one ONNX call each.
        for part in voice.synthesize(sentence, syn_config=options):
            if cancel.cancelled:
                break
            parts.append(part.audio_float_array)
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return resample(np.concatenate(parts), voice.config.sample_rate, self.sample_rate)

    def voice_for(self, sentence: str) -> PiperVoice:
        """The voice to read this sentence: one that knows its script, when installed."""
        language = script_language(sentence)
        if language is None or language == self._language:
            return self._voice
        if language in self._language_voices:
            return load_voice(self._language_voices[language])
        if language not in self._warned:
            self._warned.add(language)
            logger.warning(
                "No Piper voice for language %r is installed; reading it with the default voice. "
                "Put one (e.g. zh_CN-huayan-medium.onnx + .onnx.json) in the voices folder.",
                language,
            )
        return self._voice


def load_piper(voice: str, speech_rate: float, folder: Path) -> PiperTextToSpeech:
    """A Piper voice for the `voice` setting ('auto', an .onnx path or a voice name)."""
    chosen = resolve_voice(voice, folder)
    language_voices: dict[str, Path] = {}
    if voice == "auto":  # the user has not chosen: follow the language of the answer
        for other in installed_voices(folder):
            if other.language != chosen.language:
                language_voices.setdefault(other.language, other.model)
    tts = PiperTextToSpeech(
        load_voice(chosen.model),
        language=chosen.language,
        speech_rate=speech_rate,
        language_voices=language_voices,
    )
    _warm_up(tts, chosen)
    return tts


def _warm_up(tts: PiperTextToSpeech, voice: VoiceFile) -> None:
    """The first synthesis also starts espeak and ONNX; do it now, not in the first answer."""
    list(tts.stream(["Ready."], CancelToken.standalone()))
    logger.info("Piper voice %s ready (%s, %d Hz)", voice.name, voice.language, tts.sample_rate)
