"""Password hashes: Argon2id, memory-hard, so a stolen database is slow to guess from.

argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes) take some tens
of milliseconds a log-in; the parameters are stored in each hash, so raising them later
rehashes a password at its next log-in instead of locking anyone out.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
# Compared against when the name is unknown, so a log-in with a wrong name takes as
# long as one with a wrong password and timing does not tell which names exist.
_UNKNOWN_USER_HASH = _HASHER.hash("no user has this password")

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _UNKNOWN_USER_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
