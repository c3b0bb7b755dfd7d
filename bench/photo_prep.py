"""Time to turn a photo into the image the model sees (decode, upright, pixel budget).

    python bench/photo_prep.py [--runs 7]

Two tables, each side by side on the same photos in one run:
1. the decode alone: a full decode then resize, against the app's `open_for_model`
   (which lets the JPEG decoder drop detail it would throw away);
2. the whole way in of an upload (the checks, the model's copy and the photo's identity):
   as it was before each photo was read once (`check_image`, which decodes to find damage,
   then `open_for_model` and a digest of the file, each reading it again), against
   `photos.read_photo`, which gets all three from one read and one decode.
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
from mmchat.media.images import check_image, fit_pixel_budget, open_for_model  # noqa: E402
from mmchat.media.photos import PHOTOS, content_digest, read_photo  # noqa: E402

MAX_BYTES = 200_000_000  # a bench, not the upload limit: the noise PNG is 30 MB
CHECK_PIXELS = Config().max_image_pixels


def full_decode(path: Path, max_pixels: int) -> Image.Image:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
    return fit_pixel_budget(image, max_pixels)


def checked_then_decoded(path: Path, max_pixels: int) -> Image.Image:
    """The way in before: the check decodes the photo, then the model's copy and the digest read it again."""
    check_image(path, max_pixels=CHECK_PIXELS, max_bytes=MAX_BYTES)
    content_digest(path.read_bytes())
    return open_for_model(path, max_pixels)


def read_once(path: Path, max_pixels: int) -> Image.Image:
    PHOTOS.clear()  # a new upload each time, as a person sends one
    return read_photo(path, max_pixels=CHECK_PIXELS, max_bytes=MAX_BYTES, model_pixels=max_pixels).image


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
    with tempfile.TemporaryDirectory() as folder:
        photos = []
        for width, height, kind in ((4000, 3000, "JPEG"), (1920, 1080, "JPEG"), (4000, 3000, "PNG")):
            path = Path(folder) / f"photo-{width}.{kind.lower()}"
            Image.effect_noise((width, height), 60).convert("RGB").save(path, kind, quality=90)
            photos.append((f"{width}x{height} {kind}", path))
        table("The decode", ("full decode + resize", full_decode), ("open_for_model", open_for_model),
              photos, max_pixels, args.runs)
        table("The way in of an upload (checks, the model's copy, identity)",
              ("check, then decode again", checked_then_decoded), ("read_photo (one read, one decode)", read_once),
              photos, max_pixels, args.runs)


def table(title: str, before, after, photos, max_pixels: int, runs: int) -> None:
    print(f"{title}:\n")
    print(f"| photo | {before[0]} | {after[0]} | speed-up (median) |")
    print("|---|---|---|---|")
    for label, path in photos:
        slow, fast = [], []
        for _ in range(runs):  # interleaved, so a change in the machine's load reaches both
            slow += timed(before[1], path, max_pixels, 1)
            fast += timed(after[1], path, max_pixels, 1)
        print(f"| {label} | {min(slow):.0f} / {statistics.median(slow):.0f} | "
              f"{min(fast):.0f} / {statistics.median(fast):.0f} | "
              f"{statistics.median(slow) / statistics.median(fast):.1f}x |")
    print()


if __name__ == "__main__":
    main()
