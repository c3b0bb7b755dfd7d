"""Data moves once (issue 26): each photo read and decoded once on its way in, an API
request writes nothing to disk, and the export .zip is written only when someone asks.

Through the real turn layer, the real HTTP API on loopback (the official client) and the
page's own handlers, with shapes-vlm answering, so a photo that did not reach the model
gives a wrong answer rather than a passing test.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import pytest

from conftest import last, make_services, with_config
from fixture_models import draw_test_image
from mmchat.engine import GenerationParams
from mmchat.media.photos import PHOTOS
from mmchat.turn import UserInput, submit
from mmchat.turn.session import ChatSession
from mmchat.web.chat import ChatHandlers
from test_api_support import LiveServer, data_url

GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


def _photo(tmp_path: Path, name: str, shape: str, colour: str) -> str:
    path = tmp_path / name
    draw_test_image(shape, colour).save(path)
    return str(path)


def test_a_photo_is_decoded_once_from_upload_to_answer_and_not_again_in_a_follow_up(
        config, shapes_engine, store, tmp_path):
    services = make_services(with_config(config, max_new_tokens=8), shapes_engine, store)
    session = ChatSession(store)
    upload = _photo(tmp_path, "upload.png", "circle", "red")
    PHOTOS.clear()
    before = PHOTOS.decoded
    answer = last(submit(session, UserInput("What colour is the shape?", (upload,)), services, GREEDY))
    assert answer.status == "complete" and "red" in answer.text.lower()
    assert PHOTOS.decoded - before == 1, "checked, kept in the store and sent to the model from one decode"
    stored = session.conversation.turns[0].images[0].path
    assert Path(stored) != Path(upload)  # the store's own copy, which the model read without decoding it again
    follow_up = last(submit(session, UserInput("What shape was it?"), services, GREEDY))
    assert follow_up.status == "complete" and "circle" in follow_up.text.lower()
    assert PHOTOS.decoded - before == 1, "the follow-up sends the photo again, decoded already"


@pytest.fixture
def private_temp(tmp_path, monkeypatch):
    """The process's temporary folder, empty, for this test alone (tempfile and TMPDIR)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def test_an_api_request_with_a_photo_writes_nothing_to_disk(config, shapes_engine, private_temp):
    services = make_services(with_config(config, max_turns_per_minute=0), shapes_engine)
    data = config.data_dir
    with LiveServer(services) as server:
        before = _files(data), _files(private_temp)
        reply = server.client().chat.completions.create(
            model="shapes-vlm", temperature=0, max_tokens=8,
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_url(draw_test_image("square", "blue"))}},
                {"type": "text", "text": "What colour is the shape?"}]}])
        after = _files(data), _files(private_temp)
    assert "blue" in reply.choices[0].message.content.lower()  # the photo reached the model, from memory
    assert after == before, f"files written by one request: {sorted(after[0] - before[0])} {sorted(after[1] - before[1])}"


def test_the_export_is_written_when_asked_for_and_not_after_each_answer(services, store, tmp_path):
    handlers = ChatHandlers(services)
    session, *_ = handlers.on_load("")
    exports = store.root / "exports"
    photo = _photo(tmp_path, "photo.png", "star", "green")
    for text, files in (("What is it?", [photo]), ("And now?", [])):
        view = last(handlers.on_submit(session, {"text": text, "files": files}, False, None,
                                       8, 0.0, False, "auto", 1.0, progress=None))
        assert view.export["interactive"] is True  # Export can be pressed ...
        assert _files(exports) == set(), "... and nothing is written until it is"
    handlers.on_load(session.conversation.id)  # opening it again writes nothing either
    assert _files(exports) == set()
    update = handlers.on_export(session)
    archive = Path(update["value"])
    with zipfile.ZipFile(archive) as zipped:
        markdown = zipped.read(f"{archive.stem}/conversation.md").decode()
    assert "What is it?" in markdown and "And now?" in markdown
    assert _files(exports) == {str(archive.relative_to(exports))}
    assert os.path.getsize(archive) > 0
