"""The page's handlers, called as plain functions on a real fixture model."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from conftest import last as _last, make_services, voice_services_for, with_config
from fixture_models import draw_test_image
from mmchat.config import parse_config
from mmchat.engine.local import create_local_engine
from mmchat.errors import ModelUnavailableError
from mmchat.model_handle import ModelHandle
from mmchat.turn import Services
from mmchat.web.chat import ChatHandlers
from mmchat.web.page import build_ui
from mmchat.web.settings import SettingsHandlers, model_title
from mmchat.web.view import EDIT_LABEL, MESSAGE_LABEL, render

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def handlers(services):
    return ChatHandlers(services)


QUIET = (12, 0.0, False, "auto", 1.0)  # max tokens, temperature, speak, voice, rate


def _submit(handlers, session, message, editing=False, reviewed=None, settings=QUIET):
    return handlers.on_submit(session, message, editing, reviewed, *settings, progress=None)


def _ask(handlers, session, text, files=(), editing=False):
    return _last(_submit(handlers, session, {"text": text, "files": list(files)}, editing))


def test_submit_shows_the_question_then_the_answer_and_clears_the_box(handlers, photos):
    session, *_ = handlers.on_load("")
    updates = list(_submit(handlers, session, {"text": "What is it?", "files": [str(photos[0])]}))
    first_chat, first_box = updates[0].chat, updates[0].box
    # the question shows before any answer; its reply is there, empty, and not marked stopped
    assert [m["role"] for m in first_chat] == ["user", "assistant"] and first_chat[1]["content"] == ""
    assert first_box["value"] is None
    assert updates[0].stop["elem_classes"] == []  # Stop while the answer is written
    last = updates[-1]
    chat, announcement, export, editing, saved_id, stop = (
        last.chat, last.announcement, last.export, last.editing, last.conversation_id, last.stop)
    assert stop["elem_classes"] == ["idle"]  # ...and gone once it is done (unless it is still spoken)
    assert export["interactive"] is True
    export = handlers.on_export(session)["value"]  # the .zip, written when Export is pressed
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert chat[0]["content"][0]["path"].endswith(".png")
    assert announcement == session.conversation.turns[-1].text  # announced once, whole
    with zipfile.ZipFile(export) as archive:
        assert "What is it?" in archive.read(f"{Path(export).stem}/conversation.md").decode()
    assert saved_id == session.conversation.id and editing is False


def test_describe_choices_are_kept_per_person(services):
    settings = SettingsHandlers(services)
    ann, bob = gr.Request(username="ann"), gr.Request(username="bob")
    settings.on_describe_choice("Read text", "Detailed", ann)
    task, verbosity, _language = settings.on_page_menus("auto", ann)
    assert (task["value"], verbosity["value"]) == ("Read text", "Detailed")
    task, verbosity, _language = SettingsHandlers(services).on_page_menus("auto", ann)  # after a restart too
    assert (task["value"], verbosity["value"]) == ("Read text", "Detailed")
    task, verbosity, _language = settings.on_page_menus("auto", bob)  # someone else: the defaults
    assert (task["value"], verbosity["value"]) == ("Describe", "Brief")


def test_a_refused_message_stays_in_the_box_for_fixing(handlers):
    session, _chat, _id, export, _timings = handlers.on_load("")
    assert export == {"__type__": "update", "interactive": False}  # nothing to export
    assert handlers.on_export(session) == gr.skip()  # and pressed, it writes no file
    message = {"text": "x" * 50_000, "files": []}
    view = _last(_submit(handlers, session, message))
    chat, box, announcement = view.chat, view.box, view.announcement
    assert chat == []
    assert box["value"] == message
    assert "50,000 characters" in announcement


def test_a_refusal_is_said_in_the_pages_language(handlers):
    session, *_ = handlers.on_load("")
    session.language = "zh-CN"
    view = _last(_submit(handlers, session, {"text": "x" * 50_000, "files": []}))
    chat, announcement = view.chat, view.announcement
    assert chat == [] and announcement == "你的消息有 50,000 个字符，上限是 8,000。请缩短一些。"
    announcement_of_empty = _last(_submit(handlers, session, {"text": "  ", "files": []})).announcement
    assert announcement_of_empty == "请输入或说出一个问题。"


def test_a_restart_brings_the_conversation_back(handlers, services, photos):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Remember this", [str(photos[0])])
    restarted = ChatHandlers(services)  # a new server process reads the same data folder
    restored, chat, saved_id, export, _timings = restarted.on_load(session.conversation.id)
    assert restored.conversation.turns == session.conversation.turns
    assert chat == render(session.conversation)
    assert restarted.on_load("../../etc/passwd")[0].conversation.turns == []  # ids from the browser are checked


def test_edit_button_then_submit_edits_the_last_question(handlers, photos):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Old", [str(photos[0])])
    box, editing = handlers.on_edit_button(session)
    assert box["value"]["text"] == "Old" and editing is True
    _ask(handlers, session, "New", editing=True)
    assert [t.text for t in session.conversation.turns[:1]] == ["New"]
    assert len(session.conversation.turns[0].images) == 1 and len(session.conversation.turns) == 2


def test_regenerate_and_new_chat(handlers):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Hi")
    view = _last(handlers.on_regenerate(session, *QUIET))
    chat, announcement = view.chat, view.announcement
    assert len(chat) == 2 and announcement == session.conversation.turns[-1].text
    old_id = session.conversation.id
    view = handlers.on_new_chat(session)
    chat, saved_id = view.chat, view.conversation_id
    assert chat == [] and session.conversation.turns == [] and saved_id != old_id


def _choose(handlers, session, value):
    """What the chat sends when an option under the last answer is pressed."""
    return handlers.on_version(session, gr.SelectData(None, {"index": 0, "value": value}))


def test_regenerate_keeps_the_earlier_answers_and_the_switcher_brings_one_back(handlers, services):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Hi")
    from mmchat.conversation import TextPart

    session.conversation.turns[-1].parts = [TextPart("The first answer")]  # told apart from what comes next
    view = _last(handlers.on_regenerate(session, *QUIET))
    second = session.conversation.turns[-1].text
    assert len(view.chat) == 2 and second != "The first answer"
    assert view.chat[-1]["options"] == [{"label": "‹ Answer 1 of 2", "value": "version:0"}]  # the newest is shown
    _last(handlers.on_regenerate(session, *QUIET))
    assert render(session.conversation)[-1]["options"] == [{"label": "‹ Answer 2 of 3", "value": "version:1"}]

    chat, _, announcement, *_ = _choose(handlers, session, "version:0")
    assert chat[-1]["content"] == "The first answer" and announcement == "Showing answer 1 of 3."
    assert chat[-1]["options"] == [{"label": "Answer 2 of 3 ›", "value": "version:1"}]
    # The one shown is the one the model is given, and the one saved (with the others).
    assert session.conversation.to_openai()[-1]["content"] == "The first answer"
    stored = services.open_store().load(session.conversation.id).turns[-1]
    assert stored.text == "The first answer" and [v.text for v in stored.versions()][1:] == [second, second]
    chat, *_ = _choose(handlers, session, "version:2")
    assert chat[-1]["options"] == [{"label": "‹ Answer 2 of 3", "value": "version:1"}]
    # Not a version there is: a message, and nothing changes.
    chat, _, announcement, *_ = _choose(handlers, session, "version:7")
    assert "Wait for the answer" in announcement and chat[-1]["content"] == second
    # A new question: the switcher is the last answer's only (Regenerate is too); the versions stay kept.
    _ask(handlers, session, "And then?")
    assert not [m for m in render(session.conversation) if "options" in m]
    assert len(session.conversation.turns[1].other_versions) == 2


def test_the_same_words_twice_are_announced_twice(handlers):
    """The page announces when the announcement's number changes: the same answer again must change it."""
    session, *_ = handlers.on_load("")
    first = _ask(handlers, session, "Hi")
    again = _last(handlers.on_regenerate(session, *QUIET))  # temperature 0: the same answer
    assert first.announcement == again.announcement == session.conversation.turns[-1].text
    assert isinstance(first.announcement_number, int) and isinstance(again.announcement_number, int) \
        and first.announcement_number != again.announcement_number


