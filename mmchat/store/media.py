"""Photos and recordings on disk: one file per distinct content, named by its hash,
at <root>/<first two hex digits>/<hash><extension>.

This module only handles files; which of them are still used is the database's to say
(see SQLiteStore), and every rename into place or removal here happens while the store
holds the database's write lock, so the files and the rows never disagree for long.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_NAME = re.compile(r"^([0-9a-f]{64})(\.[a-z0-9]{1,10})?$")
_PREFIX = re.compile(r"^[0-9a-f]{2}$")
_EXTENSION = re.compile(r"^\.[a-z0-9]{1,10}$")
_CHUNK = 1 << 20


def content_hash(path: Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, lambda: hashlib.blake2b(digest_size=32)).hexdigest()


@dataclass(frozen=True)
class Staged:
    """A copy of an upload beside the store, hashed, not yet in place."""

    digest: str
    extension: str
    size: int
    temporary: Path


class MediaFiles:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Copies are written here first, so no file ever has its final name half-written.
        self.incoming = self.root / "incoming"

    def path_for(self, digest: str, extension: str) -> Path:
        return self.root / digest[:2] / f"{digest}{extension}"

    def digest_of(self, path: str | Path) -> str | None:
        """The hash that names `path`, if it is a file of this store (not just any file)."""
        path = Path(path)
        match = _NAME.match(path.name)
        if match is None or path.parent.name != match.group(1)[:2]:
            return None
        try:
            inside = path.parent.parent.resolve() == self.root.resolve()
        except OSError:
            return None
        return match.group(1) if inside else None

    def stage(self, source: str | Path, data: bytes | None = None) -> Staged:
        """Copy `source` beside the store, hashing it on the way (it is read once); with
        `data` (its bytes, read already), those are written and `source` only names it."""
        source = Path(source)
        extension = source.suffix.lower()
        if not _EXTENSION.match(extension):
            extension = ""
        self.incoming.mkdir(parents=True, exist_ok=True)
        temporary = self.incoming / f"{uuid.uuid4().hex}.part"
        digest = hashlib.blake2b(digest_size=32)
        size = 0
        try:
            with open(temporary, "wb") as writing:
                for chunk in _chunks(source) if data is None else (data,):
                    digest.update(chunk)
                    writing.write(chunk)
                    size += len(chunk)
                writing.flush()
                # On disk before the row that points at it commits: a power cut must
                # not leave a saved turn whose photo is an empty file.
                os.fsync(writing.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return Staged(digest.hexdigest(), extension, size, temporary)

    def place(self, staged: Staged, extension: str) -> Path:
        """Move a staged copy to its final name (`extension`: the one the content was
        first stored with), or drop it if that content is there already."""
        final = self.path_for(staged.digest, extension)
        if final.exists():
            self.discard(staged)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged.temporary, final)
            _sync_folder(final.parent)  # the new name, too, on disk before the row commits
        return final

    def discard(self, staged: Staged) -> None:
        staged.temporary.unlink(missing_ok=True)

    def remove(self, digest: str, extension: str) -> None:
        self.path_for(digest, extension).unlink(missing_ok=True)

    def stray_files(self, older_than: float) -> Iterator[tuple[str | None, Path]]:
        """Files in the store's folders last changed before `older_than` (Unix seconds):
        (hash, path) for stored contents, (None, path) for copies never placed. Other
        folders (the JSON store's per-conversation media) are not looked at."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder == self.incoming or (_PREFIX.match(folder.name) and folder.is_dir()):
                for path in folder.iterdir():
                    try:
                        if path.stat().st_mtime >= older_than:
                            continue
                    except FileNotFoundError:
                        continue
                    match = _NAME.match(path.name)
                    yield (match.group(1) if match and folder != self.incoming else None), path


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as reading:
        while chunk := reading.read(_CHUNK):
            yield chunk


def _sync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
