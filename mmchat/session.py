"""One person's chat session: their conversation, its media, its cancel scope, its file."""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .cancel import CancelScope
from .conversation import Conversation

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

    def save(self, conversation: Conversation) -> None:
        path = self._path(conversation.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
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


@dataclass
class ChatSession:
    store: ConversationStore
    conversation: Conversation = field(default_factory=Conversation)
    cancel_scope: CancelScope = field(default_factory=CancelScope)

    @property
    def media_dir(self) -> Path:
        return self.store.media_dir(self.conversation.id)

    def keep_upload(self, path: str | Path) -> str:
        """Copy an upload (a temporary file) into this conversation's media folder."""
        folder = self.media_dir
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uuid.uuid4().hex}{Path(path).suffix.lower()}"
        shutil.copyfile(path, target)
        return str(target)

    def save(self) -> None:
        if self.conversation.turns:
            self.store.save(self.conversation)

    def new_chat(self) -> None:
        self.cancel_scope.cancel()
        self.conversation = Conversation()
