"""hibari: a tiny English voice distilled from Kokoro (ONNX, 24 kHz), about four times
faster than Piper on a CPU. Its voice "heart" ships inside the `hibari-tts` package, so
it needs no download; its other voices are fetched once into hibari's own cache.

English only: for 'auto', a sentence in another script is read by a Piper voice of that
language from the voices folder, when one is installed. A Piper voice named in the voice
setting (the page's voice menu lists the installed ones) is read by Piper.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from mmchat.cancel import CancelToken
from mmchat.errors import ModelUnavailableError
from mmchat.events import AudioChunk
from mmchat.media.resample import resample
from mmchat.tts.language import script_language
from mmchat.tts.protocol import TextToSpeech, speak_each
from mmchat.tts.voices import installed_voices

logger = logging.getLogger(__name__)

BUNDLED_HIBARI_VOICE = "heart"  # American English, inside the package
INSTALL = "pip install hibari-tts"


@functools.lru_cache(maxsize=None)
def load_hibari_voice(name: str) -> Any:
    """A `hibari.Hibari` for voice `name`, once per process; sessions and rates share it."""
    try:
        from hibari import Hibari
        from hibari.voices import VOICES, cache_dir
    except ModuleNotFoundError as exc:
        raise ModelUnavailableError(
            f"The hibari voice needs the hibari-tts package: {INSTALL} (or use --tts-backend piper)."
        ) from exc
    if name not in VOICES:
        raise ModelUnavailableError(f"hibari has no voice {name!r}; {_voice_names(VOICES)}")
    try:
        # One ONNX thread: the model runs about 80x faster than speech on one core, and the
        # other core stays free for the language model that writes the next sentence.
        return Hibari(voice=name, threads=1)
    except RuntimeError as exc:  # hibari's own wording for a failed or corrupt download
        file = Path(cache_dir()) / VOICES[name]["file"]
        raise ModelUnavailableError(
            f"The hibari voice {name!r} is not in the package and could not be downloaded ({exc}). "
            f"Offline, use --voice auto (the bundled voice '{BUNDLED_HIBARI_VOICE}'), or copy "
            f"{file.name} into {file.parent} (HIBARI_HOME sets that folder)."
        ) from exc
    except Exception as exc:  # onnxruntime and json raise many kinds; the user needs one message
        raise ModelUnavailableError(f"Cannot load the hibari voice {name!r}: {exc}") from exc


class HibariTextToSpeech:
    """Speaks with one hibari voice; with `language_voices` ("zh" -> a Piper voice file),
    a sentence in that language's script is read by that Piper voice (loaded when first
    needed) and resampled to this voice's rate."""

    def __init__(
        self,
        voice: Any,
        *,
        speech_rate: float = 1.0,
        language_voices: Mapping[str, Path] | None = None,
    ) -> None:
        self._voice = voice
        self._speech_rate = speech_rate
        self._language_voices = dict(language_voices or {})
        self._others: dict[str, TextToSpeech] = {}
        self._warned: set[str] = set()
        # hibari's G2P keeps lazily built state and is not documented as thread-safe;
        # a sentence takes tens of milliseconds, so sessions barely wait on each other.
        self._lock = threading.Lock()
        self.sample_rate = int(voice.sample_rate)

    def stream(self, sentences: Iterable[str], cancel: CancelToken) -> Iterator[AudioChunk]:
        return speak_each(sentences, cancel, lambda sentence: self._synthesize(sentence, cancel), self.sample_rate)

    def _synthesize(self, sentence: str, cancel: CancelToken) -> np.ndarray:
        language = script_language(sentence)
        if language is not None:
            return self._other_language(language, sentence, cancel)
        parts = []
        with self._lock:
            # hibari cuts its input at sentence ends it finds itself ("e.g. At"): one ONNX call each.
            for part in self._voice.stream(sentence, speed=self._speech_rate):
                if cancel.cancelled:
                    break
                parts.append(part)
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _other_language(self, language: str, sentence: str, cancel: CancelToken) -> np.ndarray:
        other = self._other_voice(language)
        if other is None:
            return np.zeros(0, dtype=np.float32)  # hibari says nothing for it either
        chunks = list(other.stream([sentence], cancel))
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return resample(chunks[0].samples, chunks[0].sample_rate, self.sample_rate)

    def _other_voice(self, language: str) -> TextToSpeech | None:
        if language in self._others:
            return self._others[language]
        if language not in self._language_voices:
            if language not in self._warned:
                self._warned.add(language)
                logger.warning(
                    "The hibari voice speaks English only and no Piper voice for language %r is installed; "
                    "sentences in it are not spoken. Put one (e.g. zh_CN-huayan-medium.onnx + .onnx.json) "
                    "in the voices folder, or use --tts-backend piper.",
                    language,
                )
            return None
        # Imported here: Piper is needed only once an answer is in another language.
        from mmchat.tts.piper_backend import PiperTextToSpeech, load_voice

        model = self._language_voices[language]
        self._others[language] = PiperTextToSpeech(
            load_voice(model), language=language, speech_rate=self._speech_rate
        )
        return self._others[language]


def _voice_names(voices: Mapping[str, Any]) -> str:
    if not voices:
        return f"those need the hibari-tts package ({INSTALL})."
    return (
        f"hibari's voices are {', '.join(voices)} ('{BUNDLED_HIBARI_VOICE}' is in the package, "
        "the others are downloaded once)."
    )


def _hibari_voices() -> Mapping[str, Any]:
    try:
        from hibari.voices import VOICES
    except ModuleNotFoundError:  # Piper voices still work; a hibari name then says what to install
        return {}
    return VOICES


def load_hibari(voice: str, speech_rate: float, folder: Path) -> TextToSpeech:
    """The voice for the `voice` setting: 'auto' (hibari's bundled voice), a hibari voice
    name, or a Piper voice (an .onnx path or the name of an installed one)."""
    voices = _hibari_voices()
    if voice != "auto" and voice not in voices:
        from mmchat.tts.piper_backend import load_piper

        try:
            return load_piper(voice, speech_rate, folder)
        except ModelUnavailableError as exc:
            raise ModelUnavailableError(f"{exc.message} Or name a hibari voice: {_voice_names(voices)}") from exc
    name = BUNDLED_HIBARI_VOICE if voice == "auto" else voice
    language_voices: dict[str, Path] = {}
    if voice == "auto":  # the user has not chosen: other languages go to a Piper voice
        for other in installed_voices(folder):
            if other.language != "en":
                language_voices.setdefault(other.language, other.model)
    tts = HibariTextToSpeech(load_hibari_voice(name), speech_rate=speech_rate, language_voices=language_voices)
    # The first synthesis also loads the G2P lexicons and the ONNX session's kernels.
    list(tts.stream(["Ready."], CancelToken.standalone()))
    logger.info("hibari voice %s ready (%d Hz)", name, tts.sample_rate)
    return tts
