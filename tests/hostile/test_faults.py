"""Faults: a tab closed mid-answer, the GPU out of memory, a model that can't be loaded,
a full disk and a locked database. None may crash the app, lose a committed turn or
leave a conversation half-written; each says what happened.

Faults that can't be made for real on a test machine are injected, each marked
FAULT INJECTION where it is made: a CUDA out-of-memory error raised by the model's
forward on the CPU, and SQLite's "database or disk is full" raised by the store's
connection at the commit (which runs everywhere; as root the same is also done for real,
on a 2 MB tmpfs filled up). Everything else is real: the served page in headless
Chromium, the app as a subprocess, SQLite locked by a second connection.
"""

from __future__ import annotations

import functools
import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' helpers, as in tests/

from conftest import make_services, with_config  # noqa: E402
from test_api_support import LiveServer, wait_until  # noqa: E402
from test_browser import _ask as ask_on_page, _open, chromium, needs_chromium  # noqa: E402

from mmchat.web.page import build_ui  # noqa: E402


# --- a tab closed mid-answer ---

class StallingEngine:
    """The real engine, except that after its first few pieces the model stalls (as on a
    huge prefill or a busy GPU) until the answer is cancelled: no update reaches Gradio,
    so only mmchat's watch on the page's connection can stop it. Records, for each
    answer (`runs`, in order), when it saw the cancel and when its stream ended."""

    FIRST_PIECES = 3
    STALL_SECONDS = 120.0  # far beyond any bound below: an answer nobody stops is still stalled

    def __init__(self, engine) -> None:
        self._engine = engine
        self.runs: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def streaming(self, count: int = 1) -> bool:
        """Whether `count` answers have started streaming (waiting up to a minute)."""
        return wait_until(lambda: sum(run["streaming"] for run in self.runs) >= count, within=60)

    @property
    def cancel_seen_at(self):
        return self.runs[0]["cancel_seen_at"] if self.runs else None

    @property
    def ended_at(self):
        return self.runs[0]["ended_at"] if self.runs else None

    def stream(self, messages, params, cancel):
        run = {"streaming": False, "cancel_seen_at": None, "ended_at": None}
        self.runs.append(run)
        try:
            for count, item in enumerate(self._engine.stream(messages, params, cancel), 1):
                yield item
                if count == self.FIRST_PIECES:
                    run["streaming"] = True
                    stall_until = time.monotonic() + self.STALL_SECONDS
                    while not cancel.cancelled and time.monotonic() < stall_until:
                        time.sleep(0.02)
                    if cancel.cancelled:
                        run["cancel_seen_at"] = time.monotonic()
        finally:
            run["ended_at"] = time.monotonic()


@pytest.fixture
def stalling_page(config, qwen_engine):
    """The page and the API on one port (mmchat.server's app under uvicorn), answering
    with a model that never ends an answer by itself and stalls after a few pieces."""
    saved_eos = qwen_engine.model.generation_config.eos_token_id
    qwen_engine.model.generation_config.eos_token_id = None
    engine = StallingEngine(qwen_engine)
    services = make_services(with_config(config, max_new_tokens=400), engine)
    try:
        with LiveServer(services, build_ui(services)) as server:
            yield server, engine, services
    finally:
        qwen_engine.model.generation_config.eos_token_id = saved_eos


