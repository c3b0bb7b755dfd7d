"""Export: the download holds what its Markdown links to, so the photos show once it is unpacked."""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from datetime import date

import pytest
from pathlib import Path

from mmchat.conversation import AudioPart, Conversation, ImagePart, TextPart
from mmchat.store import SQLiteStore
from mmchat.transfer import Details, export_name, save_export, write_export
from mmchat.users.accounts import exports_folder
from mmchat.web.chat import ChatHandlers

DATA = Path(__file__).resolve().parent / "data"
LINK = re.compile(r"\]\(([^)]+)\)")


def _unpack(archive: Path, into: Path) -> Path:
    """Unpack as a person would; returns the Markdown file."""
    with zipfile.ZipFile(archive) as z:
        z.extractall(into)
    (folder,) = into.iterdir()  # one folder, so unpacking never scatters files
    return folder / "conversation.md"


def test_the_downloaded_zip_holds_every_photo_its_markdown_shows(services, photos, tmp_path):
    handlers = ChatHandlers(services)
    session, *_ = handlers.on_load("")
    for text, files in (("What is it?", [str(photos[0]), str(photos[1])]), ("And now?", [])):
        *_, last = handlers.on_submit(session, {"text": text, "files": files}, False, None,
                                      12, 0.0, False, "auto", 1.0, progress=None)
    assert last.export["interactive"] is True  # the Export button, pressable
    export = Path(handlers.on_export(session)["value"])  # pressed: the .zip it writes
    assert export.name in _dated("What-is-it", ".zip")  # named after its title (its first question), dated
    markdown = _unpack(export, tmp_path / "unpacked")
    assert markdown.parent.name == export.stem
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("# What is it?\n")  # the title, as the heading
    assert "What is it?" in text and "And now?" in text
    links = LINK.findall(text)
    assert len(links) == 2
    # Each link is relative and leads to that photo, in the order it was sent.
    for link, original in zip(links, photos):
        assert not Path(link).is_absolute()
        assert (markdown.parent / link).read_bytes() == original.read_bytes()


def test_recordings_go_in_too_each_file_once_and_a_lost_one_is_marked(tmp_path):
    photo, recording = tmp_path / "p.png", tmp_path / "q.flac"
    photo.write_bytes(b"\x89PNG photo")
    shutil.copy(DATA / "jfk.flac", recording)
    conversation = Conversation()
    conversation.add_user([ImagePart(str(photo)), AudioPart(str(recording), "Ask not.", "en", 11.0)])
    conversation.add_assistant("A speech.")
    conversation.add_user([ImagePart(str(photo)), ImagePart(str(tmp_path / "gone.png")), TextPart("Again?")])
    conversation.add_assistant("Yes", status="interrupted")

    write_export(conversation, tmp_path / "out" / "mmchat-test.zip")
    with zipfile.ZipFile(tmp_path / "out" / "mmchat-test.zip") as z:
        names = sorted(z.namelist())
    assert names == ["mmchat-test/conversation.json", "mmchat-test/conversation.md", "mmchat-test/photos/photo-1.png",
                     "mmchat-test/recordings/recording-1.flac"]  # the photo sent twice is stored once
    markdown = _unpack(tmp_path / "out" / "mmchat-test.zip", tmp_path / "unpacked")
    text = markdown.read_text(encoding="utf-8")
    for link in LINK.findall(text):
        assert (markdown.parent / link).is_file(), link
    assert (markdown.parent / "recordings/recording-1.flac").read_bytes() == (DATA / "jfk.flac").read_bytes()
    assert "Ask not." in text and "*(photo not available)*" in text and "*(stopped)*" in text
    assert text.startswith("# Ask not.\n")  # no title given: the one made from the first question (its words)
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "mmchat-test.zip"]  # no partial file left


def test_the_unpacked_markdown_shows_its_photos_in_a_browser(tmp_path, photos):
    """'Opened elsewhere': the Markdown rendered as any viewer would, and opened from disk in
    Chromium; every photo must load (a broken link gives an image of width 0)."""
    from markdown_it import MarkdownIt

    from test_browser import CHROMIUM, chromium  # the browser the page tests use

    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (scripts/dev-setup.sh)")
    conversation = Conversation()
    conversation.add_user([ImagePart(str(photos[0])), ImagePart(str(photos[1])), TextPart("Which is red?")])
    conversation.add_assistant("The first.")
    write_export(conversation, tmp_path / "mmchat-view.zip")
    markdown = _unpack(tmp_path / "mmchat-view.zip", tmp_path / "unpacked")
    page_file = markdown.with_suffix(".html")
    page_file.write_text(MarkdownIt().render(markdown.read_text(encoding="utf-8")), encoding="utf-8")
    with chromium() as page:
        page.goto(page_file.as_uri())
        page.wait_for_function("[...document.images].every((image) => image.complete)")
        widths = page.evaluate("[...document.images].map((image) => image.naturalWidth)")
    assert len(widths) == 2 and all(width > 0 for width in widths)


