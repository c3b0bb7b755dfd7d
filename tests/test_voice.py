"""Speech in and out around the one turn loop the UI uses, with real Whisper and Piper."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import threading

import jiwer
import numpy as np
import pytest
import soundfile as sf

from conftest import make_services, voice_services_for, with_config
from mmchat.engine import GenerationParams
from mmchat.events import AudioChunk, InputRejected, Notice, TextDelta, Transcribed, TurnDone
from mmchat.conversation import AudioPart
from mmchat.turn import Speech, UserInput, submit
from mmchat.web.chat import ChatHandlers

needs_tools = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("ffmpeg")),
                                 reason="espeak-ng and ffmpeg make the test speech (scripts/dev-setup.sh)")
GREEDY = GenerationParams(max_new_tokens=12, temperature=0.0)


@pytest.fixture
def voice_services(config, qwen_engine, speech_to_text, text_to_speech):
    return voice_services_for(config, qwen_engine, speech_to_text, text_to_speech)


def mic_recording(tmp_path, words: str) -> str:
    """What a browser's microphone sends: WebM/Opus, 48 kHz."""
    wav, webm = tmp_path / "said.wav", tmp_path / "said.webm"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), words], check=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-ar", "48000", "-c:a", "libopus", str(webm)],
                   check=True)
    return str(webm)


def _words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


@needs_tools
def test_a_spoken_question_about_a_photo_is_transcribed_and_answered(session, voice_services, photos, tmp_path):
    question = "What colour is the shape?"
    events = list(submit(session, UserInput(images=(str(photos[0]),), audio=mic_recording(tmp_path, question)),
                         voice_services, GREEDY))
    heard = next(e for e in events if isinstance(e, Transcribed)).transcript
    assert jiwer.wer(_words(question).replace("colour", "color"), _words(heard.text)) <= 0.2
    assert [type(e).__name__ for e in events].index("Transcribed") < [type(e).__name__ for e in events].index("TextDelta")
    assert events[-1].status == "complete"
    user = session.conversation.turns[0]
    audio = next(p for p in user.parts if isinstance(p, AudioPart))
    assert audio.transcript == heard.text.strip() and len(user.images) == 1
    # the model got the transcript as the question, next to the photo
    content = session.conversation.to_openai()[0]["content"]
    assert [c["type"] for c in content] == ["image_url", "text"] and content[1]["text"] == audio.transcript


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_a_recording_with_nothing_said_is_refused_without_invented_text(session, voice_services, tmp_path, kind):
    samples = np.zeros(48_000 * 3) if kind == "silence" else np.random.default_rng(0).normal(0, 0.1, 48_000 * 3)
    path = tmp_path / f"{kind}.wav"
    sf.write(path, samples.astype(np.float32), 48_000)
    events = list(submit(session, UserInput(audio=str(path)), voice_services, GREEDY))
    assert [type(e) for e in events] == [InputRejected]
    assert "Nothing was heard" in events[0].message
    assert session.conversation.turns == []


@needs_tools
def test_the_transcript_can_be_checked_and_corrected_before_it_is_sent(voice_services, tmp_path):
    voice_services.config = with_config(voice_services.config, edit_transcript=True)
    handlers = ChatHandlers(voice_services)
    session, *_ = handlers.on_load("")
    recording = mic_recording(tmp_path, "What is written on the sign?")
    settings = (12, 0.0, False, "auto", 1.0)
    *_, review = handlers.on_submit(session, {"text": "", "files": [recording]}, False, None, *settings, progress=None)
    box, reviewed = review.box["value"], review.reviewed
    assert "written on the" in box["text"].lower() and reviewed == recording  # Whisper may mishear "sign"
    assert session.conversation.turns == []  # nothing sent yet
    corrected = {"text": "What is written on the red sign?", "files": box["files"]}
    *_, done = handlers.on_submit(session, corrected, False, reviewed, *settings, progress=None)
    audio = session.conversation.turns[0].parts[-1]
    assert isinstance(audio, AudioPart) and audio.transcript == corrected["text"]
    assert len(session.conversation.turns) == 2


def _endless(engine):
    saved = engine.model.generation_config.eos_token_id
    engine.model.generation_config.eos_token_id = None
    return saved


class _HeldEngine:
    """The real engine, holding its text a few pieces after its first sentence until
    speech is heard.

    Speech runs beside the text now, and the tiny CPU model writes a whole answer
    faster than Piper speaks one sentence; holding the text (on the turn's text
    thread, never the consumer's) makes "heard while still writing" observable."""

    def __init__(self, engine, heard: threading.Event) -> None:
        self.engine, self.heard = engine, heard
        self.name = engine.name

    def count_tokens(self, messages):
        return self.engine.count_tokens(messages)

    def stream(self, messages, params, cancel):
        from mmchat.tts import SpeakableSentences

        sentences = SpeakableSentences()  # the speech worker's own cut: is a sentence ready to speak?
        since_stop = None  # pieces written since the first sentence ended
        for item in self.engine.stream(messages, params, cancel):
            yield item
            if isinstance(item, str):
                if since_stop is None and sentences.feed(item):
                    since_stop = 0
                elif since_stop is not None:
                    since_stop += 1
                if since_stop == 3:
                    self.heard.wait(60)


def test_speech_starts_before_the_answer_is_finished(session, config, qwen_engine, speech_to_text, text_to_speech):
    heard = threading.Event()
    services = voice_services_for(config, _HeldEngine(qwen_engine, heard), speech_to_text, text_to_speech)
    saved = _endless(qwen_engine)
    events = []
    try:
        for event in submit(session, UserInput("Tell me everything."), services,
                            GenerationParams(max_new_tokens=160, temperature=0.0), Speech()):
            events.append(event)
            if isinstance(event, AudioChunk):
                heard.set()
    finally:
        heard.set()
        qwen_engine.model.generation_config.eos_token_id = saved
    kinds = [type(e) for e in events]
    first_audio = kinds.index(AudioChunk)
    last_text = len(kinds) - 1 - kinds[::-1].index(TextDelta)
    assert first_audio < last_text, "the first sentence is spoken while the model is still writing"
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert all(c.samples.size and c.sample_rate > 0 for c in chunks)
    assert events[-1].status == "complete"


def test_stop_cuts_speech_and_generation_together(session, voice_services, qwen_engine):
    saved = _endless(qwen_engine)
    try:
        events = submit(session, UserInput("Tell me everything."), voice_services,
                        GenerationParams(max_new_tokens=5000, temperature=0.0), Speech())
        before = list(itertools.takewhile(lambda e: not isinstance(e, AudioChunk), events))
        session.cancel_scope.cancel()  # Stop, right after the first sentence was spoken
        after = list(events)
    finally:
        qwen_engine.model.generation_config.eos_token_id = saved
    assert any(isinstance(e, TextDelta) for e in before)
    assert not any(isinstance(e, AudioChunk) for e in after), "no speech after Stop"
    assert isinstance(after[-1], TurnDone) and after[-1].status == "interrupted"
    assert session.conversation.turns[-1].status == "interrupted"
    assert not [t for t in threading.enumerate() if t.name == "mmchat-generate" and t.is_alive()]


def test_without_speech_output_the_answer_still_comes_as_text(session, config, qwen_engine):
    services = make_services(config, qwen_engine)  # --tts-backend none
    events = list(submit(session, UserInput("Hi"), services, GREEDY, Speech()))
    assert any(isinstance(e, Notice) and "text" in e.message for e in events)
    assert events[-1].status == "complete"