@needs_chromium
def test_a_tab_closed_mid_answer_stops_the_answer_at_once_and_keeps_it_marked_stopped(stalling_page):
    from playwright.sync_api import expect

    server, engine, services = stalling_page
    with chromium() as page:
        _open(page, server.url + "/")
        ask_on_page(page, "What is in this photo?")
        assert engine.streaming(), "the answer never started"
        expect(page.locator('[data-testid="bot"]').last).not_to_have_text("", timeout=30_000)
        # While the tab is open the answer goes on, however long the model takes.
        page.wait_for_timeout(1500)
        assert engine.cancel_seen_at is None and engine.ended_at is None
        closed_at = time.monotonic()
        page.close()  # the tab goes; its browser is still running
        # A bound, not a measurement: unstopped, the model stalls for two minutes.
        assert wait_until(lambda: engine.ended_at is not None, within=15), \
            "the answer of a closed tab was still being generated"
        assert engine.cancel_seen_at is not None, "the answer ended without being cancelled"
        print(f"closed tab -> cancel seen in {engine.cancel_seen_at - closed_at:.2f} s")

    store = services.store

    def saved_stopped():
        (summary,) = store.list_conversations()
        turns = store.load(summary.id).turns
        return len(turns) == 2 and "done" in turns[-1].timings  # the answer's final save, not its placeholder

    assert wait_until(saved_stopped, within=15)
    (summary,) = store.list_conversations()
    question, answer = store.load(summary.id).turns
    assert question.role == "user" and question.text == "What is in this photo?"
    assert answer.role == "assistant" and answer.status == "interrupted"
    assert answer.text.strip(), "what was written before the tab closed is kept"


@needs_chromium
def test_closing_one_persons_tab_stops_only_their_answer(stalling_page):
    from playwright.sync_api import expect

    from test_browser import two_chromiums

    server, engine, services = stalling_page
    with two_chromiums() as (first, second):
        for page in (first, second):
            _open(page, server.url + "/")
        ask_on_page(first, "First person's question")
        assert engine.streaming(1), "the first answer never started"
        ask_on_page(second, "Second person's question")
        expect(second.locator('[data-testid="bot"]').last).to_contain_text("ahead of you", timeout=30_000)
        first.close()
        # The first person's answer stops, so the second person's (in line behind it) starts...
        assert engine.streaming(2), "the second answer never started"
        assert engine.runs[0]["cancel_seen_at"] is not None
        # ...and goes on: the closed tab stopped nothing of anyone else's.
        second.wait_for_timeout(1500)
        assert engine.runs[1]["cancel_seen_at"] is None and engine.runs[1]["ended_at"] is None
        expect(second.locator('[data-testid="bot"]').last).not_to_contain_text("ahead of you")
        second.keyboard.press("Escape")
        assert wait_until(lambda: engine.runs[1]["ended_at"] is not None, within=15)


@needs_chromium
def test_a_reload_mid_answer_stops_the_old_sessions_answer(stalling_page):
    from playwright.sync_api import expect

    server, engine, services = stalling_page
    with chromium() as page:
        _open(page, server.url + "/")
        ask_on_page(page, "Describe it")
        assert engine.streaming(), "the answer never started"
        page.reload(wait_until="load")
        assert wait_until(lambda: engine.cancel_seen_at is not None, within=15)
        # The reloaded page shows the conversation, its answer marked stopped.
        expect(page.locator('[data-testid="bot"]').last).to_contain_text("(stopped)", timeout=30_000)
        expect(page.locator('[data-testid="user"]').last).to_contain_text("Describe it")


# --- the GPU runs out of memory on a huge request ---

HUGE_PROMPT_TOKENS = 600  # a prompt longer than this "does not fit in the GPU"
HUGE_QUESTION = "Describe every detail of this shape, " * 120  # ~4,400 characters, well past 600 tokens


@pytest.fixture
def out_of_memory_on_huge_prompts(shapes_engine, monkeypatch):
    """FAULT INJECTION: the model's forward raises torch.cuda.OutOfMemoryError (what a GPU
    raises when a prefill does not fit) for a prompt over HUGE_PROMPT_TOKENS tokens, and
    runs as usual otherwise. A list of the prompt lengths it refused."""
    import torch

    model = shapes_engine.model
    forward = model.forward
    refused: list[int] = []

    @functools.wraps(forward)  # generate() reads the forward's signature to check its arguments
    def forward_that_runs_out_of_memory(*args, **kwargs):
        tokens = kwargs.get("input_ids")
        length = tokens.shape[-1] if tokens is not None else kwargs["inputs_embeds"].shape[-2]
        if length > HUGE_PROMPT_TOKENS:
            refused.append(length)
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 38.00 GiB (prompt of {length} tokens)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward_that_runs_out_of_memory)
    if getattr(shapes_engine, "prefix", None) is not None:
        shapes_engine.prefix.clear()  # no earlier test's cached prompt may answer instead of forward
    return refused


