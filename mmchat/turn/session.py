"""One person's chat session: their conversation, its cancel scope, where it is kept.

The app keeps conversations in a `store.SQLiteStore`; an API request's session keeps
nothing (`store.MemoryStore`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..cancel import CancelScope, CancelToken
from ..conversation import Conversation
from ..store import LOCAL_OWNER


class Store(Protocol):
    """Where a session keeps its conversations: store.SQLiteStore (the app's), store.MemoryStore
    (an API request's, which keeps nothing), store.legacy.ConversationStore (JSON files)."""

    def keep_media(self, source: str | Path, data: bytes | None = None) -> str: ...

    def save(self, conversation: Conversation, owner: str = LOCAL_OWNER) -> None: ...

    def delete(self, conversation_id: str, owner: str = LOCAL_OWNER) -> bool: ...


@dataclass
class ChatSession:
    """One browser tab's (or API client's) state: at most one turn runs in it at a time.

    A new turn ends the one running (`begin_turn`), and every change to a conversation
    goes through `lock`, so two overlapping turns can never interleave their edits.
    """

    store: Store
    conversation: Conversation = field(default_factory=Conversation)
    owner: str = LOCAL_OWNER  # whose conversations these are in the store
    language: str = "en"  # the page's language (mmchat.i18n): the server's messages are made in it
    cancel_scope: CancelScope = field(default_factory=CancelScope)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    writing: object | None = None  # the answer (a Turn) being written now, if any (pipeline._answer)

    def begin_turn(self) -> CancelToken:
        """End the running turn, if any (its answer is kept, marked stopped); the new
        turn's token, which reads cancelled once it is stopped or replaced."""
        return self.cancel_scope.new_token()

    def keep_upload(self, path: str | Path, conversation: Conversation, data: bytes | None = None) -> str:
        """Copy an upload (a temporary file; `data`: its bytes, read already) into the
        store; the path `conversation`'s part is to use. With the SQLite store the copy is
        shared by every conversation holding the same content, so it is never deleted
        here: the store removes it once no saved turn uses it (after a grace time that
        covers the turn about to save it)."""
        return self.store.keep_media(path, data)

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
