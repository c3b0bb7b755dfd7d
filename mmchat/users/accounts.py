"""Accounts: users, their log-in sessions and their API keys, in the conversations' database.

Session tokens and API keys are random (256 and 192 bits), so they are kept as plain
SHA-256 hashes: a slow hash protects guessable secrets like passwords, and these are
not guessable. Only the person who was handed a token or key ever sees it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..store import LOCAL_OWNER, SQLiteStore
from ..store.schema import connect, migrate, write_transaction
from ..store.sqlite_store import DATABASE_NAME
from .passwords import MIN_PASSWORD_LENGTH, hash_password, needs_rehash, verify_password

# A name is also the owner of the user's conversations and the name of their exports
# folder, hence a small alphabet; 'local' is the owner of conversations made without --auth.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
RESERVED_NAMES = frozenset({LOCAL_OWNER})
KEY_PREFIX = "mmchat-"
# A session's last use is written at most this often: not one write per request.
_TOUCH_EVERY_SECONDS = 60.0


class AccountError(ValueError):
    """A request the accounts can't carry out; the message says why and what to do."""


@dataclass(frozen=True)
class UserSummary:
    name: str
    created: float
    key_ids: tuple[str, ...]
    sessions: int  # log-in sessions not yet expired


@dataclass(frozen=True)
class SessionLimits:
    lifetime_seconds: float  # from log-in, however active
    idle_seconds: float  # since the last request


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise AccountError(f"{name!r} can't be a user name: use 1 to 32 lower-case letters, digits, '.', '_' "
                           "or '-', starting with a letter or digit.")
    if name in RESERVED_NAMES:
        raise AccountError(f"{name!r} is reserved (it owns the conversations made without --auth); "
                           "choose another name.")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters.")
    return password


def exports_folder(data_dir: str | Path, owner: str) -> Path:
    """Where the Export button writes `owner`'s .zip files: a folder of each user's own
    (which the file check knows), and the data folder's exports/ without --auth, as before."""
    exports = Path(data_dir) / "exports"
    return exports if owner == LOCAL_OWNER else exports / check_name(owner)


def local_exports(data_dir: str | Path) -> list[Path]:
    """The Export button's files made without --auth: the .zip files directly in exports/
    (not in its folders, which are the users' own)."""
    folder = exports_folder(data_dir, LOCAL_OWNER)
    if not folder.is_dir():
        return []
    return sorted(entry for entry in folder.iterdir()
                  if entry.suffix == ".zip" and entry.is_file() and not entry.is_symlink())


