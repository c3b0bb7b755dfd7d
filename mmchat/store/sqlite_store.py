"""SQLiteStore: conversations, their turns and parts, and their photos and recordings,
in one SQLite file in the data folder (the media as files beside it, by content hash)."""

from __future__ import annotations

import errno
import json
import logging
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..conversation import AudioPart, Conversation, ImagePart, Part, TextPart, Turn, VideoPart
from ..errors import UserFacingError
from . import schema
from .legacy import import_json_folder
from .media import MediaFiles
from .schema import LOCAL_OWNER, StoreError, connect, migrate, title_from, write_transaction
from .search import search_condition, snippet

log = logging.getLogger(__name__)

DATABASE_NAME = "mmchat.sqlite3"
# An upload is kept (copied in) a moment before the turn that uses it is saved; until
# then no part refers to it. Unused media younger than this are left alone, so the
# collector never takes a photo from under a turn about to be saved; older ones go.
MEDIA_GRACE_SECONDS = 600.0
TITLE_MAX = 200
_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")
_JSON_IMPORTED = "json_imported"


# What a failed save adds: the turn layer keeps the conversation in the session, and the
# next save writes all of it (a save replaces the whole conversation), so nothing is lost
# unless the page is reloaded first.
_KEPT_FOR_NOW = "It stays on this page and is saved with the next answer once that is fixed."


class SaveFailed(StoreError, UserFacingError):
    """A write the database refused (the disk is full, another program holds the database,
    it is read-only). Nothing of it was written: the transaction was rolled back, so what
    was committed before is all still there. The message says why, for the user (with no
    paths of the server in it: with --auth the user is not who runs it; the log has them)."""


