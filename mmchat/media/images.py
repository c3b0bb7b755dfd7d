"""Photos: check what users upload, and fit them to the model's pixel budget.

Every way a file can fail to be a usable photo ends in an `InputError` whose message
says what is wrong and what to send instead: not an image (an SVG or a web page renamed
to .png), a format that is not accepted, damaged or cut short, too many pixels (a
decompression bomb is refused as too large, from its header, before anything is
decoded), or too long and thin for the model. `decode` refuses them when the photo
arrives; for a photo stored before the checks existed, `open_for_model` turns what is
wrong into the same kind of refusal instead of an exception in the middle of a turn.

Photos of every accepted kind reach the model as upright 8-bit RGB: EXIF orientation
applied, CMYK and 16-bit converted, transparency laid on white (as a browser shows it
on a white page). An animated image or a multi-page file is used by its first frame;
`photo_notice` says so, in words for the user.

HEIC/HEIF (what iPhones save) opens through pillow-heif, registered with Pillow on first
use; without it, a HEIC photo is refused with a message that says so.

A photo is read and decoded once on its way in (`decode`, through `photos.read_photo`),
which checks it and makes the model's copy in the same pass; `photos.py` keeps that
copy for the turns that send it again.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import InputError

log = logging.getLogger(__name__)

# The formats accepted (Pillow's names), each with the name people know it by, in the
# order the refusal lists them. MPO is the JPEG that some cameras save (a photo with a
# second view in it); HEIF is what iPhones save as .heic.
ACCEPTED_FORMATS = {
    "JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF",
    "HEIF": "HEIC",
}
# Qwen-VL's image processor refuses a picture whose long side is more than 200 times
# its short side (transformers' smart_resize raises); such a picture is refused here,
# with a message, before it reaches the model.
MAX_ASPECT_RATIO = 200
# Beginnings of the accepted formats, to tell a damaged photo from a file of another kind.
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
# The brands of an ISO media file (its "ftyp" box) that mean a HEIC/HEIF picture.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
# What a transparent photo is laid on: the page shows it on white too.
_BACKGROUND = (255, 255, 255)


def accepted_formats(comma: str = ", ", last: str = " or ") -> str:
    """The formats a photo may be sent in, as a user reads them: "JPEG, PNG, WebP, GIF,
    BMP, TIFF or HEIC" (HEIC only where pillow-heif lets this server open it)."""
    heif = _register_heif()
    names = list(dict.fromkeys(name for kind, name in ACCEPTED_FORMATS.items() if kind != "HEIF" or heif))
    return comma.join(names[:-1]) + last + names[-1]


def _formats() -> dict:
    """The accepted formats for a message's blanks, in English and in Chinese."""
    return {"formats": accepted_formats(), "formats_zh": accepted_formats("、", " 或 ")}


def check_image(path: str | Path, *, max_pixels: int, max_bytes: int) -> tuple[int, int]:
    """Refuse a file that is not a readable photo within the limits; return its size.

    The pixel count is read from the header before anything is decoded, so a
    decompression bomb is refused without allocating its pixels. (`photos.read_photo`
    does the same checks and keeps what it decoded; this is the check alone.)
    """
    path = Path(path)
    size, _, _ = decode(read_upload(path, max_bytes), path.name, max_pixels=max_pixels, model_pixels=None)
    return size


def read_upload(path: Path, max_bytes: int) -> bytes:
    """The bytes of an upload, or the refusal of one that is missing, empty or too big
    (told from its size before anything is read)."""
    name = path.name
    unreadable = InputError(f"The photo {name} could not be read. Please send it again.", "photo_unreadable",
                            name=name)
    try:
        size = path.stat().st_size
    except OSError:
        raise unreadable from None
    check_size(name, size, max_bytes)
    try:
        return path.read_bytes()
    except OSError:
        raise unreadable from None


def check_size(name: str, size: int, max_bytes: int) -> None:
    """InputError for a photo of `size` bytes that is empty or over `max_bytes`."""
    if size == 0:
        raise InputError(f"The photo {name} is empty (0 bytes). Please send it again.", "photo_empty", name=name)
    if size > max_bytes:
        megabytes, limit = f"{size / 1e6:.1f}", f"{max_bytes / 1e6:.0f}"
        raise InputError(f"The photo {name} is {megabytes} MB; the limit is {limit} MB.", "photo_too_big",
                         name=name, megabytes=megabytes, limit=limit)


