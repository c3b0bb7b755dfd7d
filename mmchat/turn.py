"""One turn of the conversation, as a stream of typed events.

    input (text, photos, speech?) -> checks -> STT? -> Conversation -> Engine.stream
                                                     -> text deltas (-> sentences -> TTS?)

The chat UI, the voice loop and the HTTP API are thin layers over `submit`,
`regenerate` and `edit_last`. Bad input is refused with `InputRejected` before the
conversation is touched; once an answer starts, it always ends with `TurnDone`
(complete, interrupted or error) and the partial text is kept, never half-written.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .config import Config
from .conversation import AudioPart, ImagePart, Part, TextPart
from .engine import Engine, GenerationParams
from .errors import InputError, UserFacingError
from .events import InputRejected, Notice, Progress, QuestionAdded, TextDelta, Transcribed, TurnDone, TurnEvent
from .history import HistoryTooLong, fit_history
from .images import check_image
from .model_handle import ModelHandle
from .session import ChatSession
from .tts import SpeakableSentences, TextToSpeech

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class UserInput:
    text: str = ""
    images: tuple[str, ...] = ()  # paths of uploaded photos
    audio: str | None = None  # path of a recording
    # The recording's words as the user reviewed them; None: transcribe the recording.
    audio_transcript: str | None = None


@dataclass(frozen=True)
class Speech:
    """Speak the answer, with this voice ("auto": the answer's language picks it) and rate."""

    voice: str = "auto"
    rate: float = 1.0


@dataclass
class Services:
    """The models shared by every session, and the limits they run under."""

    config: Config
    engine: ModelHandle[Engine]
    stt: ModelHandle | None = None  # of a SpeechToText
    tts: Callable[[Speech], "TextToSpeech"] | None = None  # a cached voice for a Speech setting


def check_text(text: str, config: Config) -> str:
    if len(text) > config.max_text_chars:
        raise InputError(
            f"Your message is {len(text):,} characters long; the limit is {config.max_text_chars:,}. "
            "Please shorten it."
        )
    return text.strip()


def _user_parts(session: ChatSession, user_input: UserInput, services: Services):
    """Check the input and turn it into parts (returned); yields events on the way."""
    config = services.config
    text = check_text(user_input.text or "", config)
    if len(user_input.images) > config.max_images_per_turn:
        raise InputError(
            f"You sent {len(user_input.images)} photos; at most {config.max_images_per_turn} fit in one message."
        )
    max_bytes = int(config.max_upload_mb * 1e6)
    for path in user_input.images:
        check_image(path, max_pixels=config.max_image_pixels, max_bytes=max_bytes)
    parts: list[Part] = [ImagePart(session.keep_upload(p)) for p in user_input.images]
    if user_input.audio and user_input.audio_transcript is not None:
        reviewed = check_text(user_input.audio_transcript, config)
        parts.append(AudioPart(session.keep_upload(user_input.audio), reviewed))
    elif user_input.audio:
        transcript = yield from transcribe_recording(user_input.audio, services)
        yield Transcribed(transcript)
        parts.append(AudioPart(
            session.keep_upload(user_input.audio), transcript.text.strip(),
            transcript.language, transcript.duration,
        ))
    if text:
        parts.append(TextPart(text))
    if not any(isinstance(p, (TextPart, AudioPart)) for p in parts):
        raise InputError("Please type or say a question" + (" about the photo." if parts else "."))
    return parts


def transcribe_recording(path: str, services: Services):
    """Recording -> Transcript (returned), yielding Progress while Whisper works.

    Raises InputError when nothing was heard, so no invented text reaches the model.
    """
    from .audio import SAMPLE_RATE, load_audio
    from .stt import speech_language

    if services.stt is None:
        raise InputError("Speech input is turned off on this server (--stt-backend none).")
    size, limit = Path(path).stat().st_size, services.config.max_upload_mb * 1e6
    if size > limit:
        raise InputError(f"The recording is {size / 1e6:.0f} MB; the limit is {limit / 1e6:.0f} MB.")
    samples = load_audio(path, max_seconds=services.config.max_audio_seconds)
    stt = services.stt.wait()
    seconds = len(samples) / SAMPLE_RATE
    transcript = yield from _with_progress(
        lambda progress: stt.transcribe(samples, language=speech_language(services.config), progress=progress),
        f"Transcribing your recording ({seconds:.0f} s)",
    )
    if not transcript.text.strip():
        raise InputError("Nothing was heard in the recording. Please try again, closer to the microphone.")
    return transcript


def _voice_for(speech: Speech | None, services: Services):
    """The voice to speak with (returned), or None with a Notice saying why not."""
    if speech is None:
        return None
    if services.tts is None:
        yield Notice("Speech output is turned off on this server (--tts-backend none); answering in text.")
        return None
    try:
        return services.tts(speech)
    except UserFacingError as exc:
        yield Notice(f"Answering in text only: {exc.message}")
        return None


def _with_progress(work: Callable[[Callable[[float], None]], T], message: str):
    """Run `work(progress)` in a thread, yielding Progress events; return its result."""
    updates: queue.Queue[float] = queue.Queue()
    result: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work(updates.put))
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="mmchat-progress-work", daemon=True)
    worker.start()
    while worker.is_alive():
        try:
            yield Progress(message, updates.get(timeout=0.25))
        except queue.Empty:
            pass
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def submit(session: ChatSession, user_input: UserInput, services: Services, params: GenerationParams,
           speech: Speech | None = None) -> Iterator[TurnEvent]:
    """A new question: check it, add it to the conversation, stream the answer."""
    try:
        parts = yield from _user_parts(session, user_input, services)
    except UserFacingError as exc:  # bad input, or speech recognition unavailable
        yield InputRejected(exc.message)
        return
    session.conversation.add_user(parts)
    yield QuestionAdded()
    yield from _answer(session, services, params, speech, new_question=True)


