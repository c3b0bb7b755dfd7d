"""A photo on its way in, read and decoded once; its decoded copy kept for the turns that send it again.

`read_photo` reads an upload's bytes once and decodes them once (`images.decode`): the
checks, the notice, the model's copy (upright RGB within the pixel budget) and the
photo's identity, a digest of its bytes, all come out of that one pass. The copy goes
into a small LRU (`PHOTOS`) under the identity. The store names media by the same
digest, and `remember_copy` notes that the stored copy holds those bytes, so an engine
that reads the conversation's photo from the store finds the decoded copy without
reading the file or decoding it again.

Every turn of a conversation sends its whole history again, and decoding every earlier
photo each time made a long photo chat slower with each turn. Photos are told apart by
their bytes, so the same photo sent again in another file (as API clients resend a
conversation's photos with every request) is still the same photo.

A photo that came as bytes (the API's data URLs) is never written to disk: it is held
in memory, under a memory:// URL that the conversation's parts and the engines'
messages carry, for as long as something (the request) holds its `Photo`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from PIL import Image

from .images import check_size, decode, read_stored, read_upload

# Decoded photos kept for the conversations in progress: at the default pixel budget
# (0.8 MP, 2.4 MB as RGB) 64 photos hold about 150 MB.
PHOTO_CACHE_ITEMS = 64
# Where a decoded photo carries its identity (`photo_identity`), for caches further on
# (the engine's processed pixels, the remote engine's data URLs) that must tell two
# photos of the same size apart; and its size as sent, before it was fitted.
IDENTITY_KEY = "mmchat.photo"
SIZE_KEY = "mmchat.size"
PhotoIdentity = tuple  # (digest of the file's bytes, pixel budget)
# Files whose digest is remembered, by (path, mtime, size): stored files are never
# rewritten in place, so a conversation's photos are read and hashed once.
DIGESTS_KEPT = 1024
# The URL of a photo held in memory: this prefix, then its digest.
MEMORY_URL = "memory://photo/"


def content_digest(data: bytes) -> str:
    """The name a photo's bytes go by, here and in the store (media by content hash)."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


@dataclass(frozen=True, eq=False)
class Photo:
    """One photo as it came in, checked, with what its one decode made."""

    name: str
    data: bytes  # the file's bytes, for the store to keep
    digest: str  # content_digest(data)
    size: tuple[int, int]  # (width, height) as sent
    notice: str | None  # images.photo_notice: e.g. only an animation's first frame is used
    image: Image.Image  # the model's copy (shared: callers must not modify it)
    url: str  # what a conversation's part holds: the upload's path, or its memory:// URL


def read_photo(source: str | Path | bytes, *, max_pixels: int, max_bytes: int, model_pixels: int,
               name: str | None = None) -> Photo:
    """Check a photo (a file, or bytes that came in a request) and decode it, once.

    Raises InputError, with a message for the user, for any photo `images.check_image`
    refuses. Bytes are held in memory, under `Photo.url`, while the Photo is referenced.
    """
    if isinstance(source, bytes):
        name = name or "photo"
        check_size(name, len(source), max_bytes)
        data = source
    else:
        name = name or Path(source).name
        data = read_upload(Path(source), max_bytes)
    size, notice, image = decode(data, name, max_pixels=max_pixels, model_pixels=model_pixels)
    digest = content_digest(data)
    image = PHOTOS.put((digest, model_pixels), image, size)
    url = f"{MEMORY_URL}{digest}" if isinstance(source, bytes) else str(source)
    photo = Photo(name, data, digest, size, notice, image, url)
    if isinstance(source, bytes):
        with _held_lock:  # the same bytes in two requests at once: one Photo, held while either holds it
            photo = _held.setdefault(url, photo)
    else:
        remember_copy(source, photo)
    return photo


def held_photo(url: str) -> Photo | None:
    """The photo held in memory under `url`, if any."""
    if not url.startswith(MEMORY_URL):
        return None
    with _held_lock:
        return _held.get(url)


_held: "weakref.WeakValueDictionary[str, Photo]" = weakref.WeakValueDictionary()
_held_lock = threading.Lock()


