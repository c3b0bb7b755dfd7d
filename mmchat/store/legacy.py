"""The JSON store of earlier versions (`ConversationStore`), and its conversations brought into SQLite.

The JSON files and their media folders are left where they are: the import only reads,
so going back to an older mmchat loses nothing. The import takes the store it adds to
as an argument (anything with `import_conversation`), so this module needs nothing of
sqlite_store, which calls it when it opens.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..conversation import AudioPart, Conversation, ImagePart, TextPart
from .schema import LOCAL_OWNER

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")


class ConversationStore:
    """Conversations saved as JSON files, one per conversation, under `root`: the store of
    earlier versions, kept to be imported from (and for tests that write such folders)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def media_dir(self, conversation_id: str) -> Path:
        return self.root / "media" / conversation_id

    def _path(self, conversation_id: str) -> Path:
        return self.root / "conversations" / f"{conversation_id}.json"

    def keep_media(self, source: str | Path, data: bytes | None = None) -> str:
        """A copy of the upload `source` (`data`: its bytes, read already) under a name of
        its own; the path to use in a part."""
        folder = self.root / "media"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uuid.uuid4().hex}{Path(source).suffix.lower()}"
        if data is None:
            shutil.copyfile(source, target)
        else:
            target.write_bytes(data)
        return str(target)

    def save(self, conversation: Conversation, owner: str = LOCAL_OWNER) -> None:
        """`owner` is accepted for ChatSession's sake and ignored: the folder is one person's."""
        path = self._path(conversation.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per write: two tabs may save the same conversation at once.
        temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_text(conversation.to_json(), encoding="utf-8")
        temporary.replace(path)  # atomic: a crash never leaves half a file

    def load(self, conversation_id: str) -> Conversation | None:
        if not _SAFE_ID.match(conversation_id or ""):  # the id comes from the browser
            return None
        path = self._path(conversation_id)
        try:
            return Conversation.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable conversation file %s", path)
            return None

    def delete(self, conversation_id: str, owner: str = LOCAL_OWNER) -> bool:
        if not _SAFE_ID.match(conversation_id or ""):
            return False
        try:
            self._path(conversation_id).unlink()
        except FileNotFoundError:
            return False
        return True


class Importing(Protocol):
    """What the import adds conversations to (SQLiteStore)."""

    def import_conversation(self, conversation: Conversation, owner: str = LOCAL_OWNER,
                            created: float | None = None, updated: float | None = None) -> bool: ...


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # conversation ids
    already_there: list[str] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def import_json_folder(store: Importing, folder: Path, owner: str = LOCAL_OWNER) -> ImportReport:
    """Add every conversation of `folder`/*.json that `store` lacks, with its photos and
    recordings copied into the store. Running it again adds nothing; a file that can't
    be read is logged and skipped."""
    report = ImportReport()
    if not folder.is_dir():
        return report
    for path in sorted(folder.glob("*.json")):
        try:
            conversation = _well_formed(Conversation.from_json(path.read_text(encoding="utf-8")))
            changed = path.stat().st_mtime
            # The file's time is the last the conversation changed; when it began is not known.
            added = store.import_conversation(conversation, owner, created=changed, updated=changed)
        # RecursionError: JSON nested too deep to parse; OverflowError: a number too large for a float.
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
                OverflowError, sqlite3.IntegrityError) as exc:
            log.warning("not importing conversation file %s: %s", path, exc)
            report.unreadable.append(path)
            continue
        (report.imported if added else report.already_there).append(conversation.id)
    if report.imported or report.unreadable:
        log.info("imported %d conversations from %s (%d unreadable)", len(report.imported), folder,
                 len(report.unreadable))
    return report


def _well_formed(conversation: Conversation) -> Conversation:
    """`conversation` if every field has the type the app wrote; ValueError if not.

    from_json takes the JSON's values as they are: a damaged file could otherwise put a
    list where a role goes, or a number where a text goes, into the store.
    """
    if not isinstance(conversation.id, str):
        raise ValueError("the conversation's id is not a string")
    for turn in conversation.turns:
        if turn.role not in ("user", "assistant") or turn.status not in ("complete", "interrupted", "error"):
            raise ValueError(f"unknown role or status: {turn.role!r}, {turn.status!r}")
        for part in turn.parts:
            if isinstance(part, TextPart):
                fields_ok = isinstance(part.text, str) and isinstance(part.preset, (str, type(None)))
            elif isinstance(part, ImagePart):
                fields_ok = isinstance(part.path, str)
            else:
                fields_ok = (isinstance(part, AudioPart) and isinstance(part.path, str)
                             and isinstance(part.transcript, str) and isinstance(part.language, (str, type(None)))
                             and isinstance(part.duration, (int, float)) and not isinstance(part.duration, bool))
            if not fields_ok:
                raise ValueError(f"a part of the wrong shape: {part!r:.200}")
    return conversation