def decode(data: bytes, name: str, *, max_pixels: int | None,
           model_pixels: int | None) -> tuple[tuple[int, int], str | None, Image.Image | None]:
    """The one decode of a photo's bytes: (its size as sent, the notice about how it is used,
    the model's copy). Raises InputError, with a message for the user, for whatever is wrong.

    `max_pixels`: the checks of an upload (accepted format, pixels counted from the header
    before anything is decoded); None for a photo stored before they existed, held only to
    what the model can read. `model_pixels`: the budget of the model's copy (upright 8-bit
    RGB, fitted); None to check that the photo decodes, without a copy.
    """
    checked = max_pixels is not None
    _register_heif()
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own ceiling, far above ours: too large, not damaged
        raise _too_many_pixels(name, None, max_pixels) from None
    except Exception as exc:  # Pillow's format plugins raise many kinds of error on hostile bytes
        log.info("%s could not be opened: %r", name, exc)
        raise _not_readable(name, data[:1024]) from None
    with image:
        width, height = image.size
        if checked:
            if image.format not in ACCEPTED_FORMATS:
                raise InputError(f"{name} is in the {image.format} format, which is not accepted; please send a "
                                 f"photo in {accepted_formats()} format.", "photo_format", name=name,
                                 kind=image.format, **_formats())
            if width * height > max_pixels:
                raise _too_many_pixels(name, (width, height), max_pixels)
        _check_aspect_ratio(name, width, height)
        notice = _notice(image, name) if checked else None
        if model_pixels is not None and image.format == "JPEG" and width * height > model_pixels:
            # Let the JPEG decoder skip detail we would throw away: decoding a 12 MP photo
            # at 1/2 or 1/4 scale is several times faster (bench/photo_prep.py).
            scale = math.sqrt(model_pixels / (width * height))
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        try:
            image.load()  # a truncated or corrupt file fails here; an animation: its first frame
        except Exception as exc:  # as above: whatever a plugin raises, the file can't be decoded
            log.info("%s could not be decoded: %r", name, exc)
            raise (_damaged(name) if checked else _not_readable(name, data[:1024])) from None
        if model_pixels is None:
            return (width, height), notice, None
        try:
            copy = _as_rgb(_upright(image))
        except Exception as exc:  # whatever a format plugin raises: the photo can't be used
            log.warning("decoding the photo %s failed: %r", name, exc)
            raise _not_readable(name, data[:1024]) from None
    return (width, height), notice, fit_pixel_budget(copy, model_pixels)


def _notice(image: Image.Image, name: str) -> str | None:
    """What the user should be told about how an opened photo is used (see photo_notice)."""
    notice = None
    if image.format == "MPO":  # a camera's second view of the same photo: nothing to say
        return None
    if image.format in ("TIFF", "HEIF") and getattr(image, "n_frames", 1) > 1:
        what = "pages" if image.format == "TIFF" else "pictures"
        notice = f"{name} holds {image.n_frames} {what}; only the first is used."
    elif getattr(image, "is_animated", False):
        notice = f"{name} is animated; only its first frame is used (the model looks at still photos)."
    if notice:
        log.info("%s", notice)
    return notice


def photo_notice(path: str | Path) -> str | None:
    """What the user should be told about how a photo is used (only the first frame of
    an animation, the first page of a document), or None. For a photo `check_image` passed.

    The page shows it beside the answer; the API has no place for it in a chat
    completion, so it is logged there and the first frame is used all the same.
    """
    _register_heif()
    try:
        with Image.open(path) as image:
            return _notice(image, Path(path).name)
    except Exception:  # not readable: check_image refuses it with the reason
        return None


def open_for_model(source: str | Path | bytes, max_pixels: int, name: str | None = None) -> Image.Image:
    """Decode a stored photo as 8-bit RGB, upright, and within `max_pixels` (aspect kept).

    Raises InputError, with a message for the user, for a photo that can't be decoded:
    one that passed `check_image` yet fails further in, or one stored before a check existed.
    """
    if isinstance(source, bytes):
        data, name = source, name or "photo"
    else:
        name = name or Path(source).name
        data = read_stored(source, name)
    _, _, image = decode(data, name, max_pixels=None, model_pixels=max_pixels)
    return image


