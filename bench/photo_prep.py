"""Time to turn a stored photo into the image the model sees (decode, upright, pixel budget).

    python bench/photo_prep.py [--runs 7]

Compares a full decode then resize with the app's `open_for_model` (which lets the JPEG
decoder drop detail it would throw away), on the same photos, in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmchat.config import Config  # noqa: E402
from mmchat.media.images import fit_pixel_budget, open_for_model  # noqa: E402


def full_decode(path: Path, max_pixels: int) -> Image.Image:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
    return fit_pixel_budget(image, max_pixels)


def timed(function, path: Path, max_pixels: int, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function(path, max_pixels)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    max_pixels = Config().max_pixels
    print(f"pixel budget {max_pixels:,}; {args.runs} runs; ms, min / median\n")
    print("| photo | full decode + resize | open_for_model | speed-up (median) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for width, height, kind in ((4000, 3000, "JPEG"), (1920, 1080, "JPEG"), (4000, 3000, "PNG")):
            path = Path(folder) / f"photo.{kind.lower()}"
            Image.effect_noise((width, height), 60).convert("RGB").save(path, kind, quality=90)
            full = timed(full_decode, path, max_pixels, args.runs)
            fast = timed(open_for_model, path, max_pixels, args.runs)
            print(f"| {width}x{height} {kind} | {min(full):.0f} / {statistics.median(full):.0f} | "
                  f"{min(fast):.0f} / {statistics.median(fast):.0f} | "
                  f"{statistics.median(full) / statistics.median(fast):.1f}x |")


if __name__ == "__main__":
    main()
