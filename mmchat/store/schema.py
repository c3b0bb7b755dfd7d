"""The database file: how a connection is opened, and the schema's versions.

The version lives in `PRAGMA user_version`; `MIGRATIONS[n]` turns version n into n+1.
A step, once released, is never edited: a database made by it may exist somewhere, and
the next step starts from exactly what it made. Steps therefore use no store code that
may change later, only SQL and the small helpers below, frozen with them.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

BUSY_SECONDS = 10.0  # how long a write waits for another connection's transaction
LOCAL_OWNER = "local"  # conversations.owner when the server runs without --auth


class StoreError(Exception):
    """The database can't be used (made by a newer mmchat, or not a database)."""


def connect(path: Path) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): transactions are opened explicitly, so each
    # save is exactly one, and none is left open by accident between calls.
    # check_same_thread=False: the store hands the connection between threads under its lock.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS)
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path} is not an mmchat database ({exc})") from exc
    if mode != "wal":
        db.close()
        raise StoreError(f"{path}: write-ahead logging is not available here (journal mode {mode})")
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
    db.execute("PRAGMA foreign_keys = ON")  # per connection, and only outside a transaction
    # FULL: a committed turn survives a power cut too, not only a killed process; it
    # costs one fsync per save, and the turn layer saves twice a turn.
    db.execute("PRAGMA synchronous = FULL")
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock at the start: a transaction that read first and
    # then wanted to write could fail with SQLITE_BUSY at once, whatever busy_timeout says.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite3.Connection, target: int | None = None) -> int:
    """Bring the database up to `target` (default: the newest version); the version reached.

    Each step and its new version number commit together, so a crash leaves the database
    at one version or the next, and a second process opening it at the same time waits
    for the lock and then finds the step done.
    """
    target = len(MIGRATIONS) if target is None else target
    found = version(db)
    if found > len(MIGRATIONS):
        raise StoreError(f"the database is at version {found}, made by a newer mmchat "
                         f"(this one knows versions up to {len(MIGRATIONS)})")
    for number in range(found + 1, target + 1):
        with write_transaction(db):
            if version(db) >= number:
                continue
            MIGRATIONS[number - 1](db)
            db.execute(f"PRAGMA user_version = {number}")
    return version(db)


# --- helpers frozen with the steps that use them ---

TITLE_LENGTH = 60