def read_stored(path: str | Path, name: str) -> bytes:
    """The bytes of a photo kept on the server, or why they can't be had."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"The photo {name} is no longer on the server; please send it again.", "photo_gone",
                         name=name) from None
    except OSError:
        raise InputError(f"The photo {name} could not be read. Please send it again.", "photo_unreadable",
                         name=name) from None


def fit_pixel_budget(image: Image.Image, max_pixels: int) -> Image.Image:
    """`image` scaled down to at most `max_pixels`, its aspect kept (within the model's limit)."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    new_width, new_height = max(1, int(width * scale)), max(1, int(height * scale))
    # Rounding the short side down can stretch a long, thin photo past the model's limit.
    if new_width > new_height * MAX_ASPECT_RATIO:
        new_width = new_height * MAX_ASPECT_RATIO
    elif new_height > new_width * MAX_ASPECT_RATIO:
        new_height = new_width * MAX_ASPECT_RATIO
    return image.resize((new_width, new_height), Image.Resampling.LANCZOS)


# --- decoding any accepted kind of photo ---

def _upright(image: Image.Image) -> Image.Image:
    """The photo as it is meant to be seen: phone photos are often stored sideways, with
    the turn to make written in their EXIF."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # a damaged EXIF block: the pixels are still good, as stored
        log.info("the EXIF orientation of a photo could not be read (%r); using it as stored", exc)
        return image


def _as_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, whatever the photo's mode: CMYK, 16-bit or floating-point grey,
    palette, with or without transparency."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = _eight_bit_grey(image)
    if "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info:
        # Transparent pixels keep whatever colour they happen to hold (often black); laid
        # on white they look as the page shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _eight_bit_grey(image: Image.Image) -> Image.Image:
    """An "L" image of a 16-bit, 32-bit or floating-point grey one: Pillow's own
    conversion clips every value above 255 to white."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))  # [H, W]
    if image.mode.startswith("I;16"):
        values = values / 257.0
    elif image.mode == "F" and values.max(initial=0.0) <= 1.0:  # floating point photos are 0..1
        values = values * 255.0
    elif image.mode == "I" and values.max(initial=0.0) > 255:  # 16-bit values in a 32-bit image
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


# --- refusals ---

def _check_aspect_ratio(name: str, width: int, height: int) -> None:
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(
            f"The photo {name} is {width}x{height} pixels, too long and thin for the model: its long side "
            f"may be at most {MAX_ASPECT_RATIO} times its short side. Please crop it into shorter pieces.",
            "photo_too_thin", name=name, width=width, height=height, ratio=MAX_ASPECT_RATIO)


def _too_many_pixels(name: str, size: tuple[int, int] | None, max_pixels: int | None) -> InputError:
    if size is None:  # refused by Pillow from the header, past its own ceiling (Image.MAX_IMAGE_PIXELS)
        ceiling = 2 * Image.MAX_IMAGE_PIXELS
        limit = f"; the limit is {min(max_pixels, ceiling) / 1e6:.0f} MP" if max_pixels else ""
        return InputError(f"The photo {name} has far too many pixels to be opened (over {ceiling / 1e6:.0f} MP)"
                          f"{limit}. Please send a smaller one.", "photo_far_too_many_pixels", name=name)
    width, height = size
    megapixels, limit = f"{width * height / 1e6:.0f}", f"{max_pixels / 1e6:.0f}"
    return InputError(
        f"The photo {name} is {width}x{height} pixels ({megapixels} MP); the limit is {limit} MP. "
        "Please send a smaller one.",
        "photo_too_many_pixels", name=name, width=width, height=height, megapixels=megapixels, limit=limit)


def _damaged(name: str) -> InputError:
    return InputError(f"The photo {name} is damaged or incomplete (it may have been cut short), so it can't be "
                      "read. Please send it again, or another copy of it.", "photo_damaged", name=name)


def _not_readable(name: str, head: bytes) -> InputError:
    """Why bytes that Pillow can't open are not a photo, as far as their first bytes tell."""
    if head.startswith(_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return _damaged(name)
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        if _register_heif():
            return _damaged(name)
        return InputError(f"{name} is a HEIC photo, and this server can't open HEIC: the pillow-heif package is "
                          "not installed (the server's operator can add it with: pip install pillow-heif). "
                          f"Please send it in {accepted_formats()} format instead.", "photo_no_heic", name=name,
                          **_formats())
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text:
        return InputError(f"{name} is an SVG drawing, not a photo; please send a photo in {accepted_formats()} "
                          "format.", "photo_svg", name=name, **_formats())
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        return InputError(f"{name} is a web page (HTML), not a photo; please send a photo in "
                          f"{accepted_formats()} format.", "photo_html", name=name, **_formats())
    return InputError(f"{name} is not a photo (not in any image format this app reads); please send one in "
                      f"{accepted_formats()} format.", "photo_not_image", name=name, **_formats())


_heif_available: bool | None = None  # None: not tried yet
_heif_lock = threading.Lock()


def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF through pillow-heif, the first time a photo is looked
    at (importing it at start would slow every start for a format few send); whether it can."""
    global _heif_available
    if _heif_available is not None:
        return _heif_available
    with _heif_lock:
        if _heif_available is None:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                log.info("pillow-heif is not installed: HEIC photos are refused (pip install pillow-heif)")
                _heif_available = False
            else:
                register_heif_opener(thumbnails=False)
                _heif_available = True
    return _heif_available