def regenerate(session: ChatSession, services: Services, params: GenerationParams,
               speech: Speech | None = None) -> Iterator[TurnEvent]:
    """Answer the last question again."""
    if session.conversation.last_user_index() is None:
        yield InputRejected("There is no question to answer again yet.")
        return
    session.cancel_scope.cancel()
    previous = session.conversation.turns[-1] if session.conversation.turns[-1].role == "assistant" else None
    session.conversation.drop_last_answer()
    restored = False
    for event in _answer(session, services, params, speech, new_question=False):
        if isinstance(event, InputRejected) and previous is not None and not restored:
            session.conversation.turns.append(previous)  # keep the old answer rather than none
            restored = True
        yield event


def edit_last(session: ChatSession, text: str, services: Services, params: GenerationParams,
              speech: Speech | None = None) -> Iterator[TurnEvent]:
    """Replace the words of the last question (its photos stay) and answer it again."""
    try:
        text = check_text(text, services.config)
    except InputError as exc:
        yield InputRejected(exc.message)
        return
    if not text:
        yield InputRejected("The edited message is empty.")
        return
    if session.conversation.last_user_index() is None:
        yield InputRejected("There is no message to edit yet.")
        return
    session.cancel_scope.cancel()
    backup = session.conversation.copy()
    session.conversation.edit_last_user_text(text)
    for event in _answer(session, services, params, speech, new_question=False):
        if isinstance(event, InputRejected):
            session.conversation.turns[:] = backup.turns
        yield event


def _answer(session: ChatSession, services: Services, params: GenerationParams, speech: Speech | None,
            *, new_question: bool) -> Iterator[TurnEvent]:
    """Stream an answer to the conversation's last user turn into a new assistant turn.

    With `speech`, each sentence is spoken as soon as it is complete, between the text
    deltas: the model keeps generating in its own thread meanwhile, so the first words
    are heard while the rest is still being written.
    """
    conversation = session.conversation
    token = session.cancel_scope.new_token()
    try:
        if not services.engine.status.ready:
            yield Notice(f"Waiting for the model: {services.engine.status.message}")
        engine = services.engine.wait()
        messages = conversation.to_openai(services.config.system_prompt)
        fitted = fit_history(messages, engine.count_tokens, services.config.history_tokens)
    except GeneratorExit:  # left while waiting: the question stays, marked as not answered
        conversation.add_assistant("", status="interrupted")
        raise
    except (HistoryTooLong, UserFacingError) as exc:
        if new_question:
            conversation.turns.pop()  # refused: the conversation is as it was
        yield InputRejected(str(exc))
        return
    except Exception as exc:  # e.g. an image that was readable once and no longer is
        log.exception("preparing the prompt failed")
        if new_question:
            conversation.turns.pop()
        yield InputRejected(f"The question could not be prepared: {exc}")
        return
    # The reply exists before the first yield, so a consumer that leaves at any point
    # finds a question with its (interrupted) answer, never an unanswered question.
    reply = conversation.add_assistant("", status="interrupted")
    pieces: list[str] = []
    status, error = "interrupted", None
    try:
        if fitted.notice:
            yield Notice(fitted.notice)
        voice = yield from _voice_for(speech, services)
        sentences = SpeakableSentences() if voice else None
        for delta in engine.stream(fitted.messages, params, token):
            if token.cancelled:  # Stop: the answer is what the user saw when pressing it
                break
            pieces.append(delta)
            reply.parts = [TextPart("".join(pieces))]
            yield TextDelta(delta)
            if voice:
                yield from voice.stream(sentences.feed(delta), token)
        if voice:
            yield from voice.stream(sentences.flush(), token)
        status = "interrupted" if token.cancelled else "complete"
    except GeneratorExit:  # the consumer went away (Stop, closed tab): keep what we have
        raise
    except Exception as exc:
        log.exception("generation failed")
        status, error = "error", _failure_message(exc)
    finally:
        reply.parts = [TextPart("".join(pieces))]
        reply.status = status
        session.save()
    yield TurnDone(status, "".join(pieces), error)


def _failure_message(exc: Exception) -> str:
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
        return ("The GPU ran out of memory for this answer. Try fewer or smaller photos, a shorter "
                "answer, or a New chat (a long conversation needs memory too).")
    return f"The model failed while answering: {type(exc).__name__}: {exc}"