def _move_exports(files: list[Path], target: Path) -> int:
    """Move `files` into the folder `target`, numbering one whose name is taken there (as
    the Export button does); how many moved."""
    moved = 0
    for entry in files:
        target.mkdir(parents=True, exist_ok=True)
        path, number = target / entry.name, 1
        while path.exists():
            number += 1
            path = target / f"{entry.stem}-{number}{entry.suffix}"
        entry.rename(path)
        moved += 1
    return moved


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    """The users of one data folder. Thread-safe: one connection, used under a lock
    (a second process, e.g. `python -m mmchat.users`, uses its own; WAL lets both in)."""

    def __init__(self, data_dir: str | Path, limits: SessionLimits | None = None) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limits = limits or SessionLimits(lifetime_seconds=7 * 86400, idle_seconds=86400)
        self._lock = threading.RLock()
        self._db = connect(self.root / DATABASE_NAME)
        try:
            migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Accounts":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- users ---

    def add_user(self, name: str, password: str) -> None:
        check_name(name)
        check_password(password)
        password_hash = hash_password(password)  # slow: outside the lock
        with self._lock, write_transaction(self._db) as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"There is already a user {name!r}. To change the password, remove the "
                                   "user and add them again, or choose another name.")
            db.execute("INSERT INTO users (name, password_hash, created) VALUES (?, ?, ?)",
                       (name, password_hash, time.time()))

    def remove_user(self, name: str, store: SQLiteStore) -> int:
        """Remove the user, their sessions and keys, and their conversations (with the
        photos and recordings no one else uses) and exports; how many conversations went."""
        if not self.has_user(name):
            raise AccountError(f"There is no user {name!r}; `list` shows who there is.")
        # Logged out and locked out first, so nothing new is saved while the rest goes;
        # the name goes last, so if this is cut short, running it again finishes it.
        with self._lock, write_transaction(self._db) as db:
            db.execute("DELETE FROM login_sessions WHERE user_name = ?", (name,))
            db.execute("DELETE FROM api_keys WHERE user_name = ?", (name,))
        removed = 0
        while batch := store.list_conversations(name, limit=500):
            for summary in batch:
                removed += store.delete(summary.id, name)
        shutil.rmtree(self.exports_folder(name), ignore_errors=True)
        with self._lock, write_transaction(self._db) as db:
            db.execute("DELETE FROM preferences WHERE owner = ?", (name,))
            db.execute("DELETE FROM users WHERE name = ?", (name,))
        return removed

    def adopt(self, name: str, store: SQLiteStore) -> tuple[int, int]:
        """Give the user the conversations made without --auth (owner 'local') and the
        exports in the data folder's exports/: (conversations, exports) moved. Running it
        again moves what is left, none; if it was cut short, what it had not done yet."""
        check_name(name)
        if not self.has_user(name):
            raise AccountError(f"There is no user {name!r}; add them first with `add {name}`.")
        moved = store.give_conversations(LOCAL_OWNER, name)
        return moved, _move_exports(local_exports(self.root), self.exports_folder(name))

    def has_user(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None

    def user_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM users").fetchone()[0]

    def list_users(self) -> list[UserSummary]:
        now = time.time()
        with self._lock:
            users = self._db.execute("SELECT name, created FROM users ORDER BY name").fetchall()
            keys = self._db.execute("SELECT user_name, key_id FROM api_keys ORDER BY created").fetchall()
            sessions = dict(self._db.execute(
                "SELECT user_name, count(*) FROM login_sessions WHERE created > ? AND last_seen > ? GROUP BY user_name",
                (now - self.limits.lifetime_seconds, now - self.limits.idle_seconds)).fetchall())
        return [UserSummary(name, created, tuple(k for owner, k in keys if owner == name), sessions.get(name, 0))
                for name, created in users]

    def exports_folder(self, name: str) -> Path:
        return exports_folder(self.root, name)

    # --- log-in sessions ---

    def log_in(self, name: str, password: str) -> str | None:
        """A new session's token for the right name and password; None otherwise."""
        with self._lock:
            row = self._db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        stored = row[0] if row else None
        if not verify_password(stored, password):  # slow, and outside the lock
            return None
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock, write_transaction(self._db) as db:
            if needs_rehash(stored):
                db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hash_password(password), name))
            # Expired sessions are cleared here, at a moment that writes anyway.
            db.execute("DELETE FROM login_sessions WHERE created <= ? OR last_seen <= ?",
                       (now - self.limits.lifetime_seconds, now - self.limits.idle_seconds))
            db.execute("INSERT INTO login_sessions (token_hash, user_name, created, last_seen) VALUES (?, ?, ?, ?)",
                       (_digest(token), name, now, now))
        return token

    def user_of_session(self, token: str | None) -> str | None:
        """The user whose unexpired session `token` is; using it keeps it from going idle."""
        if not token:
            return None
        now = time.time()
        digest = _digest(token)
        with self._lock:
            row = self._db.execute("SELECT user_name, created, last_seen FROM login_sessions WHERE token_hash = ?",
                                   (digest,)).fetchone()
            if row is None:
                return None
            name, created, last_seen = row
            if now - created >= self.limits.lifetime_seconds or now - last_seen >= self.limits.idle_seconds:
                with write_transaction(self._db) as db:
                    db.execute("DELETE FROM login_sessions WHERE token_hash = ?", (digest,))
                return None
            if now - last_seen >= _TOUCH_EVERY_SECONDS:
                with write_transaction(self._db) as db:
                    db.execute("UPDATE login_sessions SET last_seen = ? WHERE token_hash = ?", (now, digest))
        return name

    def log_out(self, token: str | None) -> None:
        if token:
            with self._lock, write_transaction(self._db) as db:
                db.execute("DELETE FROM login_sessions WHERE token_hash = ?", (_digest(token),))

    # --- API keys ---

    def add_key(self, name: str) -> str:
        """A new API key for the user; it is shown this once and kept only as a hash."""
        if not self.has_user(name):
            raise AccountError(f"There is no user {name!r}; add them first with `add {name}`.")
        key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(24)}"
        with self._lock, write_transaction(self._db) as db:
            db.execute("INSERT INTO api_keys (key_id, key_hash, user_name, created) VALUES (?, ?, ?, ?)",
                       (key_id, _digest(key), name, time.time()))
        return key

    def remove_key(self, key_id: str) -> str:
        """Revoke a key by its id (as `list` shows it, or the key itself); whose it was."""
        if key_id.startswith(KEY_PREFIX):
            key_id = key_id[len(KEY_PREFIX):].split("-", 1)[0]
        with self._lock, write_transaction(self._db) as db:
            row = db.execute("SELECT user_name FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                raise AccountError(f"There is no API key {key_id!r}; `list` shows each user's key ids.")
            db.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,))
        return row[0]

    def user_of_key(self, key: str) -> str | None:
        # Looked up by hash: an index finds it, and the key itself is never compared.
        with self._lock:
            row = self._db.execute("SELECT user_name FROM api_keys WHERE key_hash = ?", (_digest(key),)).fetchone()
        return row[0] if row else None
