"""Where conversations are kept: SQLite (one file in the data folder), media by content hash.

Why the standard library's sqlite3 and not SQLAlchemy with Alembic: the store is a
handful of tables with queries written once, behind one class; SQLite is the only
database it targets (embedded, one file), and the features it relies on are SQLite's
own (WAL, PRAGMA user_version, FTS5 trigram search, BEGIN IMMEDIATE), which an ORM
would only pass through. sqlite3 ships with Python, so nothing is added to install
or pin; migrations are an ordered list of steps in schema.py, tested from every
earlier version, which is what Alembic would give here, without its separate
configuration, revision files and runtime dependency.
"""

from .legacy import ImportReport, import_json_folder
from .memory import MemoryStore
from .schema import LATEST as SCHEMA_VERSION
from .schema import LOCAL_OWNER, StoreError
from .sqlite_store import DATABASE_NAME, MEDIA_GRACE_SECONDS, ConversationSummary, SQLiteStore

__all__ = [
    "DATABASE_NAME", "LOCAL_OWNER", "MEDIA_GRACE_SECONDS", "SCHEMA_VERSION", "ConversationSummary",
    "ImportReport", "MemoryStore", "SQLiteStore", "StoreError", "import_json_folder",
]