def _shapes_services(config, shapes_engine, store):
    return make_services(with_config(config, max_new_tokens=8), shapes_engine, store)


def _photo_question(tmp_path, text="What colour is the shape?"):
    from fixture_models import draw_test_image

    path = tmp_path / "red-circle.png"
    draw_test_image("circle", "red", "left").save(path)
    return text, str(path)


def test_out_of_memory_on_a_huge_question_says_so_takes_it_back_and_the_model_answers_the_next(
        config, shapes_engine, store, tmp_path, out_of_memory_on_huge_prompts):
    """Before any of the answer was written, a question that does not fit in the GPU is
    refused like one too long: the conversation is as it was (so the next question's
    history does not carry it into the same failure), and the message says what to change.
    (Out of memory after part of an answer keeps that part, marked failed: tests/test_turn.py.)"""
    from mmchat.events import InputRejected, TurnDone
    from mmchat.turn.session import ChatSession
    from mmchat.turn import OUT_OF_MEMORY, UserInput, submit

    services = _shapes_services(config, shapes_engine, store)
    params = _params(services)
    session = ChatSession(store)
    text, photo = _photo_question(tmp_path)
    (done,) = [e for e in submit(session, UserInput(text, (photo,)), services, params) if isinstance(e, TurnDone)]
    assert done.status == "complete" and done.text.strip() == "red"
    committed = [(t.role, t.text, t.status) for t in store.load(session.conversation.id).turns]

    events = list(submit(session, UserInput(HUGE_QUESTION + text, (photo,)), services, params))
    assert out_of_memory_on_huge_prompts, "the huge question never reached the model"
    refusal = events[-1]
    assert isinstance(refusal, InputRejected) and refusal.key == OUT_OF_MEMORY
    assert "ran out of memory" in refusal.message and "fewer or smaller photos" in refusal.message
    for conversation in (session.conversation, store.load(session.conversation.id)):
        assert [(t.role, t.text, t.status) for t in conversation.turns] == committed

    # The model keeps serving: the next question, of a normal size, is answered correctly.
    (done,) = [e for e in submit(session, UserInput("What shape is it?", (photo,)), services, params)
               if isinstance(e, TurnDone)]
    assert done.status == "complete" and done.text.strip() == "circle"
    assert len(out_of_memory_on_huge_prompts) == 1
    assert [t.status for t in store.load(session.conversation.id).turns] == ["complete"] * 4


def test_out_of_memory_through_the_page_warns_puts_the_question_back_and_the_next_is_answered(
        config, shapes_engine, store, tmp_path, out_of_memory_on_huge_prompts):
    from mmchat.web.chat import ChatHandlers

    handlers = ChatHandlers(_shapes_services(config, shapes_engine, store))
    session, *_ = handlers.on_load("")
    text, photo = _photo_question(tmp_path)
    huge = {"text": HUGE_QUESTION + text, "files": [photo]}
    *_, last = handlers.on_submit(session, huge, False, None, *QUIET, progress=None)
    chat, box, announcement = last.chat, last.box, last.announcement
    assert "ran out of memory" in announcement
    assert chat == [] and box["value"] == huge  # the question is back in the box, to shorten
    *_, last = handlers.on_submit(session, {"text": text, "files": [photo]}, False, None, *QUIET, progress=None)
    assert last.announcement.strip() == "red"  # the answer, announced
    assert [m["role"] for m in last.chat] == ["user", "assistant"]