def local_photo_path(url: str) -> Path | None:
    """The file a photo URL of a conversation names on this machine (a file:// URL or a
    plain path); None for data:, memory:// and web URLs."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" in url or url.startswith("data:"):
        return None
    return Path(url)


def remember_copy(path: str | Path, photo) -> None:
    """Note that the file at `path` holds `photo`'s bytes (the store's copy of it, or of a
    clip: anything with a `digest`), so its identity is known without reading it."""
    _remember(_file_key(path), photo.digest)


def stored_digest(path: str | Path) -> str:
    """`content_digest` of the file at `path`, read in pieces (a clip may be large) and
    remembered by the file's path, time and size, as the photos' digests are."""
    file = _file_key(path)
    with _digests_lock:
        digest = _digests.get(file)
        if digest is not None:
            _digests.move_to_end(file)
            return digest
    with open(file[0], "rb") as source:
        digest = hashlib.file_digest(source, lambda: hashlib.blake2b(digest_size=32)).hexdigest()
    _remember(file, digest)
    return digest


def photo_identity(path: str | Path, max_pixels: int) -> PhotoIdentity:
    """What tells a photo apart from every other: a digest of its bytes, and the pixel
    budget it is fitted to."""
    return (_digest_of(path)[0], max_pixels)


def url_identity(url: str, max_pixels: int) -> PhotoIdentity:
    """`photo_identity` of the photo a conversation's URL names (a file, or one held in memory)."""
    held = held_photo(url)
    return (held.digest, max_pixels) if held is not None else photo_identity(_local(url), max_pixels)


def load_photo(path: str | Path, max_pixels: int) -> Image.Image:
    """`images.open_for_model`, decoded once per photo (by its bytes) and pixel budget.

    The same Image object comes back for the same photo, tagged with its identity in
    `image.info[IDENTITY_KEY]`; it is shared, so callers must not modify it.
    """
    digest, data = _digest_of(path)
    return PHOTOS.get((digest, max_pixels), lambda: data if data is not None else read_stored(path, Path(path).name),
                      Path(path).name)


def model_image(url: str, max_pixels: int) -> Image.Image:
    """`load_photo` of the photo a conversation's URL names (a file, or one held in memory)."""
    held = held_photo(url)
    if held is None:
        return load_photo(_local(url), max_pixels)
    return PHOTOS.get((held.digest, max_pixels), lambda: held.data, held.name)


def _local(url: str) -> Path:
    path = local_photo_path(url)
    if path is None:
        raise ValueError("photos are read from files on this machine, or held in memory as they came in")
    return path


def _file_key(path: str | Path) -> tuple:
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    return (resolved, stat.st_mtime_ns, stat.st_size)


def _digest_of(path: str | Path) -> tuple[str, bytes | None]:
    """The digest of the file at `path`, and its bytes if they had to be read for it."""
    file = _file_key(path)
    with _digests_lock:
        digest = _digests.get(file)
        if digest is not None:
            _digests.move_to_end(file)
            return digest, None
    data = Path(file[0]).read_bytes()
    digest = content_digest(data)
    _remember(file, digest)
    return digest, data


def _remember(file: tuple, digest: str) -> None:
    with _digests_lock:
        _digests[file] = digest
        _digests.move_to_end(file)
        while len(_digests) > DIGESTS_KEPT:
            _digests.popitem(last=False)


_digests: OrderedDict[tuple, str] = OrderedDict()
_digests_lock = threading.Lock()


class _PhotoCache:
    def __init__(self, items: int) -> None:
        self.items = items
        self._photos: OrderedDict[PhotoIdentity, Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # how many times a photo was actually decoded (for tests)

    def get(self, identity: PhotoIdentity, read: Callable[[], bytes], name: str) -> Image.Image:
        """The decoded photo of `identity`; decoded from `read()` (its bytes) if not kept."""
        with self._lock:
            image = self._photos.get(identity)
            if image is not None:
                self._photos.move_to_end(identity)
                return image
        # Decoded outside the lock: another session's photo need not wait for this one.
        size, _, image = decode(read(), name, max_pixels=None, model_pixels=identity[1])
        return self.put(identity, image, size)

    def put(self, identity: PhotoIdentity, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """Keep a photo just decoded; the one kept for `identity` (this one, or another
        thread's decode of the same photo)."""
        image.info[IDENTITY_KEY] = identity
        image.info[SIZE_KEY] = size
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
