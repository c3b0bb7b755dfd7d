"""The page's handlers, called as plain functions on a real fixture model."""

from __future__ import annotations

import pytest

from mmchat.ui import ChatHandlers, render


def _last(generator):
    result = None
    for result in generator:
        pass
    return result


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
    first_chat, first_box = updates[0][0], updates[0][1]
    assert [m["role"] for m in first_chat] == ["user"]  # the question shows before any answer
    assert first_box["value"] is None
    chat, _, announcement, export, editing, saved_id, _, _ = updates[-1]
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert chat[0]["content"][0]["path"].endswith(".png")
    assert announcement == session.conversation.turns[-1].text  # announced once, whole
    assert export.endswith(".md") and "What is it?" in open(export).read()
    assert saved_id == session.conversation.id and editing is False


def test_a_refused_message_stays_in_the_box_for_fixing(handlers):
    session, *_ = handlers.on_load("")
    message = {"text": "x" * 50_000, "files": []}
    chat, box, announcement, *_ = _last(_submit(handlers, session, message))
    assert chat == []
    assert box["value"] == message
    assert "50,000 characters" in announcement


def test_a_restart_brings_the_conversation_back(handlers, services, photos):
    session, *_ = handlers.on_load("")
    _ask(handlers, session, "Remember this", [str(photos[0])])
    restarted = ChatHandlers(services)  # a new server process reads the same data folder
    restored, chat, saved_id, export = restarted.on_load(session.conversation.id)
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
    chat, _, announcement, *_ = _last(handlers.on_regenerate(session, *QUIET))
    assert len(chat) == 2 and announcement == session.conversation.turns[-1].text
    old_id = session.conversation.id
    chat, _, _, _, _, saved_id, _, _ = handlers.on_new_chat(session)
    assert chat == [] and session.conversation.turns == [] and saved_id != old_id


def test_model_status_reports_ready_with_the_model_name(handlers, services):
    text, timer = handlers.model_status()
    assert "Model:" in text and services.engine.wait().name in text


def test_an_answer_being_written_is_not_marked_stopped_until_stop(handlers):
    session, *_ = handlers.on_load("")
    updates = _submit(handlers, session, {"text": "Tell me a story", "files": []}, settings=(400, 0.0, False, "auto", 1.0))
    streaming = [next(updates)[0] for _ in range(4)]  # the question, then the answer growing
    assert all("(stopped)" not in str(chat[-1]["content"]) for chat in streaming)
    shown = streaming[-1][-1]["content"]
    handlers.on_stop(session)
    chat, _, announcement = _last(updates)[:3]
    # Nothing the model wrote after Stop is added; the answer says it was stopped.
    assert chat[-1]["content"] == shown + "\n\n*(stopped)*"
    assert announcement == "Stopped. " + shown