def _dated(stem: str, suffix: str) -> set[str]:
    """The names an export written now may have (the day may turn while a test runs)."""
    return {f"{stem}-{day.isoformat()}{suffix}" for day in (date.fromtimestamp(time.time() - 60), date.today())}


def _conversation(question: str) -> Conversation:
    conversation = Conversation()
    conversation.add_user([TextPart(question)])
    conversation.add_assistant("An answer.")
    return conversation


@pytest.mark.parametrize("title, name", [
    ("Red circle question?", "Red-circle-question"),
    ("这张照片里有什么？", "这张照片里有什么"),
    ("Café: ½ price / 2 for 1!", "Café-price-2-for-1"),
    ("under_score  and..dots", "under-score-and-dots"),
    ("  ---  ", "conversation"),
    ("", "conversation"),
    (None, "conversation"),
    ("word " * 30, "word-" * 11 + "word"),  # cut at a word, within 60 characters
    ("x" * 100, "x" * 60),
])
def test_an_export_is_named_after_its_title_in_a_safe_file_name(title, name):
    assert export_name(title) == name
    assert len(export_name(title)) <= 60


def test_each_press_leaves_only_the_newest_export_of_the_conversation(services, tmp_path):
    """Through the page's handlers and the real store: pressed twice, renamed, pressed again."""
    handlers = ChatHandlers(services)
    session, *_ = handlers.on_load("")
    *_, last = handlers.on_submit(session, {"text": "Red circle question?", "files": []}, False, None,
                                  12, 0.0, False, "auto", 1.0, progress=None)
    folder = exports_folder(services.store.root, session.owner)
    first = Path(handlers.on_export(session)["value"])
    assert first.parent == folder and first.name in _dated("Red-circle-question", ".zip")
    again = Path(handlers.on_export(session)["value"])
    assert again == first and list(folder.iterdir()) == [first]  # the same name, written over, nothing else
    services.store.rename(session.conversation.id, "Shapes 形状", session.owner)
    renamed = Path(handlers.on_export(session)["value"])
    assert renamed.name in _dated("Shapes-形状", ".zip")
    assert list(folder.iterdir()) == [renamed]  # the export under the old title is gone
    with zipfile.ZipFile(renamed) as archive:
        assert archive.read(f"{renamed.stem}/conversation.md").decode().startswith("# Shapes 形状\n")


def test_the_folder_keeps_the_newest_export_of_each_conversation_and_nothing_else(tmp_path):
    with SQLiteStore(tmp_path / "data") as store:
        mine, other = _conversation("Red circle?"), _conversation("Red circle?")  # the same title
        store.save(mine)
        store.save(other)
        folder = exports_folder(store.root, "local")
        alices = exports_folder(store.root, "alice")  # --auth: each user's folder is below the local one
        alices.mkdir(parents=True)
        hers = save_export(mine, alices, title="Red circle?", day=date(2026, 12, 6))  # her copy, same id
        # An earlier version's export of mine, a crash's leftover, and a file that is no export.
        legacy = folder / f"mmchat-{mine.id[:8]}.zip"
        write_export(mine, legacy)
        with zipfile.ZipFile(legacy, "a") as archive:
            archive.comment = b""  # as earlier versions wrote it
        stale = folder / ".Red-circle-2026-12-05.zip.x1.partial"
        stale.write_bytes(b"half")
        os.utime(stale, (time.time() - 3600,) * 2)
        notes = folder / "notes.zip"
        notes.write_bytes(b"not a zip")

        old = save_export(mine, folder, title="Red circle?", day=date(2026, 12, 6))
        assert old.name == "Red-circle-2026-12-06.zip"
        assert not legacy.exists() and not stale.exists()
        newest = save_export(mine, folder, Details("Red circle?"), "Red circle?", day=date(2026, 12, 7))
        theirs = save_export(other, folder, title="Red circle?", day=date(2026, 12, 7))
        assert newest.name == "Red-circle-2026-12-07.zip"
        assert theirs.name == "Red-circle-2026-12-07-2.zip"  # another conversation's is never written over
        assert sorted(p.name for p in folder.iterdir()) == ["Red-circle-2026-12-07-2.zip", "Red-circle-2026-12-07.zip",
                                                             "alice", "notes.zip"]
        assert list(alices.iterdir()) == [hers]  # her folder is hers: left as it was
        again = save_export(other, folder, title="Red circle?", day=date(2026, 12, 7))
        assert again == theirs and sorted(p.name for p in folder.iterdir() if p.is_file()) == [
            "Red-circle-2026-12-07-2.zip", "Red-circle-2026-12-07.zip", "notes.zip"]
        with zipfile.ZipFile(newest) as archive:
            assert archive.read("Red-circle-2026-12-07/conversation.md").decode().startswith("# Red circle?\n")


def test_an_untitled_conversation_exports_as_conversation(tmp_path):
    conversation = Conversation()
    conversation.add_user([ImagePart(str(tmp_path / "gone.png"))])  # a photo, no words
    path = save_export(conversation, tmp_path / "exports", day=date(2026, 12, 7))
    assert path.name == "conversation-2026-12-07.zip"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
