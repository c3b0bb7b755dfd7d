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

from ..conversation import Conversation
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
            conversation = Conversation.from_json(path.read_text(encoding="utf-8"))
            changed = path.stat().st_mtime
            # The file's time is the last the conversation changed; when it began is not known.
            added = store.import_conversation(conversation, owner, created=changed, updated=changed)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
                sqlite3.IntegrityError) as exc:
            log.warning("not importing conversation file %s: %s", path, exc)
            report.unreadable.append(path)
            continue
        (report.imported if added else report.already_there).append(conversation.id)
    if report.imported or report.unreadable:
        log.info("imported %d conversations from %s (%d unreadable)", len(report.imported), folder,
                 len(report.unreadable))
    return report