def test_out_of_memory_through_the_api_is_a_json_413_and_the_next_request_is_answered(
        config, shapes_engine, tmp_path, out_of_memory_on_huge_prompts):
    """413: the request is larger than the server can take (now); the message says the GPU
    ran out of memory and how to ask so that it fits."""
    import base64

    import httpx

    services = make_services(with_config(config, max_new_tokens=8), shapes_engine)
    text, photo = _photo_question(tmp_path)
    image = "data:image/png;base64," + base64.b64encode(Path(photo).read_bytes()).decode()

    def ask(words):
        content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": words}]
        return httpx.post(server.url + "/v1/chat/completions", timeout=120,
                          json={"model": "shapes", "messages": [{"role": "user", "content": content}]})

    with LiveServer(services) as server:
        failed = ask(HUGE_QUESTION + text)
        assert failed.status_code == 413, failed.text
        error = failed.json()["error"]
        assert error["code"] == "out_of_memory" and "ran out of memory" in error["message"]
        answered = ask(text)
        assert answered.status_code == 200, answered.text
        assert answered.json()["choices"][0]["message"]["content"].strip() == "red"
    assert len(out_of_memory_on_huge_prompts) == 1


QUIET = (8, 0.0, False, "auto", 1.0)  # the page's settings: max tokens, temperature, speak, voice, rate


def _params(services):
    from mmchat.engine import GenerationParams

    return GenerationParams(max_new_tokens=8, temperature=0.0)


# --- a full disk, a locked database ---

class DiskFills:
    """FAULT INJECTION (a full disk anywhere, without the root a small tmpfs needs): the
    store's SQLite connection, except that while `full` its COMMIT fails as SQLite's does
    when the disk is full (SQLITE_FULL, "database or disk is full"). The transaction is
    then rolled back for real, by the store's own code, as after a real full disk."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self.full = False
        self.refused = 0

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def execute(self, sql, *args):
        if self.full and sql.strip().upper() == "COMMIT":
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._connection.execute(sql, *args)


@pytest.fixture
def quick_busy_timeout(monkeypatch):
    """A write waits half a second (not ten) for another program's lock before it gives up."""
    from mmchat.store import schema

    monkeypatch.setattr(schema, "BUSY_SECONDS", 0.5)


def _turns(data_dir, conversation_id):
    """The conversation as a fresh process would find it: the store opened anew."""
    from mmchat.store import SQLiteStore

    with SQLiteStore(data_dir) as reopened:
        conversation = reopened.load(conversation_id)
    return [] if conversation is None else [(t.role, t.text, t.status) for t in conversation.turns]


FOLLOW_UP = "What shape was it?"  # no photo: shapes-vlm answers it from the history's photo


def _ask(session, services, text, photo=None):
    from mmchat.events import Notice, TurnDone
    from mmchat.turn import UserInput, submit

    events = list(submit(session, UserInput(text, (photo,) if photo else ()), services, _params(services)))
    (done,) = [e for e in events if isinstance(e, TurnDone)]
    return done, [e.message for e in events if isinstance(e, Notice)]