def _refusal(action: str, exc: BaseException, after: str) -> SaveFailed:
    """SaveFailed for `exc` (an sqlite3.OperationalError or an OSError) met while `action`."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text or getattr(exc, "errno", None) in _DISK_FULL:
        why = "the server's disk is full (space must be freed on it)"
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        why = (f"the database is busy (another program has held it for more than {schema.BUSY_SECONDS:g} "
               "seconds; wait a moment, or close that program)")
    elif name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        why = "the database is read-only (its file and folder must be made writable)"
    else:
        why = f"the database refused the write ({exc})"
    return SaveFailed(f"{action}: {why}." + (f" {after}" if after else ""))


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class ConversationSummary:
    """One line of the history list."""

    id: str
    title: str
    created: float  # Unix seconds
    updated: float
    custom_title: bool = False  # renamed by the user (else made from the first question)
    snippet: str = ""  # in a search result: the words around the first match in its text ("" if only its title holds them)


@dataclass(frozen=True)
class _Prepared:
    """A part as it will be written: media resolved to a hash (None: the file is gone)."""

    kind: str
    text: str | None = None
    digest: str | None = None
    path: str | None = None
    language: str | None = None
    duration: float | None = None
    preset: str | None = None  # a text part's describe-mode task tag


class SQLiteStore:
    """The conversations of every owner, in `data_dir`/mmchat.sqlite3.

    Safe to share between threads: one connection, used under a lock (two saves a turn
    need no more). Other processes may open the same folder: WAL lets them read while
    one writes, and a writer waits up to `schema.BUSY_SECONDS` for another's lock.

    Opening it brings the schema up to date, imports the JSON conversations of the
    older store once, and clears media left unused (by a crash, or a question refused).
    """

    def __init__(self, data_dir: str | Path, *, media_grace: float = MEDIA_GRACE_SECONDS,
                 import_json: bool = True) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DATABASE_NAME
        self.media = MediaFiles(self.root / "media")
        self.media_grace = media_grace
        self._lock = threading.RLock()
        self._db = connect(self.path)
        try:
            migrate(self._db)
            if import_json and self._meta(_JSON_IMPORTED) is None:
                import_json_folder(self, self.root / "conversations")
                self._set_meta(_JSON_IMPORTED, str(time.time()))
            with self._lock, write_transaction(self._db) as db:
                self._collect(db, stray_files=True)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "SQLiteStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- conversations ---

    def save(self, conversation: Conversation, owner: str = LOCAL_OWNER) -> None:
        """Write `conversation` as it is now, in one transaction: new, or replacing what was
        saved before. Its photos and recordings must be files; those outside the store
        are copied in (one that is gone is kept as not available).
        Raises PermissionError if the conversation belongs to another owner."""
        self._write(conversation, owner, time.time(), only_if_new=False,
                    failed=("Your conversation could not be saved", _KEPT_FOR_NOW))

    def import_conversation(self, conversation: Conversation, owner: str = LOCAL_OWNER,
                            created: float | None = None, updated: float | None = None) -> bool:
        """Add `conversation` unless one with its id exists (then nothing changes): False
        if it existed. For imports, which bring their own times."""
        stamp = time.time()
        return self._write(conversation, owner, stamp if updated is None else updated,
                           created=created, only_if_new=True, failed=("The conversation could not be imported", ""))

    def load(self, conversation_id: str, owner: str = LOCAL_OWNER) -> Conversation | None:
        """The conversation, or None if there is none with this id for this owner."""
        if not _SAFE_ID.match(conversation_id or ""):  # the id comes from the browser
            return None
        with self._lock:
            # One statement, so one consistent state even while another process writes.
            rows = self._db.execute(
                """SELECT t.position, t.role, t.status, t.timings, t.versions, p.kind, p.text, p.media_hash, m.extension,
                          p.missing_path, p.language, p.duration, p.preset
                   FROM conversations c
                   LEFT JOIN turns t ON t.conversation_id = c.id
                   LEFT JOIN parts p ON p.turn_id = t.id
                   LEFT JOIN media m ON m.hash = p.media_hash
                   WHERE c.id = ? AND c.owner = ?
                   ORDER BY t.position, p.position""", (conversation_id, owner)).fetchall()
        if not rows:
            return None
        turns: list[Turn] = []
        position = None
        for (turn_position, role, status, timings, versions, kind, text, digest, extension, missing, language,
             duration, preset) in rows:
            if turn_position is None:  # a conversation without turns
                continue
            if turn_position != position:
                turns.append(Turn(role, [], status, json.loads(timings) if timings else {},
                                  *Turn.versions_from_dict(json.loads(versions) if versions else {})))
                position = turn_position
            if kind is not None:
                path = str(self.media.path_for(digest, extension)) if digest else missing
                turns[-1].parts.append(_part(kind, text, path, language, duration, preset))
        return Conversation(turns, conversation_id)

    def list_conversations(self, owner: str = LOCAL_OWNER, query: str | None = None, limit: int = 100,
                           offset: int = 0) -> list[ConversationSummary]:
        """`owner`'s conversations, the most recently changed first; with `query`, only
        those whose title or text holds every one of its words (any case, any part of a word)."""
        sql = "SELECT id, title, created, updated, title_custom FROM conversations WHERE owner = ?"
        values: list = [owner]
        condition, search_values = search_condition(query or "")
        if condition:
            sql += f" AND id IN (SELECT conversation_id FROM conversation_text WHERE {condition})"
            values += search_values
        sql += " ORDER BY updated DESC, id LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(sql, (*values, limit, offset)).fetchall()
            bodies = dict(self._db.execute(
                f"SELECT conversation_id, body FROM conversation_text WHERE conversation_id IN ({','.join('?' * len(rows))})",
                [row[0] for row in rows]).fetchall()) if condition and rows else {}
        return [ConversationSummary(*row[:4], custom_title=bool(row[4]), snippet=snippet(bodies.get(row[0], ""), query or "", row[1]))
                for row in rows]

    def summary(self, conversation_id: str, owner: str = LOCAL_OWNER) -> ConversationSummary | None:
        """The conversation's line in the history list, or None if `owner` has no such conversation."""
        with self._lock:
            row = self._db.execute("SELECT id, title, created, updated, title_custom FROM conversations "
                                   "WHERE id = ? AND owner = ?", (conversation_id, owner)).fetchone()
        return None if row is None else ConversationSummary(*row[:4], custom_title=bool(row[4]))

    def rename(self, conversation_id: str, title: str, owner: str = LOCAL_OWNER) -> bool:
        """Give the conversation a title of the user's; an empty one brings back the
        title from its first question. False if there is no such conversation."""
        title = " ".join((title or "").split())[:TITLE_MAX]
        with self._writing("The new title could not be saved") as db:
            if db.execute("SELECT 1 FROM conversations WHERE id = ? AND owner = ?",
                          (conversation_id, owner)).fetchone() is None:
                return False
            custom = bool(title)
            if not custom:
                title = title_from(self._first_question(db, conversation_id))
            db.execute("UPDATE conversations SET title = ?, title_custom = ? WHERE id = ?",
                       (title, int(custom), conversation_id))
            db.execute("UPDATE conversation_text SET title = ? WHERE conversation_id = ?", (title, conversation_id))
        return True

    def delete(self, conversation_id: str, owner: str = LOCAL_OWNER) -> bool:
        """Delete the conversation, and the media no other conversation uses. False if
        there was no such conversation."""
        with self._writing("The conversation could not be deleted") as db:
            deleted = db.execute("DELETE FROM conversations WHERE id = ? AND owner = ?",
                                 (conversation_id, owner)).rowcount
            if deleted:
                db.execute("DELETE FROM conversation_text WHERE conversation_id = ?", (conversation_id,))
                self._collect(db)
        return bool(deleted)

    def conversation_count(self, owner: str = LOCAL_OWNER) -> int:
        """How many conversations `owner` has."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM conversations WHERE owner = ?", (owner,)).fetchone()[0]

    def give_conversations(self, owner: str, to: str) -> int:
        """Make every conversation of `owner` one of `to`'s, in one transaction (their photos
        and recordings follow, being shared by content); how many moved. Again: none."""
        with self._writing("The conversations could not be handed over") as db:
            return db.execute("UPDATE conversations SET owner = ? WHERE owner = ?", (to, owner)).rowcount

    # --- media ---

    def keep_media(self, source: str | Path, data: bytes | None = None) -> str:
        """Store a copy of the file `source` (an upload; `data`: its bytes, read already),
        unless the same content is stored already; the path to use in a part. It stays
        while a part uses it."""
        staged = self.media.stage(source, data)
        try:
            with self._writing("Your photo or recording could not be stored") as db:
                db.execute("""INSERT INTO media (hash, extension, size, kept) VALUES (?, ?, ?, ?)
                              ON CONFLICT (hash) DO UPDATE SET kept = excluded.kept""",
                           (staged.digest, staged.extension, staged.size, time.time()))
                (extension,) = db.execute("SELECT extension FROM media WHERE hash = ?",
                                          (staged.digest,)).fetchone()
                # Placed under the write lock: the collector, which removes files under
                # it too, can't remove this content between its row and its file.
                return str(self.media.place(staged, extension))
        finally:
            self.media.discard(staged)

    def owner_uses_media(self, owner: str, digest: str) -> bool:
        """Whether a saved conversation of `owner` has a photo or recording with this
        content: who may fetch a media file, which conversations of several owners may share."""
        with self._lock:
            row = self._db.execute(
                """SELECT 1 FROM parts p JOIN turns t ON t.id = p.turn_id
                   JOIN conversations c ON c.id = t.conversation_id
                   WHERE p.media_hash = ? AND c.owner = ? LIMIT 1""", (digest, owner)).fetchone()
        return row is not None

    def collect_garbage(self) -> int:
        """Remove media that no part uses (beyond the grace time); how many."""
        with self._writing("Unused photos could not be cleared away") as db:
            return self._collect(db)

    # --- inside ---

    @contextmanager
    def _writing(self, action: str, after: str = ""):
        """One write transaction under the lock; a write the database refuses is rolled
        back (by write_transaction) and raised as SaveFailed saying why, while errors of
        the caller's own (PermissionError, ValueError) pass through as they are."""
        try:
            with self._lock, write_transaction(self._db) as db:
                yield db
        except sqlite3.OperationalError as exc:
            log.error("%s: %s (%s)", action, exc, self.path)
            raise _refusal(action, exc, after) from exc
        except OSError as exc:  # e.g. a media file placed or removed on a full disk
            if exc.errno not in _DISK_FULL:
                raise
            log.error("%s: %s (%s)", action, exc, self.path)
            raise _refusal(action, exc, after) from exc

    def _write(self, conversation: Conversation, owner: str, updated: float, *, created: float | None = None,
               only_if_new: bool, failed: tuple[str, str]) -> bool:
        if not _SAFE_ID.match(conversation.id):
            raise ValueError(f"not a conversation id: {conversation.id!r}")
        # Copies of outside files happen before the transaction, which stays short.
        turns = [(turn, [self._prepare(part) for part in turn.parts]) for turn in conversation.turns]
        with self._writing(*failed) as db:  # (what could not be done, what happens to it)
            found = db.execute("SELECT owner FROM conversations WHERE id = ?", (conversation.id,)).fetchone()
            if found is not None:
                if only_if_new:
                    return False
                if found[0] != owner:
                    raise PermissionError(f"conversation {conversation.id} belongs to another user")
                db.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation.id,))  # parts follow
                db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (updated, conversation.id))
            else:
                db.execute("INSERT INTO conversations (id, owner, created, updated) VALUES (?, ?, ?, ?)",
                           (conversation.id, owner, updated if created is None else created, updated))
            for position, (turn, parts) in enumerate(turns):
                turn_id = db.execute(
                    "INSERT INTO turns (conversation_id, position, role, status, timings, versions) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (conversation.id, position, turn.role, turn.status,
                     json.dumps(turn.timings) if turn.timings else None,
                     json.dumps(turn.versions_to_dict()) if turn.other_versions else None)).lastrowid
                db.executemany(
                    """INSERT INTO parts (turn_id, position, kind, text, media_hash, missing_path, language, duration,
                                        preset)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [(turn_id, index, *self._part_values(db, part)) for index, part in enumerate(parts)])
            # As people see them: a describe-mode question is titled and found by its task's name.
            first = next((t.shown_text for t in conversation.turns if t.role == "user"), "")
            db.execute("UPDATE conversations SET title = CASE WHEN title_custom THEN title ELSE ? END WHERE id = ?",
                       (title_from(first), conversation.id))
            (title,) = db.execute("SELECT title FROM conversations WHERE id = ?", (conversation.id,)).fetchone()
            db.execute("DELETE FROM conversation_text WHERE conversation_id = ?", (conversation.id,))
            db.execute("INSERT INTO conversation_text (conversation_id, title, body) VALUES (?, ?, ?)",
                       (conversation.id, title, "\n".join(t.shown_text for t in conversation.turns if t.shown_text)))
            self._collect(db)  # what the previous version used and this one doesn't
        return True

    def _prepare(self, part: Part) -> _Prepared:
        if isinstance(part, TextPart):
            return _Prepared("text", part.text, preset=part.preset)
        if isinstance(part, ImagePart):
            kind, text, language, duration = "image", None, None, None
        elif isinstance(part, VideoPart):
            kind, text, language, duration = "video", part.transcript or None, None, part.duration
        else:
            kind, text, language, duration = "audio", part.transcript, part.language, part.duration
        path, digest = part.path, self.media.digest_of(part.path)
        if digest is None and Path(path).is_file():
            try:
                path = self.keep_media(path)
                digest = self.media.digest_of(path)
            except OSError as exc:
                log.warning("saving %s without its file %s, which can't be read: %s", kind, path, exc)
        return _Prepared(kind, text, digest, path, language, duration)

    def _part_values(self, db: sqlite3.Connection, part: _Prepared) -> tuple:
        digest = part.digest
        if digest is not None and db.execute("SELECT 1 FROM media WHERE hash = ?", (digest,)).fetchone() is None:
            # A file of the store whose row was collected (kept, then unused too long):
            # adopt it again if it is still there.
            file = Path(part.path)
            if file.is_file():
                db.execute("INSERT INTO media (hash, extension, size, kept) VALUES (?, ?, ?, ?)",
                           (digest, file.suffix, file.stat().st_size, time.time()))
            else:
                digest = None
        missing = part.path if part.kind != "text" and digest is None else None
        return part.kind, part.text, digest, missing, part.language, part.duration, part.preset

    def _collect(self, db: sqlite3.Connection, stray_files: bool = False) -> int:
        """Inside a write transaction: delete the media rows no part uses, and their files.
        `stray_files`: also the files without a row (a crash between placing a file and
        committing its row, or a copy never placed)."""
        cutoff = time.time() - self.media_grace
        unused = db.execute(
            """SELECT hash, extension FROM media WHERE kept < ?
               AND NOT EXISTS (SELECT 1 FROM parts WHERE parts.media_hash = media.hash)""", (cutoff,)).fetchall()
        db.executemany("DELETE FROM media WHERE hash = ?", [(digest,) for digest, _ in unused])
        # Removed before the commit, under the write lock: if the commit is lost the rows
        # come back without files, still unused, and the next collection deletes them.
        for digest, extension in unused:
            self.media.remove(digest, extension)
        if stray_files:
            for digest, path in self.media.stray_files(cutoff):
                if digest is None or db.execute("SELECT 1 FROM media WHERE hash = ?", (digest,)).fetchone() is None:
                    path.unlink(missing_ok=True)
        return len(unused)

    @staticmethod
    def _first_question(db: sqlite3.Connection, conversation_id: str) -> str:
        rows = db.execute(
            """SELECT p.kind, p.text, p.preset FROM parts p WHERE p.kind IN ('text', 'audio') AND p.turn_id =
                   (SELECT id FROM turns WHERE conversation_id = ? AND role = 'user' ORDER BY position LIMIT 1)
               ORDER BY p.position""", (conversation_id,)).fetchall()
        return Turn("user", [_part(kind, text, None, None, None, preset) for kind, text, preset in rows]).shown_text

    # --- a person's preferences ---

    def preference(self, owner: str, key: str) -> str | None:
        """What `owner` last chose for `key` (None: never chosen)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM preferences WHERE owner = ? AND key = ?",
                                   (owner, key)).fetchone()
        return row[0] if row else None

    def set_preference(self, owner: str, key: str, value: str) -> None:
        with self._writing("Your choice could not be saved") as db:
            db.execute("INSERT INTO preferences (owner, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT (owner, key) DO UPDATE SET value = excluded.value", (owner, key, value))

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        with self._lock, write_transaction(self._db) as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (key, value))


def _part(kind: str, text: str | None, path: str | None, language: str | None, duration: float | None,
          preset: str | None = None) -> Part:
    if kind == "text":
        return TextPart(text or "", preset)
    if kind == "image":
        return ImagePart(path or "")
    if kind == "video":
        return VideoPart(path or "", 0.0 if duration is None else duration, text or "")
    return AudioPart(path or "", text or "", language, 0.0 if duration is None else duration)
