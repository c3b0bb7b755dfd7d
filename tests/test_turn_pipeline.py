"""The turn pipeline under real concurrency: one cancel per turn at every step, one
admission line for all sessions, one running turn per session, nothing lost.

Every test drives the real turn loop on a real fixture model; other threads play the
other people (a second browser tab, a Stop pressed while tokens flow)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import make_services, voice_services_for, with_config
from mmchat.turn.admission import Admission
from mmchat.engine import Completion, GenerationParams
from mmchat.events import AudioChunk, InputRejected, Progress, QuestionAdded, Queued, TextDelta, TurnDone
from mmchat.model_handle import ModelHandle
from mmchat.turn.session import ChatSession
from mmchat.store import SQLiteStore
from mmchat.turn import Services, Speech, UserInput, regenerate, submit

GREEDY = GenerationParams(max_new_tokens=12, temperature=0.0)
ENDLESS = GenerationParams(max_new_tokens=2000, temperature=0.0)  # runs until stopped
WORKERS = ("mmchat-generate", "mmchat-speak", "mmchat-answer-text", "mmchat-transcribe")


def still_running(names=WORKERS, within: float = 20.0) -> list[str]:
    """The worker threads by these names that have not ended after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = [t.name for t in threading.enumerate() if t.name in names and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


class Consumer(threading.Thread):
    """Drives a turn on its own thread, as Gradio does for a browser tab; can be paused
    after a given event (a slow connection) and records everything it saw."""

    def __init__(self, events, pause_after=None) -> None:
        super().__init__(daemon=True)
        self.events = events
        self.seen: list = []
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()

    def run(self) -> None:
        for event in self.events:
            self.seen.append(event)
            if self.pause_after is not None and isinstance(event, self.pause_after) and not self.resume.is_set():
                self.paused.set()
                self.resume.wait(60)

    def wait_for(self, kind, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in list(self.seen) if isinstance(e, kind)]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {[type(e).__name__ for e in self.seen]}")


@pytest.fixture
def one_at_a_time(config, qwen_engine) -> Services:
    return make_services(with_config(config, concurrency=1), qwen_engine)


def new_session(store: SQLiteStore) -> ChatSession:
    """Another tab's session: every tab's conversations go to the one store, as in the app."""
    return ChatSession(store)


def stored_files(store: SQLiteStore) -> list:
    return sorted(store.media.root.glob("??/*"))


# --- one admission line ---

def test_an_answer_beyond_the_limit_waits_its_place_in_line_then_runs(one_at_a_time, store):
    first, second = new_session(store), new_session(store)
    a = Consumer(submit(first, UserInput("Tell a story"), one_at_a_time, ENDLESS), pause_after=TextDelta)
    a.start()
    assert a.paused.wait(60)  # A holds the only place, mid-answer
    b = Consumer(submit(second, UserInput("Hello"), one_at_a_time, GREEDY))
    b.start()
    assert b.wait_for(Queued).ahead == 1
    assert not any(isinstance(e, TextDelta) for e in b.seen)
    first.cancel_scope.cancel()  # A's Stop frees the place...
    a.resume.set()
    a.join(60)
    b.join(60)
    assert b.seen[-1].status == "complete"  # ...and B is answered
    assert one_at_a_time.admission.running == 0 and one_at_a_time.admission.waiting == 0


def test_stop_while_waiting_in_line_leaves_the_line_and_never_starts(one_at_a_time, store):
    first, second = new_session(store), new_session(store)
    a = Consumer(submit(first, UserInput("Tell a story"), one_at_a_time, ENDLESS), pause_after=TextDelta)
    a.start()
    assert a.paused.wait(60)
    b = Consumer(submit(second, UserInput("Hello"), one_at_a_time, GREEDY))
    b.start()
    b.wait_for(Queued)
    second.cancel_scope.cancel()
    b.join(60)
    assert not b.is_alive() and b.seen[-1].status == "interrupted"
    assert one_at_a_time.admission.waiting == 0
    assert [t.status for t in second.conversation.turns] == ["complete", "interrupted"]  # kept, marked stopped
    first.cancel_scope.cancel()
    a.resume.set()
    a.join(60)
    assert one_at_a_time.admission.running == 0


def test_a_tab_closed_while_waiting_in_line_gives_up_its_place(one_at_a_time, store):
    first, second = new_session(store), new_session(store)
    a = Consumer(submit(first, UserInput("Tell a story"), one_at_a_time, ENDLESS), pause_after=TextDelta)
    a.start()
    assert a.paused.wait(60)
    waiting = submit(second, UserInput("Hello"), one_at_a_time, GREEDY)
    assert any(isinstance(event, Queued) for event in waiting)  # stops at the first place report
    assert one_at_a_time.admission.waiting == 1
    waiting.close()
    assert one_at_a_time.admission.waiting == 0
    assert second.conversation.turns[-1].status == "interrupted"
    first.cancel_scope.cancel()
    a.resume.set()
    a.join(60)


def test_places_in_line_count_down_first_come_first_served():
    admission = Admission(1)
    holder = admission.enter(_token())
    slot = _run_to_slot(holder)
    second, third = admission.enter(_token()), admission.enter(_token())
    assert next(second) == Queued(1)
    assert next(third) == Queued(2)
    slot.release()
    assert _run_to_slot(second) is not None  # the first in line goes first
    assert next(third) == Queued(1)  # and the one behind moves up


def _token():
    from mmchat.cancel import CancelToken

    return CancelToken.standalone()


def _run_to_slot(entering):
    try:
        while True:
            next(entering)
    except StopIteration as done:
        return done.value


def test_two_sessions_at_once_each_get_their_own_answer(config, qwen_engine, photos, store):
    services = make_services(with_config(config, concurrency=2), qwen_engine)
    sessions = [new_session(store) for _ in range(2)]
    alone = []
    for photo in photos:  # what each question gets when asked alone
        session = new_session(store)
        alone.append([e for e in submit(session, UserInput("Colour?", (str(photo),)), services, GREEDY)][-1].text)
    together = [Consumer(submit(s, UserInput("Colour?", (str(p),)), services, GREEDY)) for s, p in zip(sessions, photos)]
    for consumer in together:
        consumer.start()
    for consumer in together:
        consumer.join(60)
    assert [c.seen[-1].text for c in together] == alone
    assert [s.conversation.turns[-1].text for s in sessions] == alone


# --- one running turn per session ---

def test_a_new_question_while_an_answer_streams_stops_it_and_is_answered(services, store):
    session = new_session(store)
    old = Consumer(submit(session, UserInput("Tell a story"), services, ENDLESS), pause_after=TextDelta)
    old.start()
    assert old.paused.wait(60)
    new = Consumer(submit(session, UserInput("Now this"), services, GREEDY))
    new.start()
    old.resume.set()
    old.join(60)
    new.join(60)
    assert old.seen[-1].status == "interrupted" and new.seen[-1].status == "complete"
    turns = session.conversation.turns
    assert [(t.role, t.status) for t in turns] == [
        ("user", "complete"), ("assistant", "interrupted"), ("user", "complete"), ("assistant", "complete")]
    assert turns[1].text == old.seen[-1].text and turns[3].text == new.seen[-1].text
    assert still_running() == []


def test_regenerate_while_an_answer_streams_never_leaves_two_answers(services, store):
    session = new_session(store)
    list(submit(session, UserInput("First"), services, GREEDY))
    old = Consumer(submit(session, UserInput("Second"), services, ENDLESS), pause_after=TextDelta)
    old.start()
    assert old.paused.wait(60)
    again = Consumer(regenerate(session, services, GREEDY))
    again.start()
    old.resume.set()
    old.join(60)
    again.join(60)
    roles = [t.role for t in session.conversation.turns]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert session.conversation.turns[-1].text == again.seen[-1].text and again.seen[-1].status == "complete"


# --- one cancel per turn, at every step ---

def test_stop_while_the_model_is_still_loading_ends_the_turn(config, qwen_engine, session):
    gate = threading.Event()
    loading = ModelHandle(lambda progress: (gate.wait(60), qwen_engine)[1]).start()
    services = Services(config=config, engine=loading)
    turn = Consumer(submit(session, UserInput("Hi"), services, GREEDY))
    turn.start()
    turn.wait_for(QuestionAdded)
    session.cancel_scope.cancel()
    turn.join(10)
    gate.set()
    assert not turn.is_alive() and turn.seen[-1].status == "interrupted"
    assert [(t.role, t.status) for t in session.conversation.turns] == [("user", "complete"), ("assistant", "interrupted")]


def test_stop_mid_answer_ends_generation_and_its_thread(session, services):
    events = submit(session, UserInput("Tell a story"), services, ENDLESS)
    for event in events:
        if isinstance(event, TextDelta):
            break
    stopper = threading.Thread(target=session.cancel_scope.cancel)  # the Stop button's request
    stopper.start()
    stopper.join()
    done = list(events)[-1]
    assert done.status == "interrupted" and done.completion.finish_reason == "cancelled"
    assert still_running() == []


def test_the_engine_reports_how_the_answer_ended(session, services):
    done = list(submit(session, UserInput("Hi"), services, GenerationParams(max_new_tokens=5, temperature=0.0)))[-1]
    assert isinstance(done.completion, Completion)
    assert done.completion.finish_reason in ("length", "stop") and done.completion.prompt_tokens > 5
    assert done.completion.completion_tokens <= 5


@pytest.fixture
def speaking_services(config, qwen_engine, speech_to_text, text_to_speech):
    return voice_services_for(config, qwen_engine, speech_to_text, text_to_speech)


def test_stop_while_speaking_cuts_speech_and_every_worker_thread_ends(speaking_services, session):
    events = submit(session, UserInput("Tell a story"), speaking_services, ENDLESS, Speech())
    for event in events:
        if isinstance(event, AudioChunk):
            break
    threading.Thread(target=session.cancel_scope.cancel).start()
    rest = list(events)
    assert rest[-1].status == "interrupted"
    assert still_running() == []
    assert session.conversation.turns[-1].status == "interrupted"


def test_a_closed_tab_while_speaking_ends_every_worker_thread(speaking_services, session):
    events = submit(session, UserInput("Tell a story"), speaking_services, ENDLESS, Speech())
    for event in events:
        if isinstance(event, AudioChunk):
            break
    events.close()
    assert still_running() == []
    assert [t.role for t in session.conversation.turns] == ["user", "assistant"]
    assert session.conversation.turns[-1].status == "interrupted"


def test_speech_never_holds_up_the_text(speaking_services, session):
    """All text of a short answer is out before its speech is: the voice runs beside it."""
    events = list(submit(session, UserInput("Say something"), speaking_services,
                         GenerationParams(max_new_tokens=60, temperature=0.0), Speech()))
    kinds = [type(e).__name__ for e in events]
    assert events[-1].status == "complete" and "AudioChunk" in kinds
    spoken = "".join(e.text for e in events if isinstance(e, AudioChunk))
    assert spoken.strip()  # what was heard comes from the answer
    assert still_running() == []


def long_recording(tmp_path) -> str:
    """Three 30 s windows of speech (jfk.flac over and over), for a transcription that takes a while."""
    from pathlib import Path

    from mmchat.media.audio import SAMPLE_RATE, load_audio

    jfk = load_audio(Path(__file__).parent / "data" / "jfk.flac", max_seconds=60)
    samples = np.concatenate([jfk] * 9)
    path = tmp_path / "long.wav"
    sf.write(path, samples, SAMPLE_RATE)
    return str(path)


def test_stop_while_transcribing_ends_the_turn_and_the_transcription(speaking_services, session, tmp_path):
    speaking_services.config = with_config(speaking_services.config, max_audio_seconds=600)
    turn = Consumer(submit(session, UserInput(audio=long_recording(tmp_path)), speaking_services, GREEDY))
    turn.start()
    turn.wait_for(Progress)
    session.cancel_scope.cancel()
    turn.join(10)
    assert not turn.is_alive() and turn.seen[-1] == TurnDone("interrupted", "")
    assert session.conversation.turns == []  # nothing was asked yet
    assert still_running() == []
    assert stored_files(session.store) == []  # the recording was never kept


# --- nothing lost ---

def test_new_chat_during_an_answer_saves_the_conversation_that_was_answered(config, services, store):
    session = new_session(store)
    turn = Consumer(submit(session, UserInput("Tell a story"), services, ENDLESS), pause_after=TextDelta)
    turn.start()
    assert turn.paused.wait(60)
    answered = session.conversation
    session.new_chat()
    turn.resume.set()
    turn.join(60)
    with SQLiteStore(config.data_dir) as reopened:
        saved = reopened.load(answered.id)
    assert saved is not None and [t.role for t in saved.turns] == ["user", "assistant"]
    assert saved.turns[1].status == "interrupted" and saved.turns[1].text == turn.seen[-1].text
    assert session.conversation.turns == []  # the new chat is empty


def test_a_refused_question_leaves_nothing_saved_and_no_files_behind(config, qwen_engine, photos):
    tight = make_services(with_config(config, history_tokens=10), qwen_engine)
    # No grace time: the store removes an unused upload at its next write, as it does
    # in the app once the grace time is over.
    with SQLiteStore(config.data_dir, media_grace=0) as store:
        session = ChatSession(store)
        events = list(submit(session, UserInput("Hello", (str(photos[0]),)), tight, GREEDY))
        assert isinstance(events[-1], InputRejected)
        assert session.conversation.turns == []
        # It was saved before the answer started; taken back, it is gone from the store too.
        assert store.load(session.conversation.id) is None and store.list_conversations() == []
        assert stored_files(store) == []
        too_many = list(submit(session, UserInput("Which?", tuple(str(photos[0]) for _ in range(5))), tight, GREEDY))
        assert isinstance(too_many[-1], InputRejected)
        assert stored_files(store) == []


def test_the_question_is_saved_before_the_answer_starts(config, services, store):
    session = new_session(store)
    events = submit(session, UserInput("Hi"), services, GREEDY)
    for event in events:
        if isinstance(event, QuestionAdded):
            break
    with SQLiteStore(config.data_dir) as reopened:  # another process's view, mid-answer
        saved = reopened.load(session.conversation.id)
    assert saved is not None and saved.turns[0].text == "Hi"
    list(events)


def test_a_refused_regenerate_or_edit_leaves_the_conversation_as_it_was(config, qwen_engine, session):
    from mmchat.turn import edit_last

    list(submit(session, UserInput("Hello there"), make_services(config, qwen_engine), GREEDY))
    before = session.conversation.copy().turns
    tight = make_services(with_config(config, history_tokens=10), qwen_engine)  # nothing fits any more
    assert isinstance(list(regenerate(session, tight, GREEDY))[-1], InputRejected)
    assert session.conversation.turns == before
    assert isinstance(list(edit_last(session, "Other words", tight, GREEDY))[-1], InputRejected)
    assert session.conversation.turns == before
