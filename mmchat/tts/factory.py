"""Build the configured voice once and share it: loading takes a second, speaking should not."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from mmchat.config import Config
from mmchat.errors import ModelUnavailableError, UserFacingError
from mmchat.tts.protocol import TextToSpeech
from mmchat.tts.voices import voices_dir

_lock = threading.Lock()  # two sessions asking at once load the voice once


def create_text_to_speech(config: Config) -> TextToSpeech:
    """The voice for `config` (cached, so call it per turn); ModelUnavailableError says why not."""
    if not config.speech_rate > 0:
        raise UserFacingError(f"The speaking rate must be above 0 (1.0 is normal), not {config.speech_rate}.")
    with _lock:
        return _create(config.tts_backend, config.voice, config.speech_rate, voices_dir(config), config.device)


@functools.lru_cache(maxsize=8)
def _create(backend: str, voice: str, speech_rate: float, folder: Path, device: str) -> TextToSpeech:
    # Each backend is imported only when chosen: coqui-tts is optional and heavy.
    if backend == "piper":
        from mmchat.tts.piper_backend import load_piper

        return load_piper(voice, speech_rate, folder)
    if backend == "hibari":
        from mmchat.tts.hibari_backend import load_hibari

        return load_hibari(voice, speech_rate, folder)
    if backend == "coqui":
        from mmchat.tts.coqui_backend import load_coqui

        return load_coqui(voice, speech_rate, device)
    raise ModelUnavailableError(
        f"Speech output is off (--tts-backend {backend}); use --tts-backend piper or hibari to hear answers."
    )