def test_model_status_reports_ready_with_the_models_name_not_its_path(services):
    text, timer = SettingsHandlers(services).model_status()
    path = services.engine.wait().name  # the fixture's folder
    assert text == f"Model: {Path(path).name} · ready" and path not in text
    assert model_title("Qwen/Qwen3-VL-4B-Instruct") == "Qwen/Qwen3-VL-4B-Instruct"  # a hub id stays whole
    assert model_title("~/models/my-vlm") == "my-vlm"


def test_an_answer_being_written_is_not_marked_stopped_until_stop(handlers):
    session, *_ = handlers.on_load("")
    updates = _submit(handlers, session, {"text": "Tell me a story", "files": []}, settings=(400, 0.0, False, "auto", 1.0))
    streaming = [next(updates).chat for _ in range(4)]  # the question, then the answer growing
    assert all("(stopped)" not in str(chat[-1]["content"]) for chat in streaming)
    shown = streaming[-1][-1]["content"]
    handlers.on_stop(session)
    view = _last(updates)
    chat, announcement = view.chat, view.announcement
    # Nothing the model wrote after Stop is added; the answer says it was stopped.
    assert chat[-1]["content"] == shown + "\n\n*(stopped)*"
    assert announcement == "Stopped. " + shown


def _box_and_editing(updates):
    """What the message box shows and the edit flag after a handler's updates (as the page folds them)."""
    box, editing = {}, None
    for update in updates:
        if isinstance(update.box, dict):
            box.update({k: v for k, v in update.box.items() if k != "__type__"})
        editing = update.editing
    return box, editing


