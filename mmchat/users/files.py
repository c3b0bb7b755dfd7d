"""Who may fetch which file through the page's file route, with --auth.

Gradio's own check knows folders, not people: a folder in `allowed_paths` is open to
everyone logged in. So the log-in gate asks this first, for every file the route is
asked for:

- a photo or recording of the store (data_dir/media): only to a user with a saved
  conversation that uses it (the same content may be in several people's, by hash);
- an export (data_dir/exports/NAME/...): only to NAME;
- anything else in the data folder (the database, first of all): never;
- a file in Gradio's upload folder (also its cache): only to the user who uploaded it,
  or for whose answer Gradio made it (the gate notes both from what the server sends
  them), until the server stops;
- the page's own files there (its example photos): to everyone logged in;
- anything else (the page's own assets, Gradio's files): Gradio's own check decides.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

from ..store import SQLiteStore

# Uploads remembered, oldest forgotten first: a preview a page asks for again much later
# is refused, which costs a re-upload, never someone else's photo.
_GRANTS_KEPT = 20_000


class FileAccess:
    def __init__(self, store: SQLiteStore, upload_folder: str | Path,
                 page_files: Callable[[], Iterable[str]] = tuple) -> None:
        """`page_files`: the files of the page itself (its example photos, which Gradio
        keeps in its cache), the same for everyone logged in."""
        self.store = store
        self._page_files = page_files
        self._public: set[Path] = set()
        self.data_dir = Path(os.path.realpath(store.root))
        self.media_dir = Path(os.path.realpath(store.media.root))
        self.exports_dir = self.data_dir / "exports"
        self.upload_folder = Path(os.path.realpath(upload_folder))
        self._uploads: OrderedDict[tuple[str, Path], None] = OrderedDict()
        self._lock = threading.Lock()

    def grant_upload(self, user: str, path: str | Path) -> None:
        with self._lock:
            self._uploads[(user, _real(path))] = None
            while len(self._uploads) > _GRANTS_KEPT:
                self._uploads.popitem(last=False)

    def is_upload(self, path: str | Path) -> bool:
        return _real(path).is_relative_to(self.upload_folder)

    def judges(self, path: str | Path) -> bool:
        """Whether `path` is in a folder whose files this decides on (else Gradio does)."""
        real = _real(path)
        return real.is_relative_to(self.data_dir) or real.is_relative_to(self.upload_folder)

    def may_fetch(self, user: str, path: str | Path) -> bool:
        """Whether `user` may have the file at `path` (a path as the route was given it)."""
        real = _real(path)
        if real.is_relative_to(self.upload_folder):
            with self._lock:
                if (user, real) in self._uploads or real in self._public:
                    return True
            # Read again on a miss: the page's files are known once it is configured.
            public = {_real(path) for path in self._page_files()}
            with self._lock:
                self._public = public
            return real in public
        if real.is_relative_to(self.media_dir):
            digest = self.store.media.digest_of(real)
            return digest is not None and self.store.owner_uses_media(user, digest)
        if real.is_relative_to(self.exports_dir):
            return real.parent == self.exports_dir / user
        return not real.is_relative_to(self.data_dir)


def _real(path: str | Path) -> Path:
    # realpath, as Gradio resolves it before serving: a symlink or '..' can't lead elsewhere.
    return Path(os.path.realpath(os.path.abspath(path)))