def test_a_locked_database_loses_no_committed_turn_says_so_and_saves_once_it_is_free(
        config, shapes_engine, tmp_path, quick_busy_timeout):
    from mmchat.turn.session import ChatSession
    from mmchat.store import SQLiteStore

    store = SQLiteStore(config.data_dir)
    try:
        services = _shapes_services(config, shapes_engine, store)
        session = ChatSession(store)
        text, photo = _photo_question(tmp_path)
        done, notices = _ask(session, services, text, photo)
        assert done.status == "complete" and not notices
        committed = _turns(config.data_dir, session.conversation.id)
        assert len(committed) == 2

        # Another program takes the database and holds it.
        locker = sqlite3.connect(store.path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            # A new photo can't be stored meanwhile (its row is a write): refused, saying why.
            from mmchat.events import InputRejected
            from mmchat.turn import UserInput, submit

            events = list(submit(session, UserInput(text, (photo,)), services, _params(services)))
            assert isinstance(events[-1], InputRejected), events
            assert "could not be stored: the database is busy" in events[-1].message
            assert len(session.conversation.turns) == 2
            # A question in words is answered all the same.
            done, notices = _ask(session, services, FOLLOW_UP)
            assert done.status == "complete" and done.text.strip() == "circle"
            assert notices and all("could not be saved: the database is busy" in n for n in notices), notices
            assert str(config.data_dir) not in notices[0]  # no server paths for the user: the log has them
            # Readers are not blocked (WAL): what was committed reads back, untouched, whole.
            kept = store.load(session.conversation.id)
            assert [(t.role, t.text, t.status) for t in kept.turns] == committed
        finally:
            locker.rollback()
            locker.close()

        # Free again: the next save writes the whole conversation, the unsaved turn too.
        done, notices = _ask(session, services, text, photo)
        assert done.status == "complete" and not notices
        saved = _turns(config.data_dir, session.conversation.id)
        assert saved[:2] == committed and len(saved) == 6
        assert [role for role, *_ in saved] == ["user", "assistant"] * 3
        assert saved[3][1].strip() == "circle" and saved[3][2] == "complete"
    finally:
        store.close()


def test_a_full_disk_loses_no_committed_turn_says_so_and_saves_once_there_is_room(
        config, shapes_engine, tmp_path):
    from mmchat.turn.session import ChatSession
    from mmchat.store import SQLiteStore

    store = SQLiteStore(config.data_dir)
    disk = store._db = DiskFills(store._db)
    try:
        services = _shapes_services(config, shapes_engine, store)
        session = ChatSession(store)
        text, photo = _photo_question(tmp_path)
        done, notices = _ask(session, services, text, photo)
        assert done.status == "complete" and not notices
        committed = _turns(config.data_dir, session.conversation.id)

        disk.full = True
        done, notices = _ask(session, services, FOLLOW_UP)
        assert disk.refused == 2  # the question's save and the answer's
        assert done.status == "complete" and done.text.strip() == "circle"
        assert notices and all("could not be saved: the server's disk is full" in n for n in notices), notices
        assert "saved with the next answer" in notices[0]
        assert _turns(config.data_dir, session.conversation.id) == committed
        # The store is usable meanwhile: what was committed reads back.
        assert [t.text for t in store.load(session.conversation.id).turns] == [t for _, t, _ in committed]

        disk.full = False  # space freed
        done, notices = _ask(session, services, text, photo)
        assert done.status == "complete" and not notices
        saved = _turns(config.data_dir, session.conversation.id)
        assert saved[:2] == committed and [s for *_, s in saved] == ["complete"] * 6
    finally:
        store.close()


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB disk (tmpfs), where the test can mount one (as root); its folder."""
    import os
    import subprocess

    folder = tmp_path / "small-disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (the injected full disk above covers this without)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; the file (delete it to free the space)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing left to fail on close
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_really_full_disk_loses_no_committed_turn_says_so_and_saves_once_there_is_room(
        config, shapes_engine, tmp_path, small_disk):
    from mmchat.turn.session import ChatSession
    from mmchat.store import SQLiteStore

    config = with_config(config, data_dir=small_disk / "data")
    store = SQLiteStore(config.data_dir)
    try:
        services = _shapes_services(config, shapes_engine, store)
        session = ChatSession(store)
        text, photo = _photo_question(tmp_path)
        done, notices = _ask(session, services, text, photo)
        assert done.status == "complete" and not notices
        committed = _turns(config.data_dir, session.conversation.id)

        filler = _fill(small_disk)
        done, notices = _ask(session, services, FOLLOW_UP + " " + "Please answer in one word. " * 200)
        assert done.status == "complete" and done.text.strip()  # answered all the same
        assert notices and "could not be saved: the server's disk is full" in notices[-1], notices
        assert [(t.role, t.text, t.status) for t in store.load(session.conversation.id).turns] == committed

        filler.unlink()  # space freed
        done, notices = _ask(session, services, text, photo)
        assert done.status == "complete" and not notices
    finally:
        store.close()
    saved = _turns(config.data_dir, session.conversation.id)
    assert saved[:2] == committed and [role for role, *_ in saved] == ["user", "assistant"] * 3


def test_the_page_says_when_the_disk_is_full_and_keeps_serving(config, shapes_engine, tmp_path):
    from mmchat.store import SQLiteStore
    from mmchat.web.chat import ChatHandlers

    store = SQLiteStore(config.data_dir)
    disk = store._db = DiskFills(store._db)
    try:
        handlers = ChatHandlers(_shapes_services(config, shapes_engine, store))
        session, *_ = handlers.on_load("")
        text, photo = _photo_question(tmp_path)
        list(handlers.on_submit(session, {"text": text, "files": [photo]}, False, None, *QUIET, progress=None))
        committed = _turns(config.data_dir, session.conversation.id)
        assert len(committed) == 2

        disk.full = True
        updates = list(handlers.on_submit(session, {"text": FOLLOW_UP, "files": []}, False, None,
                                          *QUIET, progress=None))
        announced = [update.announcement for update in updates if isinstance(update.announcement, str)]
        assert any("could not be saved: the server's disk is full" in words for words in announced), announced
        chat = updates[-1].chat
        assert [m["role"] for m in chat] == ["user", "assistant"] * 2  # the page shows the whole conversation
        assert announced[-1].strip() == "circle"  # and the answer
        assert _turns(config.data_dir, session.conversation.id) == committed

        disk.full = False
        *_, last = handlers.on_submit(session, {"text": text, "files": [photo]}, False, None, *QUIET, progress=None)
        assert last.announcement.strip() == "red"
        assert len(_turns(config.data_dir, session.conversation.id)) == 6
        # A reload (a new session for this browser) opens all of it.
        _, chat, *_ = handlers.on_load(session.conversation.id)
        assert [m["role"] for m in chat] == ["user", "assistant"] * 3
    finally:
        store.close()


# --- a model that can't be loaded ---

ROOT = Path(__file__).resolve().parents[2]


class _App:
    """`python app.py ARGS` as a user runs it, on a free port, its output in a log file."""

    def __init__(self, tmp_path, *args) -> None:
        import subprocess

        from test_api_support import free_port

        self.port = free_port()
        self.log = tmp_path / "app.log"
        command = [sys.executable, "app.py", "--port", str(self.port), "--data-dir", str(tmp_path / "data"),
                   "--device", "cpu", "--stt-backend", "none", "--tts-backend", "none", *args]
        self._out = open(self.log, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, words: str, within: float = 180) -> str:
        def said() -> bool:
            assert self.process.poll() is None, f"the app ended:\n{self.log.read_text()}"
            return words in self.log.read_text()

        assert wait_until(said, within), f"the app never said {words!r}:\n{self.log.read_text()}"
        return self.log.read_text()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._out.close()


def _served_app(tmp_path, *args):
    import socket

    def listening() -> bool:
        assert app.process.poll() is None, f"the app ended:\n{app.log.read_text()}"
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", app.port)) == 0

    app = _App(tmp_path, *args)
    try:
        # The line comes as uvicorn starts, a moment before its socket listens: a model that
        # fails at once (a missing folder) is said before the API can be asked.
        app.wait_for("Serving the page")
        assert wait_until(listening, 60), f"the app never listened:\n{app.log.read_text()}"
        return app
    except BaseException:
        app.close()
        raise


def _chat_refusal(url):
    import httpx

    response = httpx.post(url + "/v1/chat/completions", timeout=60,
                          json={"model": "any", "messages": [{"role": "user", "content": "Hello?"}]})
    return response.status_code, response.json()["error"]


def test_a_model_folder_that_does_not_exist_is_a_clear_start_up_error_and_the_api_says_503(tmp_path):
    app = _served_app(tmp_path, "--model", "/nonexistent")
    try:
        log = app.wait_for("--model /nonexistent: that is not a folder with a model in it.")
        assert "Traceback" not in log  # a message written for people, not a crash
        status, error = _chat_refusal(app.url)
        assert status == 503 and error["code"] == "model_unavailable"
        assert "/nonexistent: that is not a folder with a model in it" in error["message"]
        assert app.process.poll() is None  # still serving
    finally:
        app.close()


@pytest.fixture
def damaged_model(tmp_path):
    """shapes-vlm with its weights file cut off after 1,000 bytes (an interrupted download)."""
    import shutil

    from fixture_models import shapes_vlm_path

    folder = tmp_path / "damaged-model"
    shutil.copytree(shapes_vlm_path(), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return folder


@needs_chromium
def test_a_damaged_weights_file_is_named_in_the_log_the_page_and_the_api(tmp_path, damaged_model):
    from playwright.sync_api import expect

    app = _served_app(tmp_path, "--model", str(damaged_model))
    try:
        log = app.wait_for("Loading the model failed")
        assert "one of its weights files is damaged or incomplete" in log and "Download the model again" in log
        status, error = _chat_refusal(app.url)
        assert status == 503 and "weights files is damaged" in error["message"]
        with chromium() as page:
            page.goto(app.url + "/", wait_until="load", timeout=60_000)
            expect(page.locator("#model-status")).to_contain_text("one of its weights files is damaged",
                                                                  timeout=30_000)
            # A question now is refused with the reason; the page goes on working.
            ask_on_page(page, "Hello?")
            expect(page.locator("#mmchat-live")).to_contain_text("weights files is damaged", timeout=30_000)
        assert app.process.poll() is None
    finally:
        app.close()


def test_a_config_json_that_is_not_json_is_named_in_the_page_status(config, tmp_path):
    import shutil

    from fixture_models import shapes_vlm_path
    from mmchat.engine.local import create_local_engine
    from mmchat.model_handle import ModelHandle
    from mmchat.turn import Services

    folder = tmp_path / "bad-config"
    shutil.copytree(shapes_vlm_path(), folder)
    (folder / "config.json").write_text('{"model_type": "qwen3_vl",', encoding="utf-8")  # cut off
    settings = with_config(config, model=str(folder), quantization="none")
    engine = ModelHandle(lambda progress: create_local_engine(settings, progress), "model").start()
    assert engine.loaded(120)
    from mmchat.web.settings import SettingsHandlers

    status, timer = SettingsHandlers(Services(config=settings, engine=engine)).model_status()
    assert "config.json" in status and "not valid JSON" in status and "Download the model again" in status


def test_the_page_on_a_really_full_disk_says_so_and_keeps_serving(config, shapes_engine, tmp_path, small_disk):
    from mmchat.store import SQLiteStore
    from mmchat.web.chat import ChatHandlers

    config = with_config(config, data_dir=small_disk / "data")
    store = SQLiteStore(config.data_dir)
    try:
        handlers = ChatHandlers(_shapes_services(config, shapes_engine, store))
        session, *_ = handlers.on_load("")
        text, photo = _photo_question(tmp_path)
        list(handlers.on_submit(session, {"text": text, "files": [photo]}, False, None, *QUIET, progress=None))
        committed = _turns(config.data_dir, session.conversation.id)
        assert len(committed) == 2

        filler = _fill(small_disk)
        updates = list(handlers.on_submit(session, {"text": FOLLOW_UP, "files": []}, False, None,
                                          *QUIET, progress=None))
        announced = [update.announcement for update in updates if isinstance(update.announcement, str)]
        assert any("could not be saved: the server's disk is full" in words for words in announced), announced
        assert [m["role"] for m in updates[-1].chat] == ["user", "assistant"] * 2
        filler.unlink()
        *_, last = handlers.on_submit(session, {"text": text, "files": [photo]}, False, None, *QUIET, progress=None)
        assert last.announcement.strip() == "red"
    finally:
        store.close()
    assert len(_turns(config.data_dir, session.conversation.id)) == 6