def test_an_edited_message_leaves_the_box_and_edit_mode(handlers):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Old")
    box, editing = handlers.on_edit_button(session)
    assert box["label"] == EDIT_LABEL and editing is True
    box, editing = _box_and_editing(_submit(handlers, session, {"text": "New", "files": []}, editing=True))
    assert [t.text for t in session.conversation.turns if t.role == "user"] == ["New"]
    # Empty and labelled plainly again: the next Enter cannot send "New" once more as a new question.
    assert box == {"value": None, "label": MESSAGE_LABEL} and editing is False


def test_a_refused_edit_stays_in_edit_mode(handlers):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Old")
    handlers.on_edit_button(session)
    message = {"text": "   ", "files": []}
    updates = list(_submit(handlers, session, message, editing=True))
    box, editing = _box_and_editing(updates)
    assert box == {"value": message, "label": EDIT_LABEL} and editing is True
    assert "empty" in updates[-1].announcement
    # still editing: the corrected words replace the last message rather than adding one
    _ask(handlers, session, "Fixed", editing=True)
    assert [t.text for t in session.conversation.turns if t.role == "user"] == ["Fixed"]


def test_a_second_recording_is_refused_not_dropped(config, qwen_engine, speech_to_text, text_to_speech, tmp_path):
    services = voice_services_for(config, qwen_engine, speech_to_text, text_to_speech)
    handlers = ChatHandlers(services)
    session, *_ = handlers.on_load("")
    first, second = (shutil.copy(DATA / "jfk.flac", tmp_path / name) for name in ("one.flac", "two.flac"))
    message = {"text": "", "files": [str(first), str(second)]}
    view = _last(_submit(handlers, session, message))
    chat, box, announcement = view.chat, view.box, view.announcement
    assert "One recording per message" in announcement and "2" in announcement
    assert chat == [] and session.conversation.turns == []  # nothing sent, nothing half-kept
    assert box["value"] == message  # both stay in the box, to remove one


def _unavailable(config, message):
    def load(progress):
        raise ModelUnavailableError(message)

    handle = ModelHandle(load, "model").start()
    try:
        handle.wait()
    except ModelUnavailableError:
        pass
    return Services(config=config, engine=handle)


LOADER_MESSAGE = ("The model X is not on this machine and could not be downloaded. Fix: download it "
                  "elsewhere (`hf download X`) and pass its folder with --model /path/to/folder.")


def test_without_a_model_a_question_gets_one_plain_notice(config, monkeypatch):
    toasts = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: toasts.append(("warning", message)))
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: toasts.append(("info", message)))
    handlers = ChatHandlers(_unavailable(config, LOADER_MESSAGE))
    session, *_ = handlers.on_load("")
    message = {"text": "What colour is the shape?", "files": []}
    view = _last(_submit(handlers, session, message))
    chat, box, announcement = view.chat, view.box, view.announcement
    assert len(toasts) == 1 and toasts[0][0] == "warning"
    assert "`" not in toasts[0][1] and "hf download X" in toasts[0][1]  # toasts show backticks as they are
    assert announcement == toasts[0][1]
    assert chat == [] and box["value"] == message


