"""The trained shapes-vlm answers real questions through the app's own engine, turn loop and page handlers.

Every check asks about photos whose answers differ, so it fails if a photo were dropped,
swapped, mangled or lost from the history (see tests/fixtures/shapes-vlm/README.md).
"""

from __future__ import annotations

import pytest

from conftest import make_services
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.config import Config
from mmchat.engine import GenerationParams
from mmchat.engine.local import create_local_engine
from mmchat.store.legacy import ConversationStore
from mmchat.turn.session import ChatSession
from mmchat.turn import UserInput, edit_last, regenerate, submit
from mmchat.web.chat import ChatHandlers


GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)
WHICH = "Which image has the {}, the first or the second?"


def _engine(quantization: str):
    return create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization=quantization))


@pytest.fixture(scope="module", params=["none", "nf4", "int4"])
def shapes_engine(request):
    """The same checkpoint in full precision and in bitsandbytes NF4 (vision tower and lm_head kept)."""
    return _engine(request.param)


@pytest.fixture
def chat(config, shapes_engine):
    services = make_services(config, shapes_engine)
    return ChatSession(ConversationStore(config.data_dir)), services


def _photo(tmp_path, name, shape, colour, position="left", count=1, word="CAT"):
    path = tmp_path / f"{name}.png"
    draw_test_image(shape, colour, position, count=count, word=word).save(path)
    return str(path)


def _answer(events) -> str:
    events = list(events)
    assert events[-1].status == "complete", events
    return events[-1].text.strip()


@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_one_photo_gets_its_colour(chat, tmp_path, colour):
    session, services = chat
    photo = _photo(tmp_path, "p", "circle", colour)
    assert _answer(submit(session, UserInput("What colour is the shape?", (photo,)), services, GREEDY)) == colour


@pytest.mark.parametrize("shape", ["circle", "triangle"])
def test_a_follow_up_without_a_photo_is_answered_from_the_history(chat, tmp_path, shape):
    session, services = chat
    photo = _photo(tmp_path, "p", shape, "red", count=2)
    assert _answer(submit(session, UserInput("What colour is the shape?", (photo,)), services, GREEDY)) == "red"
    assert _answer(submit(session, UserInput("What shape was it?"), services, GREEDY)) == shape


def test_two_photos_in_one_turn_keep_their_order(chat, tmp_path):
    session, services = chat
    triangle = _photo(tmp_path, "t", "triangle", "green")
    square = _photo(tmp_path, "s", "square", "green")
    question = WHICH.format("triangle")
    assert _answer(submit(session, UserInput(question, (triangle, square)), services, GREEDY)) == "the first"
    session.new_chat()
    assert _answer(submit(session, UserInput(question, (square, triangle)), services, GREEDY)) == "the second"


def test_image_order_and_history_survive_regenerate_and_edit(chat, tmp_path):
    session, services = chat
    triangle = _photo(tmp_path, "t", "triangle", "blue")
    square = _photo(tmp_path, "s", "square", "blue")
    assert _answer(submit(session, UserInput(WHICH.format("triangle"), (triangle, square)), services, GREEDY)) == "the first"
    assert _answer(regenerate(session, services, GREEDY)) == "the first"
    assert _answer(edit_last(session, WHICH.format("square"), services, GREEDY)) == "the second"
    assert [t.role for t in session.conversation.turns] == ["user", "assistant"]


def test_history_survives_regenerate_and_edit_of_a_follow_up(chat, tmp_path):
    session, services = chat
    photo = _photo(tmp_path, "p", "star", "yellow", position="right")
    assert _answer(submit(session, UserInput("What shape is it?", (photo,)), services, GREEDY)) == "star"
    # Turn 2 has no photo: each answer below needs turn 1's photo from the history.
    assert _answer(submit(session, UserInput("What colour was it?"), services, GREEDY)) == "yellow"
    assert _answer(regenerate(session, services, GREEDY)) == "yellow"
    assert _answer(edit_last(session, "What shape was it?", services, GREEDY)) == "star"
    assert [t.role for t in session.conversation.turns] == ["user", "assistant"] * 2


def test_the_page_handlers_answer_about_the_uploaded_photo(config, shapes_engine, tmp_path):
    handlers = ChatHandlers(make_services(config, shapes_engine))
    session, *_ = handlers.on_load("")
    photo = _photo(tmp_path, "p", "star", "purple")
    *_, last = handlers.on_submit(session, {"text": "What colour is the shape?", "files": [photo]}, False, None,
                                  8, 0.0, False, "auto", 1.0, progress=None)
    chat, announcement = last.chat, last.announcement
    assert chat[-1] == {"role": "assistant", "content": "purple"}
    assert announcement == "purple"
    # A follow-up with no photo, and two photos in one message, through the same handlers.
    *_, last = handlers.on_submit(session, {"text": "What shape was it?", "files": []}, False, None,
                                  8, 0.0, False, "auto", 1.0, progress=None)
    assert last.chat[-1] == {"role": "assistant", "content": "star"}
    handlers.on_new_chat(session)
    circle = _photo(tmp_path, "c", "circle", "red")
    *_, last = handlers.on_submit(session, {"text": WHICH.format("star"), "files": [circle, photo]}, False, None,
                                  8, 0.0, False, "auto", 1.0, progress=None)
    assert last.chat[-1] == {"role": "assistant", "content": "the second"}
