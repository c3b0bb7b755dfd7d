"""Coqui TTS through its maintained fork `coqui-tts` (import name `TTS`): an optional extra.

Heavier than Piper (PyTorch models, best on a GPU), with more voices (VITS, XTTS v2,
which speaks 17 languages). Imported only when chosen, so the app runs without it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mmchat.cancel import CancelToken
from mmchat.errors import ModelUnavailableError
from mmchat.events import AudioChunk
from mmchat.tts.language import script_language
from mmchat.tts.protocol import speak_each

logger = logging.getLogger(__name__)

# Single speaker, English, small: the usual first Coqui voice. Downloaded by coqui-tts
# into its own cache on first use.
DEFAULT_COQUI_MODEL = "tts_models/en/ljspeech/vits"
# With torch >= 2.9, coqui-tts also needs torchaudio and torchcodec (its `cpu`/`cuda` and
# `codec` extras), and 0.28 imports `six` without declaring it.
INSTALL = "pip install coqui-tts torchaudio torchcodec six"
# Our script languages as multilingual Coqui models (XTTS) name them.
_COQUI_LANGUAGES = {None: "en", "zh": "zh-cn", "ja": "ja", "ko": "ko"}


class CoquiTextToSpeech:
    """Speaks with a loaded `TTS.api.TTS` model, one sentence per call."""

    def __init__(self, model: Any, *, speech_rate: float = 1.0) -> None:
        self._model = model
        self._lock = threading.Lock()  # one synthesis at a time per model: it is not reentrant
        self.sample_rate = int(model.synthesizer.output_sample_rate)
        self._speaker = model.speakers[0] if model.is_multi_speaker and model.speakers else None
        self._languages = model.languages if model.is_multi_lingual else None
        self._options: dict[str, Any] = {}
        if speech_rate != 1.0:
            self._set_rate(speech_rate)

    def _set_rate(self, rate: float) -> None:
        network = self._model.synthesizer.tts_model
        if "xtts" in type(network).__name__.lower():
            self._options["speed"] = rate  # XTTS takes it per call
        elif hasattr(network, "length_scale"):
            network.length_scale = network.length_scale / rate  # VITS reads it at each inference
        else:
            logger.warning("This Coqui model cannot change its speaking rate; it speaks at normal speed.")

    def stream(self, sentences: Iterable[str], cancel: CancelToken) -> Iterator[AudioChunk]:
        return speak_each(sentences, cancel, self._synthesize, self.sample_rate)

    def _synthesize(self, sentence: str) -> np.ndarray:
        with self._lock:
            samples = self._model.tts(
                text=sentence,
                speaker=self._speaker,
                language=self._language_for(sentence),
                split_sentences=False,  # the SentenceSplitter has already done it
                **self._options,
            )
        return np.asarray(samples, dtype=np.float32)

    def _language_for(self, sentence: str) -> str | None:
        if not self._languages:
            return None
        wanted = _COQUI_LANGUAGES.get(script_language(sentence), "en")
        return wanted if wanted in self._languages else self._languages[0]


def load_coqui(voice: str, speech_rate: float, device: str) -> CoquiTextToSpeech:
    """A Coqui voice: 'auto', a model name ("tts_models/en/ljspeech/vits"), a checkpoint
    file with config.json beside it, or a folder holding both.

    `device` is the app's device setting: Coqui runs on the GPU unless it says "cpu".
    """
    try:
        from TTS.api import TTS
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "TTS":
            raise ModelUnavailableError(
                f"The Coqui TTS backend needs the optional coqui-tts package: {INSTALL} "
                "(or use --tts-backend piper)."
            ) from exc
        # Installed, but something it needs is missing (coqui-tts says which, e.g. torchaudio).
        reason = " ".join(str(exc).split())
        raise ModelUnavailableError(
            f"coqui-tts is installed but cannot be imported ({reason}). Install what it lacks "
            f"({INSTALL}), or use --tts-backend piper."
        ) from exc
    name = DEFAULT_COQUI_MODEL if voice == "auto" else voice
    try:
        model = _load(TTS, name).to(_torch_device(device))
    except Exception as exc:  # downloads, checkpoints and configs fail in many ways; say which voice
        raise ModelUnavailableError(
            f"Cannot load the Coqui TTS voice {name!r}: {exc}. Offline, give a local model "
            "(a folder with model.pth and config.json) with --voice."
        ) from exc
    tts = CoquiTextToSpeech(model, speech_rate=speech_rate)
    logger.info("Coqui voice %s ready (%d Hz)", name, tts.sample_rate)
    return tts


def _torch_device(device: str) -> str:
    import torch  # coqui-tts depends on it; imported here so choosing Piper never loads it

    return "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"


def _load(tts_class: Any, name: str) -> Any:
    path = Path(name).expanduser()
    if path.is_dir():
        checkpoint = path / "model.pth"
        # XTTS loads from its folder; other models from their checkpoint file.
        model_path = checkpoint if checkpoint.is_file() else path
        return tts_class(model_path=str(model_path), config_path=str(path / "config.json"), progress_bar=False)
    if path.is_file():
        return tts_class(model_path=str(path), config_path=str(path.with_name("config.json")), progress_bar=False)
    return tts_class(name, progress_bar=False)
