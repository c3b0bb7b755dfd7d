"""The page's Describe: which photo it is about, and the answer, through the real turn layer
with the trained shapes-vlm (the camera's view comes from a real VoiceLoop)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from conftest import make_services, voice_services_for, with_config
from fixture_models import draw_test_image
from mmchat.web.chat import ChatHandlers
from mmchat.web.describe import NEED_TWO, NO_PHOTO, Describer, chosen_task
from mmchat.engine import GenerationParams
from mmchat.events import InputRejected
from mmchat.i18n import say
from mmchat.presets import COMPARE, DESCRIBE, HAPPENING, IDENTIFY, LIGHT, Task, Verbosity
from mmchat.turn.session import ChatSession
from mmchat.turn import UserInput, submit
from mmchat.voice.loop import VoiceLoop
from mmchat.voice.websocket import VoiceLoops

GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)


@pytest.fixture
def scene(tmp_path):
    def draw(shape: str, colour: str) -> str:
        path = tmp_path / f"{shape}-{colour}.png"
        draw_test_image(shape, colour).save(path)
        return str(path)

    return draw


def _done(events) -> object:
    events = list(events)
    assert events[-1].status == "complete", events
    return events[-1]


def test_the_box_photo_then_the_conversations_last_photo(config, shapes_engine, store, scene):
    services = make_services(config, shapes_engine, store)
    describer, session = Describer(ChatHandlers(services), VoiceLoops(lambda s: None)), ChatSession(store)
    identify = Task(IDENTIFY, Verbosity.BRIEF)

    assert _done(describer.events(session, identify, [scene("circle", "red")], GREEDY, None)).text == "red"
    question = session.conversation.turns[0]
    assert question.shown_text == "Identify object and colour (brief)" and len(question.images) == 1
    # A follow-up in words is about the same photo.
    _done(submit(session, UserInput("What shape is it?"), services, GREEDY))
    # Describe again with nothing in the box: the conversation's last photo, sent again.
    assert _done(describer.events(session, identify, [], GREEDY, None)).text == "red"
    assert session.conversation.turns[-2].images[0].path == question.images[0].path
    # A new photo in the box wins over the earlier one: it alone goes with the task.
    _done(describer.events(session, identify, [scene("star", "blue")], GREEDY, None))
    newest = session.conversation.turns[-2]
    assert len(newest.images) == 1 and newest.images[0].path != question.images[0].path


def test_a_task_with_a_new_photo_after_an_earlier_one_is_answered_about_the_new_one(config, shapes_engine, store, scene):
    services = make_services(config, shapes_engine, store)
    describer, session = Describer(ChatHandlers(services), VoiceLoops(lambda s: None)), ChatSession(store)
    identify = Task(IDENTIFY, Verbosity.BRIEF)
    # After a chat of three turns about the earlier photo (the task, a follow-up, the task
    # again), not only after one: shapes-vlm once mixed the two photos' colours here.
    _done(describer.events(session, identify, [scene("circle", "red")], GREEDY, None))
    _done(submit(session, UserInput("What shape is it?"), services, GREEDY))
    _done(describer.events(session, identify, [], GREEDY, None))
    assert _done(describer.events(session, identify, [scene("star", "blue")], GREEDY, None)).text == "blue"


def test_nothing_to_describe_says_what_to_add(config, shapes_engine, store, scene):
    describer = Describer(ChatHandlers(make_services(config, shapes_engine, store)), VoiceLoops(lambda s: None))
    session = ChatSession(store)
    (event,) = describer.events(session, Task(DESCRIBE), [], GREEDY, None)
    assert event == InputRejected(NO_PHOTO)
    (event,) = describer.events(session, Task(COMPARE), [scene("circle", "red")], GREEDY, None)
    assert event == InputRejected(NEED_TWO)
    assert session.conversation.turns == []


def test_compare_takes_the_two_photos_in_order(config, shapes_engine, store, scene):
    describer = Describer(ChatHandlers(make_services(config, shapes_engine, store)), VoiceLoops(lambda s: None))
    session = ChatSession(store)
    first, second = scene("circle", "red"), scene("square", "green")
    list(describer.events(session, Task(COMPARE), [first, second], GREEDY, None))
    images = session.conversation.turns[0].images
    assert [open(i.path, "rb").read() for i in images] == [open(first, "rb").read(), open(second, "rb").read()]


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="the voice fixtures need espeak-ng")
def test_in_voice_mode_it_describes_what_the_camera_sees_now(config, shapes_engine, store, speech_to_text,
                                                             text_to_speech):
    services = voice_services_for(with_config(config, max_new_tokens=8), shapes_engine, speech_to_text,
                                  text_to_speech)
    session = ChatSession(store)
    loops = VoiceLoops(lambda s: VoiceLoop(s, services))
    loops.open(session)
    loop = loops.get(session)
    try:
        describer = Describer(ChatHandlers(services), loops)
        loop.see(np.asarray(draw_test_image("triangle", "yellow").convert("RGB")))
        done = _done(describer.events(session, chosen_task("identify", "brief"), [], GREEDY, None))
        assert done.text == "yellow"
        assert loop.verbosity is Verbosity.BRIEF  # spoken tasks follow the page's choice
        # The light level of the same view, from its pixels.
        light = _done(describer.events(session, Task(LIGHT), [], GREEDY, None))
        assert "brightness" in light.text
        # What is happening: the camera's last seconds, as a clip.
        for colour in ("red", "green", "blue", "yellow", "purple"):
            loop.see(np.asarray(draw_test_image("circle", colour).convert("RGB")))
            time.sleep(0.3)
        _done(describer.clip_events(session, chosen_task("happening", "brief"), [], GREEDY, None))
        assert len(session.conversation.turns[-2].clips) == 1
        assert not list(describer._camera_folder.iterdir())  # the camera's views were stored, then removed
    finally:
        loops.close(session)


def test_what_is_happening_takes_the_box_clip_then_the_conversations_last_clip(config, shapes_engine, store,
                                                                               tmp_path):
    from clips import make_clip

    describer = Describer(ChatHandlers(make_services(config, shapes_engine, store)), VoiceLoops(lambda s: None))
    session = ChatSession(store)
    happening = chosen_task("happening", "normal")
    assert happening.preset is HAPPENING
    (event,) = describer.clip_events(session, happening, [], GREEDY, None)  # no clip anywhere: says what to add
    assert event == InputRejected(say("no_clip", session.language)) and session.conversation.turns == []
    clip = make_clip(tmp_path / "moving.mp4", seconds=2.0, fps=10)
    _done(describer.clip_events(session, happening, [str(clip)], GREEDY, None))
    question = session.conversation.turns[0]
    assert question.shown_text == "What is happening" and len(question.clips) == 1 and question.images == []
    assert question.text == HAPPENING.question(Verbosity.NORMAL)
    _done(describer.clip_events(session, happening, [], GREEDY, None))  # again: the conversation's clip
    assert session.conversation.turns[2].clips[0].path == question.clips[0].path


def test_unknown_menu_values_fall_back_to_the_defaults():
    assert chosen_task("no-such-task", "loud") == Task(DESCRIBE, Verbosity.BRIEF)
    assert chosen_task("read_text", "detailed").tag == "read_text:detailed"
