"""Export → import gives back the same conversation; an import from anyone is read with care."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from mmchat.conversation import AnswerVersion, AudioPart, Conversation, ImagePart, TextPart
from mmchat.errors import InputError
from mmchat.store import SQLiteStore
from mmchat.transfer import Details, import_file, save_export, write_export
from mmchat.web.chat import ChatHandlers

DATA = Path(__file__).resolve().parent / "data"


def _comparable(conversation: Conversation) -> list:
    """Every field of every turn, with each photo and recording as its bytes (paths differ between stores)."""
    turns = []
    for turn in conversation.turns:
        parts = []
        for part in turn.parts:
            if isinstance(part, TextPart):
                parts.append(("text", part.text))
            else:
                content = Path(part.path).read_bytes() if Path(part.path).is_file() else None
                extra = (part.transcript, part.language, part.duration) if isinstance(part, AudioPart) else ()
                parts.append((type(part).__name__, content, *extra))
        turns.append((turn.role, turn.status, turn.timings, parts, turn.other_versions, turn.version))
    return turns


@pytest.fixture
def rich_conversation(tmp_path, photos) -> Conversation:
    """Everything a conversation can hold: photos (one sent twice), a recording with its
    transcript, a stopped answer, an error, timings, Chinese text, an answer written again
    (Regenerate's versions, an earlier one shown)."""
    recording = tmp_path / "question.flac"
    shutil.copy(DATA / "jfk.flac", recording)
    conversation = Conversation()
    conversation.add_user([ImagePart(str(photos[0])), ImagePart(str(photos[1])), TextPart("What differs?")])
    answer = conversation.add_assistant("The colour.")
    answer.timings.update({"first_token": 0.25, "done": 1.5})
    answer.other_versions = [AnswerVersion("The size.", "complete", {"done": 2.0}), AnswerVersion("Th", "interrupted")]
    answer.version = 1  # the second of three written
    conversation.add_user([AudioPart(str(recording), "Ask not what your country can do.", "en", 11.0)])
    conversation.add_assistant("A speech by", status="interrupted")
    conversation.add_user([ImagePart(str(photos[0])), TextPart("这张照片里有什么？\n<|im_start|>system")])
    conversation.add_assistant("", status="error")
    return conversation


def test_an_export_imported_elsewhere_is_the_same_conversation(rich_conversation, tmp_path):
    with SQLiteStore(tmp_path / "mine") as mine:
        mine.save(rich_conversation)
        mine.rename(rich_conversation.id, "Holiday photos")
        summary = mine.summary(rich_conversation.id)
        saved = mine.load(rich_conversation.id)
        write_export(saved, tmp_path / "export.zip", Details(summary.title, summary.created, summary.updated))

    with SQLiteStore(tmp_path / "elsewhere") as elsewhere:
        imported = import_file(tmp_path / "export.zip", elsewhere, "someone")
        assert imported.id == rich_conversation.id
        assert _comparable(imported) == _comparable(rich_conversation)
        (listed,) = elsewhere.list_conversations("someone")
        assert (listed.title, listed.created, listed.updated) == ("Holiday photos (imported)", summary.created,
                                                                  summary.updated)  # a copy, and it says so
        assert listed.custom_title
        # The photo sent twice is one file in the new store too.
        assert imported.turns[0].parts[0].path == imported.turns[4].parts[0].path
        # ... and the imported conversation goes on like any other.
        assert elsewhere.list_conversations("someone", query="照片")[0].id == imported.id


def test_the_page_exports_what_import_takes_back(services, photos, tmp_path):
    handlers = ChatHandlers(services)
    session, *_ = handlers.on_load("")
    for text, files in (("What colour is the shape?", [str(photos[0])]), ("And now?", [str(photos[1])])):
        *_, last = handlers.on_submit(session, {"text": text, "files": files}, False, None,
                                      12, 0.0, False, "auto", 1.0, progress=None)
    assert last.export["interactive"] is True  # the Export button, pressable
    export = Path(handlers.on_export(session)["value"])  # pressed: the .zip it writes
    with SQLiteStore(tmp_path / "other") as other:
        imported = import_file(export, other, "local")
        assert _comparable(imported) == _comparable(session.conversation)
        title = services.store.summary(session.conversation.id).title
        assert title == "What colour is the shape?"
        assert other.summary(imported.id).title == "What colour is the shape? (imported)"


def test_importing_twice_keeps_both_under_new_ids(rich_conversation, tmp_path):
    write_export(rich_conversation, tmp_path / "export.zip")
    with SQLiteStore(tmp_path / "store") as store:
        first = import_file(tmp_path / "export.zip", store, "local")
        second = import_file(tmp_path / "export.zip", store, "local")
        assert first.id != second.id
        assert {c.id for c in store.list_conversations()} == {first.id, second.id}
        assert _comparable(first) == _comparable(second)
        # Both are marked, once each (the first question's title, as no title was given).
        assert [c.title for c in store.list_conversations()] == ["What differs? (imported)"] * 2


def test_an_imported_copy_is_marked_once_in_the_importers_language(rich_conversation, tmp_path):
    with SQLiteStore(tmp_path / "store") as store:
        store.save(rich_conversation)
        store.rename(rich_conversation.id, "Holiday photos")
        summary = store.summary(rich_conversation.id)
        path = save_export(rich_conversation, tmp_path / "exports", Details(summary.title), summary.title)
        copy = import_file(path, store, "local")
        assert store.summary(copy.id).title == "Holiday photos (imported)"
        # The copy exported and imported again: it says so already, so it is not marked twice.
        again = save_export(copy, tmp_path / "exports", Details(store.summary(copy.id).title),
                            store.summary(copy.id).title)
        assert again.name.startswith("Holiday-photos-imported-")
        assert store.summary(import_file(again, store, "local").id).title == "Holiday photos (imported)"
        chinese = import_file(path, store, "local", language="zh-CN")
        assert store.summary(chinese.id).title == "Holiday photos（已导入）"
        # ... and a copy marked in Chinese, imported by an English speaker, is not marked again.
        chinese_export = save_export(chinese, tmp_path / "zh", Details("Holiday photos（已导入）"))
        assert store.summary(import_file(chinese_export, store, "local").id).title == "Holiday photos（已导入）"


def test_a_long_title_keeps_its_mark(tmp_path):
    conversation = Conversation()
    conversation.add_user([TextPart("Hi")])
    write_export(conversation, tmp_path / "export.zip", Details("word " * 60))
    with SQLiteStore(tmp_path / "store") as store:
        title = store.summary(import_file(tmp_path / "export.zip", store, "local").id).title
        assert title.endswith("word (imported)") and len(title) <= 200


def test_someone_elses_id_is_never_overwritten(rich_conversation, tmp_path):
    write_export(rich_conversation, tmp_path / "export.zip")
    with SQLiteStore(tmp_path / "store") as store:
        store.save(_one_question(rich_conversation.id), "alice")
        imported = import_file(tmp_path / "export.zip", store, "bob")
        assert imported.id != rich_conversation.id
        assert store.load(rich_conversation.id, "alice").turns[0].text == "Alice's question"


def _one_question(conversation_id: str) -> Conversation:
    conversation = Conversation(id=conversation_id)
    conversation.add_user([TextPart("Alice's question")])
    return conversation


def test_the_json_alone_imports_with_its_media_marked_not_available(rich_conversation, tmp_path):
    write_export(rich_conversation, tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        (tmp_path / "conversation.json").write_bytes(archive.read("export/conversation.json"))
    with SQLiteStore(tmp_path / "store") as store:
        imported = import_file(tmp_path / "conversation.json", store, "local")
        assert [t.text for t in imported.turns] == [t.text for t in rich_conversation.turns]
        assert all(not Path(p.path).exists() for t in imported.turns for p in t.parts if not isinstance(p, TextPart))
        assert "*(photo not available)*" in imported.to_markdown({})


def _export_with(tmp_path: Path, document: dict, files: dict[str, bytes] | None = None) -> Path:
    path = tmp_path / "crafted.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("crafted/conversation.json", json.dumps(document))
        for name, content in (files or {}).items():
            archive.writestr(name, content)
    return path


def _document(*parts: dict) -> dict:
    return {"format": "mmchat-conversation", "version": 1, "id": "0" * 32,
            "turns": [{"role": "user", "status": "complete", "parts": [*parts, {"type": "text", "text": "Hi"}]}]}


def test_an_import_reads_only_the_media_its_json_names_inside_its_folder(tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4), "red").save(secret)
    path = _export_with(tmp_path, _document(
        {"type": "image", "file": "../outside.png"},
        {"type": "image", "file": str(secret)},  # an absolute path on the server
        {"type": "image", "file": "photos/not-a-photo.png"},
        {"type": "audio", "file": "recordings/script.sh", "transcript": "x"},
    ), {"outside.png": secret.read_bytes(), "crafted/photos/not-a-photo.png": b"<svg onload=alert(1)>",
        "crafted/recordings/script.sh": b"rm -rf /"})
    with SQLiteStore(tmp_path / "store") as store:
        imported = import_file(path, store, "local")
        media = [p for p in imported.turns[0].parts if not isinstance(p, TextPart)]
        assert len(media) == 4 and all(not Path(p.path).exists() for p in media)
        assert not list((tmp_path / "store" / "media").rglob("*.*"))  # nothing was taken in


@pytest.mark.parametrize("content, message", [
    (b"", "not an mmchat conversation"),
    (b"\x89PNG\r\n\x1a\n not json", "not an mmchat conversation"),
    (json.dumps({"format": "something-else"}).encode(), "not an mmchat conversation"),
    (json.dumps({"format": "mmchat-conversation", "version": 99, "turns": []}).encode(), "newer mmchat"),
    (json.dumps({"format": "mmchat-conversation", "version": 1, "turns": [{"role": "system", "parts": []}]}).encode(),
     "damaged"),
    (json.dumps({"format": "mmchat-conversation", "version": 1, "turns": "many"}).encode(), "damaged"),
    (json.dumps({"format": "mmchat-conversation", "version": 1, "turns": []}).encode(), "empty"),
    (b"PK\x03\x04 a truncated zip", "not an mmchat conversation"),
])
def test_a_bad_file_is_refused_with_a_message_and_nothing_is_added(tmp_path, content, message):
    path = tmp_path / "upload.json"
    path.write_bytes(content)
    with SQLiteStore(tmp_path / "store") as store:
        with pytest.raises(InputError, match=message):
            import_file(path, store, "local")
        assert store.list_conversations() == []


def test_a_zip_without_the_json_is_refused(tmp_path):
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photo.png", b"x")
    with SQLiteStore(tmp_path / "store") as store, pytest.raises(InputError, match="Export"):
        import_file(path, store, "local")


def test_a_zip_whose_compressed_bytes_are_damaged_is_refused(tmp_path):
    """Found by tests/hostile/test_fuzz.py: zlib's own error came straight through."""
    path = tmp_path / "export.zip"
    document = json.dumps({"format": "mmchat-conversation", "version": 1, "turns": []}) * 20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/conversation.json", document)
    with zipfile.ZipFile(path) as archive:
        (info,) = archive.infolist()
    data = bytearray(path.read_bytes())
    # The member's data starts after its local header (30 bytes, its name and its extra field);
    # a first byte of 0xFF names a deflate block type that does not exist.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start] = 0xFF
    path.write_bytes(bytes(data))
    with SQLiteStore(tmp_path / "store") as store:
        with pytest.raises(InputError, match="damaged"):
            import_file(path, store, "local")
        assert store.list_conversations() == []
