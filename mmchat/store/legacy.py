"""The conversations of the JSON store (session.ConversationStore), brought into SQLite.

The JSON files and their media folders are left where they are: the import only reads,
so going back to an older mmchat loses nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..conversation import AudioPart, Conversation, ImagePart, TextPart
from .schema import LOCAL_OWNER

if TYPE_CHECKING:
    from .sqlite_store import SQLiteStore

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # conversation ids
    already_there: list[str] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def import_json_folder(store: "SQLiteStore", folder: Path, owner: str = LOCAL_OWNER) -> ImportReport:
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