def title_from(question: str) -> str:
    """A conversation's title when it has not been renamed: the start of its first question."""
    words = " ".join(question.split())
    if not words:
        return "Untitled"
    if len(words) <= TITLE_LENGTH:
        return words
    cut = words[:TITLE_LENGTH]
    space = cut.rfind(" ")
    return (cut[:space] if space > TITLE_LENGTH // 2 else cut).rstrip(" ,.;:") + "…"


def turn_text(pieces: list[str | None]) -> str:
    """What a turn says in words, from its text parts and transcripts in order
    (the same rule as `Turn.text`)."""
    return "\n".join(p for p in pieces if p)


# --- the steps ---

def _v1_conversations(db: sqlite3.Connection) -> None:
    """What the JSON files held, plus who owns each conversation and when it changed."""
    # timings: an answer's stages (Turn.timings) as a JSON object, NULL when it has none;
    # only ever read back whole, so a column of its own per stage would buy nothing.
    for statement in (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # owner: the user id with --auth, 'local' without; times are Unix seconds.
        """CREATE TABLE conversations (
               id TEXT PRIMARY KEY,
               owner TEXT NOT NULL,
               created REAL NOT NULL,
               updated REAL NOT NULL)""",
        "CREATE INDEX conversations_by_owner ON conversations (owner, updated DESC)",
        """CREATE TABLE turns (
               id INTEGER PRIMARY KEY,
               conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
               position INTEGER NOT NULL,
               role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
               status TEXT NOT NULL CHECK (status IN ('complete', 'interrupted', 'error')),
               timings TEXT,
               UNIQUE (conversation_id, position))""",
        # One row per distinct content; `kept` is when it was last stored or adopted,
        # which protects an upload in the moment between being kept and being saved.
        """CREATE TABLE media (
               hash TEXT PRIMARY KEY,
               extension TEXT NOT NULL,
               size INTEGER NOT NULL,
               kept REAL NOT NULL)""",
        # text: typed words, or a recording's transcript. missing_path: a photo or
        # recording whose file was already gone when saved (shown as not available).
        # No cascade from media: a media row still used can't be deleted.
        """CREATE TABLE parts (
               turn_id INTEGER NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
               position INTEGER NOT NULL,
               kind TEXT NOT NULL CHECK (kind IN ('text', 'image', 'audio')),
               text TEXT,
               media_hash TEXT REFERENCES media (hash),
               missing_path TEXT,
               language TEXT,
               duration REAL,
               PRIMARY KEY (turn_id, position))""",
        "CREATE INDEX parts_by_media ON parts (media_hash) WHERE media_hash IS NOT NULL",
    ):
        db.execute(statement)


def _v2_titles_and_search(db: sqlite3.Connection) -> None:
    """For the history sidebar: a title per conversation (from its first question until
    renamed) and a full-text index over titles and what was said."""
    db.execute("ALTER TABLE conversations ADD COLUMN title TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE conversations ADD COLUMN title_custom INTEGER NOT NULL DEFAULT 0")
    # Trigram: finds any part of a word, in any language (Chinese has no spaces to split
    # words at), ignoring case. The conversation id is kept as a column, not as the
    # rowid: a table with a text key may get new rowids from VACUUM.
    db.execute("CREATE VIRTUAL TABLE conversation_text USING fts5("
               "conversation_id UNINDEXED, title, body, tokenize = 'trigram')")
    rows = db.execute(
        """SELECT t.conversation_id, t.id, t.role, p.text FROM turns t
           LEFT JOIN parts p ON p.turn_id = t.id AND p.kind IN ('text', 'audio')
           ORDER BY t.conversation_id, t.position, p.position""").fetchall()
    turns: dict[str, dict[int, tuple[str, list]]] = {}
    for conversation_id, turn_id, role, text in rows:
        turns.setdefault(conversation_id, {}).setdefault(turn_id, (role, []))[1].append(text)
    for (conversation_id,) in db.execute("SELECT id FROM conversations").fetchall():
        said = [(role, turn_text(pieces)) for role, pieces in turns.get(conversation_id, {}).values()]
        title = title_from(next((text for role, text in said if role == "user"), ""))
        db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
        db.execute("INSERT INTO conversation_text (conversation_id, title, body) VALUES (?, ?, ?)",
                   (conversation_id, title, "\n".join(text for _, text in said if text)))


def _v3_users(db: sqlite3.Connection) -> None:
    """For --auth: the people who may log in, their log-in sessions and their API keys.

    conversations.owner holds a user's name (or 'local' without --auth); it is not a
    foreign key, since 'local' is no user. Tokens and keys are kept only as hashes, so
    a copy of the database lets no one in.
    """
    for statement in (
        """CREATE TABLE users (
               name TEXT PRIMARY KEY,
               password_hash TEXT NOT NULL,
               created REAL NOT NULL)""",
        # token_hash: SHA-256 of the cookie's random token. last_seen moves on with use
        # (the idle limit); created does not (the absolute limit).
        """CREATE TABLE login_sessions (
               token_hash TEXT PRIMARY KEY,
               user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
               created REAL NOT NULL,
               last_seen REAL NOT NULL)""",
        "CREATE INDEX login_sessions_by_user ON login_sessions (user_name)",
        # key_id: the key's public part, which names it in `list` and `remove-key`.
        """CREATE TABLE api_keys (
               key_id TEXT PRIMARY KEY,
               key_hash TEXT NOT NULL UNIQUE,
               user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
               created REAL NOT NULL)""",
    ):
        db.execute(statement)


def _v4_preset_questions(db: sqlite3.Connection) -> None:
    """Describe mode: a question written by a task preset keeps the task's tag
    ("describe:brief") beside its prompt, so the chat can show the task's name."""
    db.execute("ALTER TABLE parts ADD COLUMN preset TEXT")


def _v5_preferences(db: sqlite3.Connection) -> None:
    """What a person chose once and expects kept wherever they log in from (describe mode's
    task and detail): by owner, a name or 'local', like conversations.owner."""
    db.execute("""CREATE TABLE preferences (
                      owner TEXT NOT NULL,
                      key TEXT NOT NULL,
                      value TEXT NOT NULL,
                      PRIMARY KEY (owner, key))""")


def _v6_answer_versions(db: sqlite3.Connection) -> None:
    """Regenerate keeps the earlier answers: an answer's other versions, as JSON
    (Turn.versions_to_dict: {"other_versions": [{"text", "status", "timings"}, ...], "version":
    where the shown one stands}); NULL for an answer written once."""
    db.execute("ALTER TABLE turns ADD COLUMN versions TEXT")


def _v7_video_clips(db: sqlite3.Connection) -> None:
    """Video clips in a question: parts of kind 'video' (the clip kept by hash as photos
    are; duration: its length in seconds). SQLite can't change a CHECK constraint in place,
    so `parts` is rebuilt with the wider one, its rows and index as they were."""
    db.execute("""CREATE TABLE parts_v7 (
                      turn_id INTEGER NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
                      position INTEGER NOT NULL,
                      kind TEXT NOT NULL CHECK (kind IN ('text', 'image', 'audio', 'video')),
                      text TEXT,
                      media_hash TEXT REFERENCES media (hash),
                      missing_path TEXT,
                      language TEXT,
                      duration REAL,
                      preset TEXT,
                      PRIMARY KEY (turn_id, position))""")
    db.execute("""INSERT INTO parts_v7 (turn_id, position, kind, text, media_hash, missing_path, language, duration,
                                        preset)
                  SELECT turn_id, position, kind, text, media_hash, missing_path, language, duration, preset
                  FROM parts""")
    db.execute("DROP TABLE parts")
    db.execute("ALTER TABLE parts_v7 RENAME TO parts")
    db.execute("CREATE INDEX parts_by_media ON parts (media_hash) WHERE media_hash IS NOT NULL")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_conversations,
    _v2_titles_and_search,
    _v3_users,
    _v4_preset_questions,
    _v5_preferences,
    _v6_answer_versions,
    _v7_video_clips,
]
LATEST = len(MIGRATIONS)
