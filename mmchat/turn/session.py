"""One person's chat session: their conversation, its cancel scope, where it is kept.

The app keeps conversations in a `store.SQLiteStore`. `ConversationStore`, the JSON
files of earlier versions, remains for the API's per-request sessions (a folder that
lives as long as the request) and as what the SQLite store imports from.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..cancel import CancelScope, CancelToken
from ..conversation import Conversation
from ..store import LOCAL_OWNER, SQLiteStore

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")


class ConversationStore:
    """Conversations saved as JSON files, one per conversation, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def media_dir(self, conversation_id: str) -> Path:
        return self.root / "media" / conversation_id

    def _path(self, conversation_id: str) -> Path:
        return self.root / "conversations" / f"{conversation_id}.json"

    def keep_media(self, source: str | Path) -> str:
        """A copy of the upload `source` under a name of its own; the path to use in a part."""
        folder = self.root / "media"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uuid.uuid4().hex}{Path(source).suffix.lower()}"
        shutil.copyfile(source, target)
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


@dataclass
class ChatSession:
    """One browser tab's (or API client's) state: at most one turn runs in it at a time.

    A new turn ends the one running (`begin_turn`), and every change to a conversation
    goes through `lock`, so two overlapping turns can never interleave their edits.
    """

    store: SQLiteStore | ConversationStore
    conversation: Conversation = field(default_factory=Conversation)
    owner: str = LOCAL_OWNER  # whose conversations these are in the store
    language: str = "en"  # the page's language (mmchat.i18n): the server's messages are made in it
    cancel_scope: CancelScope = field(default_factory=CancelScope)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def begin_turn(self) -> CancelToken:
        """End the running turn, if any (its answer is kept, marked stopped); the new
        turn's token, which reads cancelled once it is stopped or replaced."""
        return self.cancel_scope.new_token()

    def keep_upload(self, path: str | Path, conversation: Conversation) -> str:
        """Copy an upload (a temporary file) into the store; the path `conversation`'s
        part is to use. With the SQLite store the copy is shared by every conversation
        holding the same content, so it is never deleted here: the store removes it once
        no saved turn uses it (after a grace time that covers the turn about to save it)."""
        return self.store.keep_media(path)

    def save(self, conversation: Conversation | None = None) -> None:
        """Save `conversation` (default: the open one); a turn saves the one it belongs
        to, which is no longer the open one after New chat."""
        conversation = conversation or self.conversation
        with self.lock:
            if conversation.turns:
                self.store.save(conversation, self.owner)
            else:  # its only question was taken back (refused): what was saved of it goes too
                self.store.delete(conversation.id, self.owner)

    def new_chat(self) -> None:
        with self.lock:
            self.cancel_scope.cancel()
            self.conversation = Conversation()