def test_without_a_model_the_page_says_how_to_try_the_test_model_and_that_works(config, tmp_path):
    status, _ = SettingsHandlers(_unavailable(config, LOADER_MESSAGE)).model_status()
    assert "Model unavailable" in status and "hf download X" in status
    command = re.search(r"`python app\.py (--model [^`]+)`", status)
    assert command, status
    assert all(word in status for word in ("shapes", "colour", "English and Chinese"))
    # The advice works as written: the app's own config, loader and page handlers, and a real answer.
    advised = parse_config(command.group(1).split() + ["--data-dir", str(tmp_path / "advised")])
    engine = create_local_engine(with_config(advised, device="cpu"))
    handlers = ChatHandlers(make_services(with_config(config, model=advised.model), engine))
    session, *_ = handlers.on_load("")
    photo = tmp_path / "shape.png"
    draw_test_image("square", "green", "right").save(photo)
    _ask(handlers, session, "What colour is the shape?", [str(photo)])
    assert session.conversation.turns[-1].text.strip() == "green"


@pytest.mark.parametrize("backend", ["none", "piper"])
def test_the_page_builds_without_the_voice_package(config, qwen_engine, monkeypatch, backend):
    import mmchat.tts.voices

    monkeypatch.setattr(mmchat.tts.voices, "BUNDLED_VOICE_PACKAGE", "not_installed_voice_package")
    services = make_services(with_config(config, tts_backend=backend), qwen_engine)
    demo = build_ui(services)
    voices = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "voice-menu")
    assert [choice[0] for choice in voices.choices] == ["auto"]


def test_an_edit_in_the_chat_also_ends_the_box_edit_mode(handlers):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Old")
    handlers.on_edit_button(session)  # the box holds "Old" for editing ...
    edit = gr.EditData(None, {"index": 0, "previous_value": "Old", "value": "Edited in the chat"})
    # ... but the user edits the message in the chat instead
    box, editing = _box_and_editing(handlers.on_chat_edit(session, True, *QUIET, edit))
    assert [t.text for t in session.conversation.turns if t.role == "user"] == ["Edited in the chat"]
    assert box == {"value": None, "label": MESSAGE_LABEL} and editing is False


def test_an_answer_replaced_by_a_newer_question_does_not_mark_the_newer_answer_stopped(handlers):
    """The first answer's handler ends after the second question came (Enter while it
    streamed): its last view must leave the second answer, still being written, unmarked."""
    session, *_ = handlers.on_load("")
    first = _submit(handlers, session, {"text": "First question", "files": []})
    for update in first:  # up to the first words of the first answer
        if session.conversation.turns[-1].text:
            break
    second = _submit(handlers, session, {"text": "Second question", "files": []})
    next(second)  # the second question and its (empty, unfinished) answer are in the conversation
    chat = _last(first).chat  # the first turn ends: stopped by the second
    assert chat[1]["content"].endswith("*(stopped)*")  # the first answer, kept and marked
    assert "(stopped)" not in chat[3]["content"]  # the second, being written
    second_chat = _last(second).chat
    assert len(second_chat) == 4 and "(stopped)" not in second_chat[3]["content"]


def test_an_empty_message_while_an_answer_is_written_is_refused_and_leaves_it_running(handlers):
    """A second Enter once the box is emptied sends nothing; it must not stop the answer as a new question would."""
    session, *_ = handlers.on_load("")
    updates = handlers.on_submit(session, {"text": "Tell me a story", "files": []}, False, None, 40, 0.0, False,
                                 "auto", 1.0, progress=None)
    for _ in range(4):  # the question, and the answer under way
        next(updates)
    refused = _last(handlers.on_submit(session, {"text": "  ", "files": []}, False, None, *QUIET, progress=None))
    assert refused.announcement == "Please type or say a question."
    _last(updates)
    assert len(session.conversation.turns) == 2 and session.conversation.turns[-1].status == "complete"
