"""The SQLite store (mmchat/store/): real database files in tmp_path."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from mmchat.conversation import AudioPart, Conversation, ImagePart, TextPart
from mmchat.store.legacy import ConversationStore
from mmchat.store import LOCAL_OWNER, SCHEMA_VERSION, SQLiteStore, StoreError, import_json_folder
from mmchat.store import schema


def _file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _chat(store: SQLiteStore, uploads: Path, question: str = "What is this cat doing?") -> Conversation:
    """A conversation as the turn layer leaves it: uploads kept first, then saved."""
    conversation = Conversation()
    photo = store.keep_media(_file(uploads, "upload-1.PNG", b"\x89PNG a cat"))
    recording = store.keep_media(_file(uploads, "upload-2.wav", b"RIFF is it asleep"))
    conversation.add_user([ImagePart(photo), TextPart(question)])
    conversation.add_assistant("It is sleeping.")
    conversation.turns[-1].timings = {"first_token": 0.25, "done": 1.5}
    conversation.add_user([AudioPart(recording, "Is it asleep?", "en", 1.5)])
    conversation.add_assistant("Yes", status="interrupted")
    return conversation


def _files(store: SQLiteStore) -> list[Path]:
    return sorted(p for p in store.media.root.glob("??/*") if p.is_file())


@pytest.fixture
def store(tmp_path):
    with SQLiteStore(tmp_path / "data", media_grace=0) as opened:
        yield opened


# --- conversations ---

def test_a_saved_conversation_loads_as_it_was(store, tmp_path):
    conversation = _chat(store, tmp_path / "uploads")
    store.save(conversation)
    loaded = store.load(conversation.id)
    assert loaded.id == conversation.id
    assert loaded.turns == conversation.turns  # roles, parts, statuses, timings, in order
    photo = Path(loaded.turns[0].images[0].path)
    assert photo.read_bytes() == b"\x89PNG a cat"
    digest = hashlib.blake2b(b"\x89PNG a cat", digest_size=32).hexdigest()
    assert photo == store.media.root / digest[:2] / f"{digest}.png"


def test_saving_again_replaces_the_saved_version(store, tmp_path):
    conversation = Conversation()
    conversation.add_user([TextPart("Hello?")])
    reply = conversation.add_assistant("", status="interrupted")  # as saved before the answer starts
    store.save(conversation)
    created = store.list_conversations()[0].created
    reply.parts = [TextPart("Hello! How can I help?")]
    reply.status = "complete"
    store.save(conversation)
    [summary] = store.list_conversations()
    assert summary.created == created and summary.updated >= created
    assert store.load(conversation.id).turns == conversation.turns
    conversation.drop_last_answer()  # Regenerate, then saved while the new answer is written
    store.save(conversation)
    assert len(store.load(conversation.id).turns) == 1


def test_unknown_and_malformed_ids_load_nothing(store):
    assert store.load("0" * 32) is None
    assert store.load("../../etc/passwd") is None
    assert store.load("") is None
    assert not store.delete("0" * 32)
    assert not store.rename("0" * 32, "x")


def test_a_conversation_belongs_to_its_owner(store, tmp_path):
    conversation = _chat(store, tmp_path / "uploads")
    store.save(conversation, owner="alice")
    assert store.load(conversation.id) is None  # 'local' is not alice
    assert store.load(conversation.id, owner="bob") is None
    assert store.load(conversation.id, owner="alice").turns == conversation.turns
    assert store.list_conversations("bob") == [] and store.list_conversations(LOCAL_OWNER) == []
    assert not store.rename(conversation.id, "mine now", owner="bob")
    assert not store.delete(conversation.id, owner="bob")
    with pytest.raises(PermissionError):
        store.save(conversation, owner="bob")
    assert [c.id for c in store.list_conversations("alice")] == [conversation.id]


def test_an_id_that_could_never_be_loaded_is_refused(store):
    conversation = Conversation(id="not-an-id")
    with pytest.raises(ValueError):
        store.save(conversation)


# --- the history list ---

def _saved(store: SQLiteStore, question: str, answer: str = "An answer.") -> Conversation:
    conversation = Conversation()
    conversation.add_user([TextPart(question)])
    conversation.add_assistant(answer)
    store.save(conversation)
    return conversation


def test_the_list_is_newest_first_with_titles_from_the_first_question(store):
    first = _saved(store, "Where was this photo taken?")
    second = _saved(store, "  What   breed is the dog?\nAnd how old? " + "very " * 30)
    third = _saved(store, "Tell me about the bridge.")
    store.save(first)  # changed last: comes first
    listing = store.list_conversations()
    assert [c.id for c in listing] == [first.id, third.id, second.id]
    assert listing[0].title == "Where was this photo taken?"
    assert listing[2].title.startswith("What breed is the dog? And how old?")
    assert listing[2].title.endswith("…") and len(listing[2].title) <= 61
    assert [c.id for c in store.list_conversations(limit=2)] == [first.id, third.id]
    assert [c.id for c in store.list_conversations(limit=2, offset=2)] == [second.id]


def test_search_finds_words_anywhere_in_any_case(store):
    dog = _saved(store, "What breed is the dog?", "A Border Collie, about two years old.")
    cat = _saved(store, "Is the cat asleep?", "Yes, curled up on the sofa.")
    chinese = _saved(store, "这只猫在做什么？", "它在睡觉。")

    def found(query):
        return {c.id for c in store.list_conversations(query=query)}

    assert found("collie") == {dog.id}  # in an answer, other case
    assert found("BREED dog") == {dog.id}  # every word
    assert found("cat dog") == set()
    assert found("sleep") == {cat.id}  # part of a word
    assert found("睡觉") == {chinese.id}  # two characters: below the trigram index
    assert found("在做什么") == {chinese.id}
    assert found("up") == {cat.id}  # two letters: matched without the index
    assert found("YE") == {dog.id, cat.id}  # "years", "Yes"
    assert found("") == found("   ") == {dog.id, cat.id, chinese.id}
    for odd in ('"', 'a"b', "%", "_", "*", "NOT", "cat OR", "(dog", "\\"):
        store.list_conversations(query=odd)  # never read as search syntax: no error


def test_a_search_result_carries_the_words_around_its_first_match(store):
    from mmchat.store.search import snippet

    long_answer = " ".join(["Some words before it."] * 10) + " The collie herds sheep. " + " ".join(["More after."] * 20)
    dog = _saved(store, "What breed is the dog?", long_answer)
    chinese = _saved(store, "这只猫在做什么？", "它在沙发上睡觉。")
    (found,) = store.list_conversations(query="COLLIE")
    assert found.id == dog.id and "The collie herds sheep." in found.snippet
    assert found.snippet.startswith("…") and found.snippet.endswith("…") and len(found.snippet) <= 122
    assert found.snippet[1:].split()[0] in long_answer.split()  # cut between words, not inside one
    assert store.list_conversations(query="睡觉")[0].snippet == "这只猫在做什么？ 它在沙发上睡觉。"
    assert store.list_conversations(query="sheep", limit=1)[0].id == dog.id
    assert {c.id: c.snippet for c in store.list_conversations()}[chinese.id] == ""  # no search, no snippet
    assert snippet("Nothing here", "zebra") == "" and snippet("", "zebra") == ""
    # The title (the first question) is shown anyway: the snippet is of the words after it.
    assert store.list_conversations(query="breed")[0].snippet == ""
    assert snippet("What breed is the dog?\nA collie: a breed for herding.", "breed", "What breed is the dog?") == (
        "What breed is the dog? A collie: a breed for herding.")


def test_search_covers_spoken_questions(store, tmp_path):
    conversation = Conversation()
    recording = store.keep_media(_file(tmp_path, "q.wav", b"RIFF"))
    conversation.add_user([AudioPart(recording, "How tall is the lighthouse?", "en", 2.0)])
    conversation.add_assistant("About thirty metres.")
    store.save(conversation)
    assert [c.id for c in store.list_conversations(query="lighthouse")] == [conversation.id]
    assert store.list_conversations()[0].title == "How tall is the lighthouse?"


def test_rename_keeps_its_title_through_saves_and_an_empty_one_brings_the_question_back(store):
    conversation = _saved(store, "What breed is the dog?")
    assert store.rename(conversation.id, "  Rex  the dog ")
    store.save(conversation)
    assert store.list_conversations()[0].title == "Rex the dog"
    assert [c.id for c in store.list_conversations(query="rex")] == [conversation.id]
    assert store.rename(conversation.id, "")
    assert store.list_conversations()[0].title == "What breed is the dog?"
    assert store.list_conversations(query="rex") == []


def test_delete_removes_the_conversation_and_its_text(store):
    kept = _saved(store, "Keep me")
    gone = _saved(store, "Delete me")
    assert store.delete(gone.id)
    assert store.load(gone.id) is None
    assert [c.id for c in store.list_conversations()] == [kept.id]
    assert store.list_conversations(query="Delete") == []
    assert not store.delete(gone.id)


# --- media ---

def test_the_same_content_is_stored_once_and_removed_with_its_last_user(store, tmp_path):
    first = _chat(store, tmp_path / "one")
    second = _chat(store, tmp_path / "two")  # the same bytes, uploaded again
    store.save(first)
    store.save(second)
    assert first.turns[0].images[0].path == second.turns[0].images[0].path
    assert len(_files(store)) == 2  # one photo, one recording
    assert store.delete(first.id)
    assert len(_files(store)) == 2  # still used by the second
    assert Path(store.load(second.id).turns[0].images[0].path).is_file()
    assert store.delete(second.id)
    assert _files(store) == []
    assert store._db.execute("SELECT count(*) FROM media").fetchone() == (0,)


def test_media_an_edit_no_longer_uses_is_removed(store, tmp_path):
    conversation = _chat(store, tmp_path / "uploads")
    store.save(conversation)
    recording = Path(conversation.turns[2].parts[0].path)
    del conversation.turns[2:]  # the spoken question is gone (as after an edit)
    store.save(conversation)
    assert not recording.exists()
    assert Path(conversation.turns[0].images[0].path).is_file()


def test_a_fresh_upload_is_not_collected_before_its_turn_is_saved(tmp_path):
    with SQLiteStore(tmp_path / "data") as store:  # the real grace time
        path = Path(store.keep_media(_file(tmp_path, "photo.jpg", b"jpeg")))
        _saved(store, "Another tab saves meanwhile")  # collects unused media
        assert store.collect_garbage() == 0 and path.is_file()
        store.media_grace = 0  # the grace time has passed and no turn was saved with it
        assert store.collect_garbage() == 1 and not path.exists()


def test_files_outside_the_store_are_copied_in_and_missing_ones_marked(store, tmp_path):
    outside = _file(tmp_path / "elsewhere", "photo.JPEG", b"jpeg bytes")
    conversation = Conversation()
    conversation.add_user([ImagePart(str(outside)), ImagePart(str(tmp_path / "gone.png")), TextPart("Two photos?")])
    store.save(conversation)
    loaded = store.load(conversation.id).turns[0].images
    assert Path(loaded[0].path).parent.parent == store.media.root
    assert Path(loaded[0].path).read_bytes() == b"jpeg bytes" and loaded[0].path.endswith(".jpeg")
    assert loaded[1].path == str(tmp_path / "gone.png")  # kept, shown as not available
    assert outside.exists()  # a copy: the original is not the store's to remove


def test_stray_files_from_a_crash_are_cleared_on_open(tmp_path):
    data = tmp_path / "data"
    with SQLiteStore(data, media_grace=0) as store:
        used = _chat(store, tmp_path / "uploads")
        store.save(used)
    media = data / "media"
    stray = _file(media, "ab/" + "ab" * 32 + ".png", b"placed, row never committed")
    partial = _file(media, "incoming/0123.part", b"copy never placed")
    legacy = _file(media, "c" * 32 + "/photo.png", b"the JSON store's media folder")
    with SQLiteStore(data, media_grace=0) as store:
        assert not stray.exists() and not partial.exists()
        assert legacy.exists()  # not the hash store's
        assert all(Path(p.path).is_file() for t in store.load(used.id).turns for p in t.images)


# --- the database file ---

def test_the_database_is_one_file_in_wal_mode_with_foreign_keys(store):
    assert store.path == store.root / "mmchat.sqlite3" and store.path.is_file()
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself refuses a dangling part
        db.execute("INSERT INTO parts (turn_id, position, kind) VALUES (12345, 0, 'text')")


def test_a_used_media_row_cannot_be_deleted(store, tmp_path):
    conversation = _chat(store, tmp_path / "uploads")
    store.save(conversation)
    with pytest.raises(sqlite3.IntegrityError):
        store._db.execute("DELETE FROM media")


def test_saves_from_many_threads_and_a_second_connection_all_land(tmp_path):
    data = tmp_path / "data"
    first, second = SQLiteStore(data, media_grace=0), SQLiteStore(data, media_grace=0)
    shared = Conversation()
    errors: list[BaseException] = []

    def tab(store: SQLiteStore, number: int) -> None:
        try:
            mine = Conversation()
            for step in range(15):
                photo = store.keep_media(_file(tmp_path / f"t{number}", f"{step}.png", b"same photo"))
                mine.add_user([ImagePart(photo), TextPart(f"tab {number} question {step}")])
                mine.add_assistant(f"answer {step}")
                store.save(mine)
                store.save(Conversation([*shared.turns], shared.id))
            assert store.load(mine.id).turns == mine.turns
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    shared.add_user([TextPart("shared question")])
    shared.add_assistant("shared answer")
    threads = [threading.Thread(target=tab, args=(store, n)) for n, store in enumerate([first, second] * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(first.list_conversations()) == 7
    assert len(_files(first)) == 1  # one photo, however often it was uploaded
    assert first._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    first.close()
    second.close()


# --- migrations ---

def test_a_database_from_a_newer_mmchat_is_refused(tmp_path):
    data = tmp_path / "data"
    SQLiteStore(data).close()
    with sqlite3.connect(data / "mmchat.sqlite3") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(data)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    _file(tmp_path / "data", "mmchat.sqlite3", b"not a database at all, just some bytes" * 100)
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path / "data")


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_a_database_made_at_every_earlier_version_opens_and_upgrades(tmp_path, version):
    data = tmp_path / "data"
    data.mkdir()
    db = schema.connect(data / "mmchat.sqlite3")
    assert schema.migrate(db, target=version) == version
    db.close()
    with SQLiteStore(data) as store:
        assert store._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        conversation = _saved(store, "Does it work at the newest version?")
        assert store.load(conversation.id).turns == conversation.turns
        assert store._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _v1_database(data: Path) -> dict:
    """A database as version 1 made it, written with version 1's SQL, with its media."""
    data.mkdir(parents=True)
    db = schema.connect(data / "mmchat.sqlite3")
    schema.migrate(db, target=1)
    digest = hashlib.blake2b(b"v1 photo", digest_size=32).hexdigest()
    _file(data / "media", f"{digest[:2]}/{digest}.png", b"v1 photo")
    ids = {"photo": "a" * 32, "spoken": "b" * 32, "empty": "c" * 32}
    with schema.write_transaction(db):
        db.execute("INSERT INTO media VALUES (?, '.png', 8, 0)", (digest,))
        for number, conversation_id in enumerate(ids.values()):
            db.execute("INSERT INTO conversations VALUES (?, 'local', ?, ?)", (conversation_id, number, number))
        turn = db.execute("INSERT INTO turns (conversation_id, position, role, status) "
                          "VALUES (?, 0, 'user', 'complete')", (ids["photo"],)).lastrowid
        db.execute("INSERT INTO parts (turn_id, position, kind, media_hash) VALUES (?, 0, 'image', ?)", (turn, digest))
        db.execute("INSERT INTO parts (turn_id, position, kind, text) VALUES (?, 1, 'text', 'Which bird is this?')",
                   (turn,))
        turn = db.execute("INSERT INTO turns (conversation_id, position, role, status, timings) "
                          "VALUES (?, 1, 'assistant', 'complete', ?)", (ids["photo"], json.dumps({"done": 2.0}))).lastrowid
        db.execute("INSERT INTO parts (turn_id, position, kind, text) VALUES (?, 0, 'text', 'A kingfisher.')", (turn,))
        turn = db.execute("INSERT INTO turns (conversation_id, position, role, status) "
                          "VALUES (?, 0, 'user', 'complete')", (ids["spoken"],)).lastrowid
        db.execute("INSERT INTO parts (turn_id, position, kind, text, missing_path, language, duration) "
                   "VALUES (?, 0, 'audio', 'Wie spät ist es?', '/gone/q.wav', 'de', 1.25)", (turn,))
        db.execute("INSERT INTO turns (conversation_id, position, role, status) "
                   "VALUES (?, 1, 'assistant', 'interrupted')", (ids["spoken"],))
    db.close()
    return ids


