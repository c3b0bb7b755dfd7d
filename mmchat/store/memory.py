"""A store that keeps nothing: the session store of an API request.

The chat API is stateless (a client sends the whole history every time), so saving
each request would store one more copy of a growing conversation per question. A
request's photos are held in memory as they came in (media.photos); their parts keep
pointing there, and nothing is written to disk.
"""

from __future__ import annotations

from pathlib import Path

from ..conversation import Conversation
from .schema import LOCAL_OWNER


class MemoryStore:
    def keep_media(self, source: str | Path, data: bytes | None = None) -> str:
        """`source` itself: what it names (a photo held in memory) lives as long as the request."""
        return str(source)

    def save(self, conversation: Conversation, owner: str = LOCAL_OWNER) -> None:
        pass

    def delete(self, conversation_id: str, owner: str = LOCAL_OWNER) -> bool:
        return False
