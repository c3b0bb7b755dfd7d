"""A light-level reading from a photo's pixels, without the model (describe mode's light preset).

Like the light channel of apps for blind users: is the light on, is the room dark,
where is the window. The reading is the mean relative luminance of the frame (sRGB
linearised, Rec. 709 weights), said as CIE lightness in percent, which rises evenly
with how bright a surface looks (mean luminance itself puts a mid grey at 21%).

A webcam's auto-exposure brightens a dim room and darkens a bright one, so a frame
tells "very dark" or "very bright" reliably and the levels in between only roughly;
the spoken words say "about" for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Enough pixels for a mean and a 3x3 map; a 12 MP frame need not be decoded whole.
_READ_PIXELS = 256 * 256
# (lightness below which, in percent; word). Lightness 50 is a mid grey.
LEVELS = (
    (8.0, "Very dark"),
    (25.0, "Dark"),
    (45.0, "Dim"),
    (70.0, "Medium"),
    (88.0, "Bright"),
    (float("inf"), "Very bright"),
)
# A part of the frame this much lighter (in lightness points) than the whole is worth
# naming: it is where the window or the lamp is.
_BRIGHT_SPOT = 15.0
# Parts whose lightness differs by less than this look equally light.
_SAME_LIGHT = 3.0
_PARTS = (
    ("upper left", "top", "upper right"),
    ("left", "middle", "right"),
    ("lower left", "bottom", "lower right"),
)

_WHERE = {part: ("in the middle" if part == "middle" else f"at the {part}" if part in ("top", "bottom")
                 else f"to the {part}") for row in _PARTS for part in row}


@dataclass(frozen=True)
class LightReading:
    luminance: float  # mean relative luminance, 0 (black) to 1 (white)
    lightness: float  # CIE L* of that mean, 0-100: the "brightness" said
    level: str  # one of LEVELS' words
    brightest: str | None  # the part of the frame clearly lighter than the rest, if any

    @property
    def spoken(self) -> str:
        """What a screen reader or voice mode says, e.g. "Dark: about 8% brightness."."""
        words = f"{self.level}: about {round(self.lightness)}% brightness."
        if self.brightest:
            words += f" Brightest {_WHERE[self.brightest]}."
        return words


def linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB values in 0-1 to linear light (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def lightness(luminance: float) -> float:
    """CIE L* (0-100) of a relative luminance (0-1)."""
    if luminance > (6 / 29) ** 3:
        return 116.0 * luminance ** (1 / 3) - 16.0
    return luminance * (29 / 3) ** 3


def _rgb(image: Image.Image) -> np.ndarray:
    """The photo upright as floats in 0-1, [H, W, 3], whatever its mode."""
    image = ImageOps.exif_transpose(image)
    if image.width * image.height > _READ_PIXELS:
        scale = (_READ_PIXELS / (image.width * image.height)) ** 0.5
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: convert("RGB") would clip them at 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # What a transparent pixel "is" is undefined; seen on a page it is the page, white.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def read_light(photo: str | Path | Image.Image | np.ndarray) -> LightReading:
    """The light level of a photo: a file, a PIL image, or an [H, W, 3] uint8 frame."""
    if isinstance(photo, np.ndarray):
        photo = Image.fromarray(photo)
    if isinstance(photo, Image.Image):
        rgb = _rgb(photo)
    else:
        with Image.open(photo) as image:
            image.draft("RGB", (512, 512))  # a JPEG decodes at a fraction of its size, much faster
            rgb = _rgb(image)
    y = linear(rgb) @ np.array([0.2126, 0.7152, 0.0722])  # [H, W] relative luminance
    mean = float(y.mean())
    level_l = lightness(mean)
    level = next(word for limit, word in LEVELS if level_l < limit)
    return LightReading(mean, level_l, level, _brightest(y, level_l))


def _brightest(y: np.ndarray, whole: float) -> str | None:
    """The part of a 3x3 split of the frame that is clearly lightest, named as a person would:
    a whole side ("left") when the side is as light as its lightest part, else a corner."""
    height, width = y.shape
    if height < 3 or width < 3:
        return None
    rows = np.array_split(np.arange(height), 3)
    cols = np.array_split(np.arange(width), 3)
    parts = np.array([[lightness(float(y[np.ix_(r, c)].mean())) for c in cols] for r in rows])
    row, col = np.unravel_index(int(np.argmax(parts)), (3, 3))
    name, best = _PARTS[row][col], parts[row, col]
    bands = [(lightness(float(y[r].mean())), ("top", "middle", "bottom")[i]) for i, r in enumerate(rows)]
    bands += [(lightness(float(y[:, c].mean())), ("left", "middle", "right")[i]) for i, c in enumerate(cols)]
    band, band_name = max(bands)
    if band >= best - _SAME_LIGHT:
        name, best = band_name, band
    return name if best - whole >= _BRIGHT_SPOT else None
