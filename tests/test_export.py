"""Export: the download holds what its Markdown links to, so the photos show once it is unpacked."""

from __future__ import annotations

import re
import shutil
import zipfile

import pytest
from pathlib import Path

from mmchat.conversation import AudioPart, Conversation, ImagePart, TextPart
from mmchat.transfer import write_export
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
    markdown = _unpack(export, tmp_path / "unpacked")
    text = markdown.read_text(encoding="utf-8")
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