def test_version_1_upgrades_to_2_with_its_data_kept(tmp_path):
    data = tmp_path / "data"
    ids = _v1_database(data)
    with SQLiteStore(data) as store:
        photo = store.load(ids["photo"])
        assert [t.role for t in photo.turns] == ["user", "assistant"]
        assert Path(photo.turns[0].images[0].path).read_bytes() == b"v1 photo"
        assert photo.turns[0].text == "Which bird is this?" and photo.turns[1].text == "A kingfisher."
        assert photo.turns[1].timings == {"done": 2.0}
        spoken = store.load(ids["spoken"])
        assert spoken.turns[0].parts == [AudioPart("/gone/q.wav", "Wie spät ist es?", "de", 1.25)]
        assert spoken.turns[1].status == "interrupted" and spoken.turns[1].parts == []
        assert store.load(ids["empty"]).turns == []
        # What version 2 added, filled in from version 1's data:
        titles = {c.id: c.title for c in store.list_conversations()}
        assert titles == {ids["photo"]: "Which bird is this?", ids["spoken"]: "Wie spät ist es?",
                          ids["empty"]: "Untitled"}
        assert [c.id for c in store.list_conversations(query="kingfisher")] == [ids["photo"]]
        assert [c.id for c in store.list_conversations(query="SPÄT")] == [ids["spoken"]]
        assert [c.id for c in store.list_conversations()] == [ids["empty"], ids["spoken"], ids["photo"]]
        assert store.collect_garbage() == 0  # the v1 photo is still used


