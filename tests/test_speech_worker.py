"""SpeechWorker: speech on its own thread, with the bundled Piper voice and, where the
test must hold synthesis still, a fake voice that goes through the same speak_each loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mmchat.cancel import CancelToken
from mmchat.events import AudioChunk
from mmchat.tts.protocol import speak_each
from mmchat.tts.worker import THREAD_NAME, SpeechWorker

# Generous bounds that only a hang reaches; nothing here measures speed.
HANG = 60.0

REPLY = (
    "The photo shows **two cats** on a red sofa. The one on the left is a tabby.\n\n"
    "- The tabby is asleep.\n"
    "- The black cat looks at the camera.\n\n"
    "Dr. Lee can tell you more"  # no full stop: only finish() releases it
)
SPOKEN = [
    "The photo shows two cats on a red sofa.",
    "The one on the left is a tabby.",
    "The tabby is asleep.",
    "The black cat looks at the camera.",
    "Doctor Lee can tell you more",
]


def speak_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    assert speak_threads() == []
    yield
    assert speak_threads() == [], "a speech worker thread outlived its test"


class Recorder:
    """An `emit` that keeps each chunk with the thread it came from."""

    def __init__(self) -> None:
        self.chunks: list[AudioChunk] = []
        self.threads: set[str] = set()

    def __call__(self, chunk: AudioChunk) -> None:
        self.threads.add(threading.current_thread().name)
        self.chunks.append(chunk)

    @property
    def texts(self) -> list[str]:
        return [chunk.text for chunk in self.chunks]


class FakeVoice:
    """A voice whose synthesis the test controls: `hold(sentence)` makes it wait there
    until `release()` or until the token it was given is cancelled; `fail_on` raises."""

    sample_rate = 16000

    def __init__(self, fail_on: str | None = None) -> None:
        self.log: list[str] = []  # what happened, in order, across threads
        self._lock = threading.Lock()
        self._held: str | None = None
        self.synthesizing = threading.Event()  # set when the held sentence is being synthesized
        self._released = threading.Event()
        self.fail_on = fail_on

    def note(self, what: str) -> None:
        with self._lock:
            self.log.append(what)

    def hold(self, sentence: str) -> None:
        self._held = sentence

    def release(self) -> None:
        self._released.set()

    def stream(self, sentences, cancel):
        def synthesize(sentence: str) -> np.ndarray:
            self.note(f"synthesizing {sentence}")
            if sentence == self.fail_on:
                raise RuntimeError("the voice broke")
            if sentence == self._held:
                self.synthesizing.set()
                # Waits as a real synthesis takes time; a bound so a broken worker fails, not hangs.
                for _ in range(int(HANG / 0.01)):
                    if self._released.wait(0.01) or cancel.cancelled:
                        break
            self.note(f"synthesized {sentence}")
            return np.full(160, 0.1, dtype=np.float32)

        return speak_each(sentences, cancel, synthesize, self.sample_rate)


# --- with the bundled Piper voice ---------------------------------------------------------


def test_chunks_come_in_sentence_order_from_the_worker_thread(text_to_speech):
    emit = Recorder()
    worker = SpeechWorker(text_to_speech, CancelToken.standalone(), emit)
    try:
        for ch in REPLY:  # one character at a time: the worker must not depend on the cut
            worker.feed(ch)
        worker.finish()
        assert worker.join(HANG)
    finally:
        worker.close()
    assert emit.texts == SPOKEN
    assert emit.threads == {THREAD_NAME}
    assert worker.error is None
    for chunk in emit.chunks:
        assert chunk.sample_rate == text_to_speech.sample_rate
        assert chunk.samples.dtype == np.float32 and chunk.duration > 0.3


def test_each_sentence_is_emitted_before_the_next_is_even_written(text_to_speech):
    """Audio goes out as soon as it exists: the first sentence is heard while the
    model has not written the second one yet."""
    emit = Recorder()
    heard = threading.Event()
    worker = SpeechWorker(text_to_speech, CancelToken.standalone(), lambda chunk: (emit(chunk), heard.set()))
    try:
        worker.feed("The cat sleeps on the sofa. ")
        worker.feed("The")  # "The cat sleeps..." is now known to be complete
        assert heard.wait(HANG), "the first sentence was not spoken before the text went on"
        assert emit.texts == ["The cat sleeps on the sofa."]
        worker.feed(" dog barks.")
        worker.finish()
        assert worker.join(HANG)
    finally:
        worker.close()
    assert emit.texts == ["The cat sleeps on the sofa.", "The dog barks."]


def test_stop_from_another_thread_mid_answer_stops_the_speech(text_to_speech):
    token = CancelToken.standalone()
    first_heard, stopped = threading.Event(), threading.Event()
    emitted: list[tuple[str, bool]] = []

    def emit(chunk: AudioChunk) -> None:
        emitted.append((chunk.text, token.cancelled))
        first_heard.set()
        stopped.wait(HANG)  # hold the worker right here until Stop has been pressed

    worker = SpeechWorker(text_to_speech, token, emit)
    try:
        for sentence in ("One cat.", "Two cats.", "Three cats.", "Four cats."):
            worker.feed(sentence + " ")
        assert first_heard.wait(HANG)
        pressing = threading.Thread(target=token.cancel, name="stop-button")
        pressing.start()
        pressing.join()
        stopped.set()
        assert worker.join(HANG), "the worker went on after Stop"
        worker.feed("Five cats. ")  # text after Stop is dropped, not spoken, not an error
        worker.finish()
    finally:
        worker.close()
    assert emitted == [("One cat.", False)]
    assert speak_threads() == []
    assert worker.error is None


def test_a_stopped_turn_ends_the_worker_while_it_waits_for_text(text_to_speech):
    token = CancelToken.standalone()
    emit = Recorder()
    worker = SpeechWorker(text_to_speech, token, emit)
    worker.feed("An unfinished sente")  # nothing to say yet: the worker waits for more
    token.cancel()  # no finish(), no close(): the token alone must end it
    assert worker.join(HANG)
    assert speak_threads() == [] and emit.chunks == []
    worker.close()


# --- with a fake voice whose synthesis the test holds still ----------------------------


def test_text_fed_during_a_slow_synthesis_is_never_held_up():
    voice = FakeVoice()
    voice.hold("First sentence.")
    emit = Recorder()
    worker = SpeechWorker(voice, CancelToken.standalone(), emit)
    try:
        worker.feed("First sentence. ")
        worker.feed("Second")
        assert voice.synthesizing.wait(HANG)
        # The voice is now busy with sentence one, and stays so until released: every
        # feed below returns while it is, or the log shows the feeds after the synthesis.
        for word in (" sentence.", " Third", " one", " here."):
            worker.feed(word)
            voice.note(f"fed{word}")
        voice.note("all fed")
        voice.release()
        worker.finish()
        assert worker.join(HANG)
    finally:
        worker.close()
    assert voice.log[: voice.log.index("synthesized First sentence.")] == [
        "synthesizing First sentence.",
        "fed sentence.", "fed Third", "fed one", "fed here.", "all fed",
    ]
    assert emit.texts == ["First sentence.", "Second sentence.", "Third one here."]


def test_close_stops_a_synthesis_under_way_without_cancelling_the_turn():
    voice = FakeVoice()
    voice.hold("A long sentence.")
    token = CancelToken.standalone()
    emit = Recorder()
    worker = SpeechWorker(voice, token, emit)
    worker.feed("A long sentence. And another one. ")
    assert voice.synthesizing.wait(HANG)
    closing = threading.Thread(target=worker.close, name="closer")
    closing.start()
    closing.join(HANG)
    assert not closing.is_alive(), "close() waited on a synthesis that had been told to stop"
    assert speak_threads() == []
    assert emit.chunks == []  # the interrupted sentence is not emitted
    assert "synthesizing And another one." not in voice.log
    assert not token.cancelled  # the answer's text goes on; only speech stopped
    voice.release()


@pytest.mark.parametrize("fail_on", ["Second one.", "First one."])
def test_a_failing_voice_surfaces_its_error_and_the_thread_ends(fail_on):
    voice = FakeVoice(fail_on=fail_on)
    emit = Recorder()
    worker = SpeechWorker(voice, CancelToken.standalone(), emit)
    try:
        worker.feed("First one. Second one. Third one.")
        worker.finish()
        assert worker.join(HANG), "a failing voice hung the turn"
    finally:
        worker.close()
    assert isinstance(worker.error, RuntimeError) and str(worker.error) == "the voice broke"
    assert emit.texts == (["First one."] if fail_on == "Second one." else [])
    assert "synthesizing Third one." not in voice.log
    assert speak_threads() == []


def test_an_emit_that_raises_is_a_failure_too():
    def emit(chunk: AudioChunk) -> None:
        raise OSError("the audio queue is gone")

    worker = SpeechWorker(FakeVoice(), CancelToken.standalone(), emit)
    worker.feed("One. Two. Three.")
    worker.finish()
    assert worker.join(HANG)
    worker.close()
    assert isinstance(worker.error, OSError)


def test_feeding_after_finish_is_a_bug_the_caller_hears_about():
    worker = SpeechWorker(FakeVoice(), CancelToken.standalone(), Recorder())
    worker.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        worker.feed("Late.")
    assert worker.join(HANG)
    worker.close()
