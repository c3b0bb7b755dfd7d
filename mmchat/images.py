"""Photos: check what users upload, and fit them to the model's pixel budget."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

# Formats a browser can show back to the user; anything else is refused up front.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}


def check_image(path: str | Path, *, max_pixels: int, max_bytes: int) -> tuple[int, int]:
    """Refuse a file that is not a readable photo within the limits; return its size.

    The pixel count is read from the header before anything is decoded, so a
    decompression bomb is refused without allocating its pixels.
    """
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError(f"The photo {name} could not be read.") from None
    if size == 0:
        raise InputError(f"The photo {name} is empty.")
    if size > max_bytes:
        raise InputError(
            f"The photo {name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
        )
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.format not in ACCEPTED_FORMATS:
                raise InputError(f"{name} is a {image.format} file; please send a JPEG, PNG or WebP photo.")
            if width * height > max_pixels:
                raise InputError(
                    f"The photo {name} is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
                    f"the limit is {max_pixels / 1e6:.0f} MP."
                )
            image.load()  # a truncated or corrupt file fails here, not later inside the model
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InputError(f"{name} is not a photo that can be opened (damaged or not an image).") from None
    return width, height


def open_for_model(path: str | Path, max_pixels: int) -> Image.Image:
    """Decode a stored photo as RGB, upright, and within `max_pixels` (aspect kept)."""
    with Image.open(path) as image:
        width, height = image.size
        if image.format == "JPEG" and width * height > max_pixels:
            # Let the JPEG decoder skip detail we would throw away: decoding a 12 MP photo
            # at 1/2 or 1/4 scale is several times faster (bench/photo_prep.py).
            scale = math.sqrt(max_pixels / (width * height))
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image = ImageOps.exif_transpose(image)  # phone photos are often stored sideways
        image = image.convert("RGB")
    return fit_pixel_budget(image, max_pixels)


def fit_pixel_budget(image: Image.Image, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    new_size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(new_size, Image.Resampling.LANCZOS)