def test_a_failing_step_leaves_the_database_at_the_version_before(tmp_path, monkeypatch):
    data = tmp_path / "data"
    ids = _v1_database(data)

    def broken(db):
        schema.MIGRATIONS[1](db)
        raise RuntimeError("power cut in the middle of the step")

    monkeypatch.setattr(schema, "MIGRATIONS", [schema.MIGRATIONS[0], broken])
    db = schema.connect(data / "mmchat.sqlite3")
    with pytest.raises(RuntimeError):
        schema.migrate(db)
    assert schema.version(db) == 1
    assert "title" not in {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
    db.close()
    monkeypatch.undo()
    with SQLiteStore(data) as store:
        assert store.list_conversations()[-1].title == "Which bird is this?"
        assert len(store.load(ids["photo"]).turns) == 2


def test_version_2_upgrades_to_3_with_empty_user_tables_and_conversations_kept(tmp_path):
    data = tmp_path / "data"
    ids = _v1_database(data)
    db = schema.connect(data / "mmchat.sqlite3")
    assert schema.migrate(db, target=2) == 2
    db.close()
    with SQLiteStore(data) as store:
        db = store._db
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        for table in ("users", "login_sessions", "api_keys"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        # Conversations made before users existed stay the local person's.
        assert len(store.load(ids["photo"], LOCAL_OWNER).turns) == 2
        assert store.load(ids["photo"], "alice") is None
        # A user's sessions and keys go with the user.
        with schema.write_transaction(db):
            db.execute("INSERT INTO users VALUES ('alice', 'hash', 0)")
            db.execute("INSERT INTO login_sessions VALUES ('t', 'alice', 0, 0)")
            db.execute("INSERT INTO api_keys VALUES ('k', 'kh', 'alice', 0)")
            db.execute("DELETE FROM users WHERE name = 'alice'")
        assert db.execute("SELECT count(*) FROM login_sessions").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
        with pytest.raises(sqlite3.IntegrityError):  # no session of a user who does not exist
            db.execute("INSERT INTO login_sessions VALUES ('t', 'nobody', 0, 0)")


def test_whether_an_owner_uses_a_media_file(store, tmp_path):
    photo = _file(tmp_path, "p.png", b"alice's photo")
    conversation = Conversation()
    conversation.add_user([ImagePart(str(photo)), TextPart("What is it?")])
    store.save(conversation, "alice")
    stored = store.load(conversation.id, "alice").turns[0].images[0].path
    digest = store.media.digest_of(stored)
    assert store.owner_uses_media("alice", digest)
    assert not store.owner_uses_media("bob", digest)
    assert not store.owner_uses_media(LOCAL_OWNER, digest)


# --- the JSON store's conversations ---

def _json_store(data: Path, uploads: Path) -> list[Conversation]:
    """Conversations saved the way ConversationStore saves them today, media in its folders."""
    old = ConversationStore(data)
    saved = []
    for number in range(2):
        conversation = Conversation()
        folder = old.media_dir(conversation.id)
        photo = _file(folder, f"photo{number}.png", b"old photo")  # both hold the same photo
        recording = _file(folder, "q.wav", f"recording {number}".encode())
        conversation.add_user([ImagePart(str(photo)), AudioPart(str(recording), f"Spoken question {number}", "en", 1.0),
                               TextPart("and typed")])
        conversation.add_assistant(f"Answer {number}")
        conversation.turns[-1].timings = {"done": 1.0 + number}
        old.save(conversation)
        saved.append(conversation)
    return saved


def test_json_conversations_are_imported_on_first_start_with_their_media(tmp_path, caplog):
    data = tmp_path / "data"
    originals = _json_store(data, tmp_path / "uploads")
    _file(data / "conversations", "d" * 32 + ".json", b"{not json")
    _file(data / "conversations", "e" * 32 + ".json", b'{"id": "eeee", "turns": []}')  # an id never loadable
    _file(data / "conversations", "f" * 32 + ".json", b'{"id": "' + b"f" * 32 + b'", "turns": [{"role": "x"}]}')
    _file(data / "conversations", "ffff.json", "\udcff".encode("utf-8", "surrogatepass"))
    caplog.set_level(logging.WARNING, logger="mmchat.store")
    with SQLiteStore(data, media_grace=0) as store:
        for original in originals:
            loaded = store.load(original.id)
            assert [t.text for t in loaded.turns] == [t.text for t in original.turns]
            assert loaded.turns[1].timings == original.turns[1].timings
            for old_part, new_part in zip(original.turns[0].parts, loaded.turns[0].parts):
                if isinstance(old_part, (ImagePart, AudioPart)):
                    assert Path(new_part.path).parent.parent == store.media.root  # in the hash store now
                    assert Path(new_part.path).read_bytes() == Path(old_part.path).read_bytes()
        assert {c.title for c in store.list_conversations()} == {"Spoken question 0 and typed",
                                                                  "Spoken question 1 and typed"}
        assert len(_files(store)) == 3  # one photo for both, two recordings
        assert len(store.list_conversations()) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4  # each unreadable file, once
    assert all(Path(o.turns[0].images[0].path).exists() for o in originals)  # the old store is left as it was
    caplog.clear()
    with SQLiteStore(data, media_grace=0) as store:  # the second start imports nothing again
        assert len(store.list_conversations()) == 2
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []


def test_importing_twice_adds_nothing_and_keeps_newer_changes(tmp_path):
    data = tmp_path / "data"
    originals = _json_store(data, tmp_path / "uploads")
    with SQLiteStore(data, media_grace=0) as store:
        changed = store.load(originals[0].id)
        changed.add_user([TextPart("A question asked after the import")])
        store.save(changed)
        report = import_json_folder(store, data / "conversations")  # as after a crash mid-import
        assert report.imported == [] and sorted(report.already_there) == sorted(o.id for o in originals)
        assert store.load(originals[0].id).turns == changed.turns
        assert len(store.list_conversations()) == 2


def test_a_store_without_json_conversations_starts_empty(tmp_path):
    with SQLiteStore(tmp_path / "fresh") as store:
        assert store.list_conversations() == []


def test_version_3_upgrades_to_4_and_a_describe_question_keeps_its_task(tmp_path):
    data = tmp_path / "data"
    ids = _v1_database(data)
    db = schema.connect(data / "mmchat.sqlite3")
    assert schema.migrate(db, target=3) == 3
    db.close()
    with SQLiteStore(data) as store:
        photo = store.load(ids["photo"])
        assert photo.turns[0].parts[1] == TextPart("Which bird is this?")  # no task: an ordinary question
        described = Conversation()
        described.add_user([TextPart("Describe what is in front of the camera ...", "describe:brief")])
        described.add_assistant("A red circle.")
        store.save(described)
        assert store.load(described.id).turns == described.turns
        # Titled and found by what the chat shows, not by the prompt's words.
        assert store.summary(described.id).title == "Describe (brief)"
        assert [c.id for c in store.list_conversations(query="describe (brief)")] == [described.id]
        assert store.rename(described.id, "") and store.summary(described.id).title == "Describe (brief)"
