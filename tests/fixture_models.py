"""Tiny vision-language models for tests, loadable like real hub checkpoints.

- `fixture_model_path(name)`: a random-weight fixture (scripts/make_fixture_models.py),
  built on first use and cached under tests/.fixture-cache/. The cache folder name
  carries a hash of the builder's source, so editing the builder never leaves a
  stale model behind.
- `shapes_vlm_path()`: the committed trained model that answers questions about
  drawn shapes (scripts/train_fixture_vlm.py, model card in its README.md), and
  `draw_test_image(...)`, which draws its images with the training code itself, and
  `draw_test_chart(...)` / `draw_test_exercise(...)` for describe mode's chart and
  exercise presets.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
CACHE = REPO / "tests" / ".fixture-cache"
SHAPES_VLM = REPO / "tests" / "fixtures" / "shapes-vlm"

# scripts/ is a folder of tools, not a package; its modules import each other by name.
if str(SCRIPTS) not in sys.path:
    sys.path.append(str(SCRIPTS))


def fixture_model_path(name: str) -> Path:
    """The folder of fixture `name` ("tiny-qwen3-vl" or "tiny-idefics3"), built if missing."""
    import make_fixture_models

    builder_source = (SCRIPTS / "make_fixture_models.py").read_bytes()
    folder = CACHE / f"{name}-{hashlib.sha256(builder_source).hexdigest()[:12]}"
    if folder.is_dir():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename into place: several test processes may
    # race here, and none must ever see a half-written folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
    make_fixture_models.build_fixture(name, staging)
    try:
        staging.rename(folder)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def shapes_vlm_path() -> Path:
    """The committed tiny Qwen3-VL trained on drawn shapes (see its README.md for what it knows).

    MMCHAT_SHAPES_VLM names another folder instead: a retrained model can then be
    tested (train_fixture_vlm.py --out elsewhere) before it replaces the committed one.
    """
    return Path(os.environ.get("MMCHAT_SHAPES_VLM", SHAPES_VLM))


def draw_test_image(
    shape: str, colour: str, position: str = "left", count: int = 1, word: str | None = None, seed: int = 0
) -> Image.Image:
    """A 96x96 scene as shapes-vlm saw in training: `count` `colour` `shape`s
    (circle/square/triangle/star) in the `position` half (left/right/top/bottom),
    and `word` printed in the other half. `seed` varies placement and shades."""
    from train_fixture_vlm import Scene, draw_scene

    return draw_scene(Scene(shape, colour, position, count, word), random.Random(seed))


def draw_test_chart(colours: tuple[str, ...], heights: tuple[int, ...], seed: int = 0) -> Image.Image:
    """A 96x96 bar chart as shapes-vlm saw in training: one bar per colour, left to
    right, `heights` in grid cells (1-5, all different; 2 or 3 bars)."""
    from train_fixture_vlm import Chart, draw_chart

    return draw_chart(Chart(tuple(colours), tuple(heights)), random.Random(seed))


def draw_test_exercise(first: int, second: int, seed: int = 0) -> Image.Image:
    """A 96x96 printed sum of two digits from 1 to 5, "3 + 4" over "= ?", as shapes-vlm saw in training."""
    from train_fixture_vlm import Exercise, draw_exercise

    return draw_exercise(Exercise(first, second), random.Random(seed))


def sides_that_fit(image: Image.Image) -> set[str]:
    """Each side a right answer may name for a scene drawn by draw_test_image (a lone
    shape in a corner fits two)."""
    from train_fixture_vlm import sides_that_fit

    return sides_that_fit(image)
