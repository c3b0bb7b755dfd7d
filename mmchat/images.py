"""Photos: check what users upload, and fit them to the model's pixel budget.

A photo is decoded and fitted once (`load_photo`) and kept in a small LRU: every turn
of a conversation sends its whole history again, and decoding every earlier photo each
time made a long photo chat slower with each turn. Photos are told apart by their
bytes, so the same photo sent again in another file (as API clients resend a
conversation's photos with every request) is still the same photo.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

# Formats a browser can show back to the user; anything else is refused up front.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
# Decoded photos kept for the conversations in progress: at the default pixel budget
# (0.8 MP, 2.4 MB as RGB) 64 photos hold about 150 MB.
PHOTO_CACHE_ITEMS = 64
# Where a decoded photo carries its identity (`photo_identity`), for caches further on
# (the engine's processed pixels) that must tell two photos of the same size apart.
IDENTITY_KEY = "mmchat.photo"

PhotoIdentity = tuple  # (digest of the file's bytes, pixel budget)
# Files whose digest is remembered, by (path, mtime, size): stored files are never
# rewritten in place, so a page conversation's photos are read and hashed once.
DIGESTS_KEPT = 1024


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


def local_photo_path(url: str) -> Path | None:
    """The file a photo URL of a conversation names on this machine (a file:// URL or a
    plain path); None for data: and web URLs."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" in url or url.startswith("data:"):
        return None
    return Path(url)


def photo_identity(path: str | Path, max_pixels: int) -> PhotoIdentity:
    """What tells a photo apart from every other: a digest of its bytes, and the pixel
    budget it is fitted to."""
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    file = (resolved, stat.st_mtime_ns, stat.st_size)
    with _digests_lock:
        digest = _digests.get(file)
        if digest is not None:
            _digests.move_to_end(file)
    if digest is None:
        digest = hashlib.blake2b(Path(resolved).read_bytes(), digest_size=16).hexdigest()
        with _digests_lock:
            _digests[file] = digest
            while len(_digests) > DIGESTS_KEPT:
                _digests.popitem(last=False)
    return (digest, max_pixels)


_digests: OrderedDict[tuple, str] = OrderedDict()
_digests_lock = threading.Lock()


class _PhotoCache:
    def __init__(self, items: int) -> None:
        self.items = items
        self._photos: OrderedDict[PhotoIdentity, Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # how many times a file was actually decoded (for tests)

    def get(self, identity: PhotoIdentity, path: str | Path) -> Image.Image:
        """The decoded photo of `identity`, decoded from `path` (a file with those bytes) if not kept."""
        with self._lock:
            image = self._photos.get(identity)
            if image is not None:
                self._photos.move_to_end(identity)
                return image
        # Decoded outside the lock: another session's photo need not wait for this one.
        image = open_for_model(path, identity[1])
        image.info[IDENTITY_KEY] = identity
        with self._lock:
            self.decoded += 1
            image = self._photos.setdefault(identity, image)
            self._photos.move_to_end(identity)
            while len(self._photos) > self.items:
                self._photos.popitem(last=False)
        return image

    def clear(self) -> None:
        with self._lock:
            self._photos.clear()


PHOTOS = _PhotoCache(PHOTO_CACHE_ITEMS)


def load_photo(path: str | Path, max_pixels: int) -> Image.Image:
    """`open_for_model`, decoded once per photo (by its bytes) and pixel budget.

    The same Image object comes back for the same photo, tagged with its identity in
    `image.info[IDENTITY_KEY]`; it is shared, so callers must not modify it.
    """
    return PHOTOS.get(photo_identity(path, max_pixels), path)
