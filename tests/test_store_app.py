"""The conversation store in the running app: `python app.py` as a user starts it, driven
through the page's own Gradio events (the page saves its turns; the API's chat
completions are stateless and keep none).

- The first start in a data folder imports the JSON conversations of older versions,
  says how many, and never again.
- kill -9 in the middle of a streamed answer, then a restart: every turn committed
  before is there, the answer being written is kept marked interrupted (never half of
  it), and the database passes integrity_check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from gradio_client import Client, handle_file

from fixture_models import draw_test_image, fixture_model_path, shapes_vlm_path
from mmchat.conversation import Conversation, ImagePart, TextPart
from mmchat.store.legacy import ConversationStore
from mmchat.store import DATABASE_NAME, SQLiteStore
from test_api_support import free_port

ROOT = Path(__file__).resolve().parent.parent
IMPORTED = "imported 1 conversations from"  # the store's log line at the first start


class App:
    """`python app.py` on a free port, its output in `log`."""

    def __init__(self, model: Path, data: Path, log: Path) -> None:
        self.port = free_port()
        self.clients: list[Client] = []
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        command = [sys.executable, "app.py", "--port", str(self.port), "--data-dir", str(data),
                   "--model", str(model), "--device", "cpu", "--stt-backend", "none", "--tts-backend", "none"]
        with open(log, "w") as out:
            # A short heartbeat: a closed client's stream ends at its next beat, and
            # Ctrl+C waits for open streams, so the server stops within a second.
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "GRADIO_HEARTBEAT_INTERVAL": "0.5"})
        try:
            for _ in range(240):  # up to two minutes on a busy machine
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url, timeout=5).status_code == 200:
                        break
                assert self.process.poll() is None, log.read_text()
                time.sleep(0.5)
            else:
                raise AssertionError(log.read_text())
        except BaseException:
            self.kill()
            raise

    def client(self) -> Client:
        client = Client(self.url, verbose=False)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        """Ctrl+C, as a user stops it, once its clients are gone."""
        for client in self.clients:
            client.close()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(60)

    def output(self) -> str:
        return self.log.read_text()


def endless_model(tmp_path: Path) -> Path:
    """The tiny Qwen fixture without an end-of-turn token: every answer runs to its longest,
    so one asked for 4096 tokens is still streaming when the test kills the server."""
    folder = tmp_path / "endless-qwen"
    shutil.copytree(fixture_model_path("tiny-qwen3-vl"), folder)
    settings = folder / "generation_config.json"
    generation = json.loads(settings.read_text())
    generation["eos_token_id"] = None
    settings.write_text(json.dumps(generation))
    return folder


def ask(text: str, *files: Path, max_new_tokens: int = 16) -> tuple:
    """The arguments of the page's submit event (the message box and the settings)."""
    return ({"text": text, "files": [handle_file(str(f)) for f in files]}, max_new_tokens, 0.0, False, "auto", 1.0)


def texts(chat: list[dict]) -> list[tuple[str, str]]:
    """The page's chat view as (role, the words of each message), as trimmed for showing."""
    return [(m["role"], " ".join(c["text"] for c in m["content"] if c.get("type") == "text").strip())
            for m in chat]


def test_the_first_start_imports_the_json_conversations_once(tmp_path):
    data = tmp_path / "data"
    photo = tmp_path / "square.png"
    draw_test_image("square", "yellow").save(photo)
    old = ConversationStore(data)  # as an mmchat before the SQLite store saved it
    conversation = Conversation()
    folder = old.media_dir(conversation.id)
    folder.mkdir(parents=True)
    shutil.copyfile(photo, folder / "upload.png")
    conversation.add_user([ImagePart(str(folder / "upload.png")), TextPart("What colour is the shape?")])
    conversation.add_assistant("yellow")
    old.save(conversation)

    first = App(shapes_vlm_path(), data, tmp_path / "first.log")
    try:
        chat = first.client().predict(conversation.id, api_name="/on_load")[0]
    finally:
        first.stop()
    assert texts(chat) == [("user", "What colour is the shape?"), ("assistant", "yellow")]
    assert first.output().count(IMPORTED) == 1
    assert not (data / f"{DATABASE_NAME}-wal").exists()  # stopped cleanly: the store was closed

    second = App(shapes_vlm_path(), data, tmp_path / "second.log")
    try:
        chat = second.client().predict(conversation.id, api_name="/on_load")[0]
    finally:
        second.stop()
    assert texts(chat) == [("user", "What colour is the shape?"), ("assistant", "yellow")]
    assert "imported" not in second.output()
    for app in (first, second):
        assert "Traceback" not in app.output()


def test_a_server_killed_mid_answer_keeps_every_committed_turn_and_never_half_of_one(tmp_path):
    model, data = endless_model(tmp_path), tmp_path / "data"
    photo = tmp_path / "square.png"
    draw_test_image("square", "yellow").save(photo)
    questions = ["What colour is the shape?", "And what shape is it?", "Tell me a long story."]

    app = App(model, data, tmp_path / "killed.log")
    client = app.client()
    try:
        conversation_id = client.predict("", api_name="/on_load")[1]
        answers = []
        for question, files in zip(questions[:2], ([photo], [])):
            outputs = client.predict(*ask(question, *files), api_name="/on_submit")
            answers.append(outputs[2])  # the announcement: the whole answer, once complete
        streaming = client.submit(*ask(questions[2], max_new_tokens=4096), api_name="/on_submit")
        deadline = time.monotonic() + 60
        while True:  # until the third answer's words are on the page
            shown = streaming.outputs()
            chat = shown[-1][0] if shown else []
            if len(chat) == 6 and texts(chat)[5][1]:
                break
            assert time.monotonic() < deadline and not streaming.done(), (shown[-1:], app.output())
            time.sleep(0.05)
        app.kill()
    finally:
        if app.process.poll() is None:
            app.kill()
        with contextlib.suppress(Exception):
            client.close()
    assert app.process.returncode == -signal.SIGKILL

    # As the restarted server finds the file, before anything of mmchat opens it.
    with contextlib.closing(sqlite3.connect(data / DATABASE_NAME)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []

    restarted = App(model, data, tmp_path / "restarted.log")
    try:
        chat = restarted.client().predict(conversation_id, api_name="/on_load")[0]
    finally:
        restarted.stop()
    assert texts(chat) == [
        ("user", questions[0]), ("assistant", answers[0].strip()),
        ("user", questions[1]), ("assistant", answers[1].strip()),
        ("user", questions[2]), ("assistant", "*(stopped)*"),
    ]
    with SQLiteStore(data) as store:
        saved = store.load(conversation_id)
    assert [(t.role, t.status, t.text) for t in saved.turns] == [
        ("user", "complete", questions[0]), ("assistant", "complete", answers[0]),
        ("user", "complete", questions[1]), ("assistant", "complete", answers[1]),
        # Saved when it was asked, not while it streamed: kept, marked interrupted, empty.
        ("user", "complete", questions[2]), ("assistant", "interrupted", ""),
    ]
    assert Path(saved.turns[0].images[0].path).read_bytes() == photo.read_bytes()
    assert "Traceback" not in restarted.output()
