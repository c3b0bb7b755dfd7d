"""One turn of the conversation, as a stream of typed events.

    input (text, photos, speech?) -> checks -> STT? -> Conversation -> admission -> Engine.stream
                                                          -> text deltas -> (SpeechWorker -> audio chunks)

The chat UI, the voice loop and the HTTP API are thin layers over `submit`,
`regenerate` and `edit_last`. Every turn has one cancel token from its first step
(`ChatSession.begin_turn`): Stop, New chat, a newer turn in the same session and a
consumer that goes away all end it wherever it is (transcribing, waiting for the
model or for a place in line, generating, speaking).

Bad input is refused with `InputRejected` before the conversation is touched. Once a
question is added, its reply exists too (marked interrupted until it completes), so a
turn that ends at any point leaves a question with its answer, never two answers or
two questions in a row, and nothing half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .admission import Admission
from .cancel import CancelToken
from .config import Config
from .conversation import AudioPart, Conversation, ImagePart, Part, TextPart, Turn
from .engine import Completion, Engine, GenerationParams
from .errors import InputError, UserFacingError
from .events import (
    AudioChunk, InputRejected, Notice, Progress, QuestionAdded, TextDelta, Transcribed, Transcript, TurnDone,
    TurnEvent,
)
from .history import HistoryTooLong, fit_history
from .images import check_image, photo_notice
from .model_handle import ModelHandle
from .presets import Task
from .rate_limit import TOO_FAST, TurnRateLimit, too_fast_message, whole_seconds
from .session import ChatSession
from .store import SQLiteStore
from .store.sqlite_store import SaveFailed
from .tts import TextToSpeech

log = logging.getLogger(__name__)
T = TypeVar("T")

# How often a turn that waits (for the model to load, for a transcription, for speech
# to finish) looks at its cancel token: the longest a Stop can go unnoticed there.
POLL_SECONDS = 0.1
# A stopped turn waits this long at most for its worker threads to end; each is told
# to stop and ends within one token or one sentence, far sooner.
JOIN_SECONDS = 30.0


@dataclass(frozen=True)
class UserInput:
    text: str = ""
    images: tuple[str, ...] = ()  # paths of uploaded photos
    audio: str | None = None  # path of a recording
    # The recording's words: as the user reviewed them (str), as a front end that listens
    # while the person speaks heard them (Transcript); None: transcribe the recording.
    audio_transcript: str | Transcript | None = None
    # When the question was complete (time.monotonic(); for speech, when the person stopped
    # speaking) and the stages already done by then, for the answer's timings. None: now.
    asked_at: float | None = None
    stages_done: tuple[tuple[str, float], ...] = ()  # (stage, time.monotonic())
    # Describe mode: a task preset asked for about `images` (any typed text is not sent:
    # the preset's prompt is). The chat shows the task's name; the model gets the prompt.
    task: Task | None = None
    # Who asks, for --max-turns-per-minute (rate_limit.py): the API names its key's user,
    # key or client; None: the session's owner (the logged-in user, or the page's one person).
    sender: str | None = None


class StageClock:
    """The seconds from the moment a question was complete to each stage of its answer."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.marks: dict[str, float] = {}

    def mark(self, stage: str, at: float | None = None) -> None:
        """The first time `stage` is reached counts (the first token, the first audio)."""
        if stage not in self.marks:
            at = time.monotonic() if at is None else at
            self.marks[stage] = round(max(at - self.start, 0.0), 4)


@dataclass(frozen=True)
class Speech:
    """Speak the answer, with this voice ("auto": the answer's language picks it) and rate."""

    voice: str = "auto"
    rate: float = 1.0


@dataclass
class Services:
    """What every session shares: the models, the limits, and the one admission line."""

    config: Config
    engine: ModelHandle[Engine]
    stt: ModelHandle | None = None  # of a SpeechToText
    tts: Callable[[Speech], "TextToSpeech"] | None = None  # a cached voice for a Speech setting
    admission: Admission | None = None  # built from config.concurrency when not given
    # The saved conversations: one store per process, shared by all that keep conversations
    # (the page; the API's chat completions are stateless and keep none). app.py opens it
    # at start; see open_store.
    store: SQLiteStore | None = None
    turn_limit: TurnRateLimit | None = None  # built from config.max_turns_per_minute when not given

    def __post_init__(self) -> None:
        if self.admission is None:
            self.admission = Admission(self.config.concurrency)
        if self.turn_limit is None:
            self.turn_limit = TurnRateLimit(self.config.max_turns_per_minute)

    def open_store(self) -> SQLiteStore:
        """The store, opened in config.data_dir on first use when none was given. Lazily,
        not in __post_init__: Services are also made for one request (the API) or one
        test, which should not open, migrate and import a data folder each time."""
        with _STORE_OPENING:
            if self.store is None:
                self.store = SQLiteStore(self.config.data_dir)
            return self.store


_STORE_OPENING = threading.Lock()


# --- input checks ---

# Terminal colour and cursor codes (ESC [ ... m, ESC ] ... BEL) pasted from a console:
# the whole sequence goes, not only its ESC, or "[31m" would be left in the words.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# What a person can neither see nor mean to send: C0 and C1 control characters but tab and
# newline (NUL, bell, backspace, ESC...), DEL; bidirectional overrides (LRO, RLO), which
# make the chat show the characters in another order than the model reads them; and the
# invisible zero-width space, word joiner and byte-order mark. Kept: right-to-left text
# and its marks (LRM, RLM, embeddings, isolates), and the zero-width joiner and non-joiner
# that emoji, Persian and Indic scripts need.
_UNSEEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202d\u202e\u200b\u2060\ufeff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Typed or pasted words as they are kept and shown: line ends made newlines, control
    characters and invisible overrides dropped (see _UNSEEN), all else exactly as given.

    Raises InputError for broken text (a lone UTF-16 surrogate), which can't be stored."""
    broken = _LONE_SURROGATE.search(text)
    if broken:
        raise InputError(
            f"Your message holds broken text (a lone UTF-16 surrogate, U+{ord(broken.group()):04X}, "
            f"at character {broken.start() + 1:,}), which can't be stored. Please type or paste it again."
        )
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSEEN.sub("", _ESCAPE_SEQUENCE.sub("", text))


def check_text(text: str, config: Config) -> str:
    """The message as it will be kept (clean_text, stripped), or InputError when it is
    longer than the limit (counted as typed, as the person's editor counts it)."""
    if len(text) > config.max_text_chars:
        length, limit = f"{len(text):,}", f"{config.max_text_chars:,}"
        raise InputError(f"Your message is {length} characters long; the limit is {limit}. Please shorten it.",
                         "text_too_long", length=length, limit=limit)
    return clean_text(text).strip()


def check_pace(sender: str, services: Services) -> None:
    """Count a turn for `sender`, or raise InputError (key TOO_FAST) when they already
    sent --max-turns-per-minute in the last minute (rate_limit.py)."""
    limit = services.turn_limit
    wait = limit.take(sender) if limit is not None else None
    if wait is not None:
        seconds = whole_seconds(wait)
        raise InputError(too_fast_message(limit.per_minute, seconds), TOO_FAST,
                         per_minute=limit.per_minute, seconds=seconds)


def _checked_parts(user_input: UserInput, services: Services, cancel: CancelToken):
    """Check the input and turn it into parts (returned; their paths are still the
    uploads'), or None when the turn was stopped while transcribing. Yields events."""
    config = services.config
    text = check_text(user_input.text or "", config)
    if len(user_input.images) > config.max_images_per_turn:
        sent, most = len(user_input.images), config.max_images_per_turn
        raise InputError(f"You sent {sent} photos; at most {most} fit in one message.", "too_many_photos",
                         sent=sent, most=most)
    max_bytes = int(config.max_upload_mb * 1e6)
    for path in user_input.images:
        check_image(path, max_pixels=config.max_image_pixels, max_bytes=max_bytes)
    notices = [notice for notice in map(photo_notice, user_input.images) if notice]  # e.g. an animation's first frame
    parts: list[Part] = [ImagePart(p) for p in user_input.images]
    heard = user_input.audio_transcript
    if user_input.audio and isinstance(heard, Transcript):
        parts.append(AudioPart(user_input.audio, check_text(heard.text, config), heard.language, heard.duration))
    elif user_input.audio and heard is not None:
        parts.append(AudioPart(user_input.audio, check_text(heard, config)))
    elif user_input.audio:
        transcript = yield from transcribe_recording(user_input.audio, services, cancel)
        if transcript is None:
            return None
        yield Transcribed(transcript)
        parts.append(AudioPart(user_input.audio, transcript.text.strip(), transcript.language, transcript.duration))
    task = user_input.task
    if task is not None:
        if len(user_input.images) < task.preset.images:
            raise InputError(_needs_photos(task))
        parts.append(TextPart(task.question(), task.tag))
    elif text:
        parts.append(TextPart(text))
    if not any(isinstance(p, (TextPart, AudioPart)) for p in parts):
        if parts:
            raise InputError("Please type or say a question about the photo.", "no_question_photo")
        raise InputError("Please type or say a question.", "no_question")
    for notice in notices:
        yield Notice(notice)
    return parts


def _needs_photos(task: Task) -> str:
    if task.preset.needs_two_photos:
        return f"{task.preset.label} needs two photos: add both (the earlier one first), or take two with the camera."
    return f"{task.preset.label} needs a photo: add one, or turn on the camera."


def task_of(question: Turn) -> Task | None:
    """The describe-mode task a question was asked as, if any."""
    return next((Task.from_tag(p.preset) for p in question.parts if isinstance(p, TextPart) and p.preset), None)


def _keep_uploads(session: ChatSession, conversation: Conversation, parts: list[Part]) -> list[Part]:
    """Copy the uploads of an accepted question into the store (uploads are temporary files).

    Copies already made when one fails are not deleted here: a stored file may be
    another conversation's too (the same content is kept once), and the store removes
    those no saved turn uses by itself, after a grace time.
    """
    kept: list[Part] = []
    try:
        for part in parts:
            if isinstance(part, (ImagePart, AudioPart)):
                part = dataclasses.replace(part, path=session.keep_upload(part.path, conversation))
            kept.append(part)
    except OSError as exc:
        raise InputError(f"Your message could not be stored on the server ({exc.strerror or exc}).") from exc
    except SaveFailed as exc:  # e.g. the disk is full: says so
        raise InputError(exc.message) from exc
    return kept


def _saved(session: ChatSession, conversation: Conversation) -> str | None:
    """Save `conversation`; None, or why it could not be (a full disk, a locked database).
    The turn goes on all the same: the session keeps the conversation, and the next save
    writes all of it, while what was committed before is untouched (the write rolled back)."""
    try:
        session.save(conversation)
    except SaveFailed as exc:
        return exc.message
    return None


def transcribe_recording(path: str, services: Services, cancel: CancelToken | None = None):
    """Recording -> Transcript (returned), yielding Progress while Whisper works;
    None if `cancel` was cancelled first.

    Raises InputError when nothing was heard, so no invented text reaches the model.
    """
    from .audio import SAMPLE_RATE, load_audio
    from .stt import speech_language

    if services.stt is None:
        raise InputError("Speech input is turned off on this server (--stt-backend none).")
    cancel = cancel or CancelToken.standalone()
    size, limit = Path(path).stat().st_size, services.config.max_upload_mb * 1e6
    if size > limit:
        megabytes, most = f"{size / 1e6:.0f}", f"{limit / 1e6:.0f}"
        raise InputError(f"The recording is {megabytes} MB; the limit is {most} MB.", "recording_too_big",
                         megabytes=megabytes, limit=most)
    samples = load_audio(path, max_seconds=services.config.max_audio_seconds)
    while not services.stt.loaded(POLL_SECONDS):
        if cancel.cancelled:
            return None
    stt = services.stt.wait()
    language = speech_language(services.config)
    transcript = yield from _with_progress(
        lambda progress: stt.transcribe(samples, language=language, progress=progress, cancel=cancel),
        f"Transcribing your recording ({len(samples) / SAMPLE_RATE:.0f} s)",
        cancel,
    )
    if transcript is None:
        return None
    if not transcript.text.strip():
        raise InputError("Nothing was heard in the recording. Please try again, closer to the microphone.",
                         "nothing_heard")
    return transcript


def _with_progress(work: Callable[[Callable[[float], None]], T], message: str, cancel: CancelToken):
    """Run `work(progress)` in a thread, yielding Progress events; return its result,
    or None as soon as `cancel` is cancelled (the work is told through the same token
    and ends at its next step on its own)."""
    updates: queue.Queue[float] = queue.Queue()
    result: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work(updates.put))
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="mmchat-transcribe", daemon=True)
    worker.start()
    while worker.is_alive():
        if cancel.cancelled:
            return None
        try:
            yield Progress(message, updates.get(timeout=POLL_SECONDS))
        except queue.Empty:
            pass
        except GeneratorExit:  # nobody waits for the words any more: let the work stop too
            cancel.cancel()
            raise
    worker.join()
    if cancel.cancelled:
        return None
    if failure:
        raise failure[0]
    return result[0]


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


# --- the three kinds of turn ---

def submit(session: ChatSession, user_input: UserInput, services: Services, params: GenerationParams,
           speech: Speech | None = None) -> Iterator[TurnEvent]:
    """A new question: check it, add it to the conversation, stream the answer."""
    token = session.begin_turn()
    clock = StageClock(user_input.asked_at)
    for stage, at in user_input.stages_done:
        clock.mark(stage, at)
    try:
        parts = yield from _checked_parts(user_input, services, token)
        if parts is not None:
            check_pace(user_input.sender or session.owner, services)
    except UserFacingError as exc:  # bad input, too many questions, or speech recognition unavailable
        yield InputRejected.of(exc)
        return
    if parts is None:  # stopped while transcribing: nothing was added
        yield TurnDone("interrupted", "")
        return
    rejected: str | None = None
    with session.lock:
        conversation = session.conversation
        stopped = token.cancelled  # stopped (or replaced) just now, before anything was added
        if not stopped:
            try:
                parts = _keep_uploads(session, conversation, parts)
            except InputError as exc:
                rejected = exc.message
            else:
                if conversation.turns and conversation.turns[-1].role == "user":
                    conversation.add_assistant("", status="interrupted")  # a question saved unanswered by a crash
                question = conversation.add_user(parts)
                reply = conversation.add_assistant("", status="interrupted")
    if stopped:
        yield TurnDone("interrupted", "")
        return
    if rejected is not None:
        yield InputRejected(rejected)
        return
    unsaved = _saved(session, conversation)  # the question is safe before the answer starts

    def take_back() -> None:  # refused before any answer: the conversation is as it was
        _remove_turns(conversation, question, reply)  # its uploads: see _keep_uploads

    yield QuestionAdded()
    if unsaved:
        yield Notice(unsaved)
    yield from _answer(session, conversation, reply, token, services, params, speech, take_back, clock)


def regenerate(session: ChatSession, services: Services, params: GenerationParams,
               speech: Speech | None = None) -> Iterator[TurnEvent]:
    """Answer the last question again."""

    def drop_answer(conversation: Conversation) -> Callable[[], None]:
        previous = conversation.turns[-1] if conversation.turns[-1].role == "assistant" else None
        conversation.drop_last_answer()

        def undo() -> None:  # refused: keep the old answer rather than none
            if previous is not None:
                conversation.turns.append(previous)

        return undo

    yield from _answer_again(session, services, params, speech, drop_answer,
                             "There is no question to answer again yet.")


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

    def replace_words(conversation: Conversation) -> Callable[[], None]:
        backup = list(conversation.turns)
        conversation.edit_last_user_text(text)
        return lambda: conversation.turns.__setitem__(slice(None), backup)

    yield from _answer_again(session, services, params, speech, replace_words, "There is no message to edit yet.")


def _answer_again(session: ChatSession, services: Services, params: GenerationParams, speech: Speech | None,
                  change: Callable[[Conversation], Callable[[], None]], nothing_to_answer: str) -> Iterator[TurnEvent]:
    """Answer the last question again after `change(conversation)`, which returns how to undo itself."""
    token = session.begin_turn()
    clock = StageClock()
    with session.lock:
        has_question = session.conversation.last_user_index() is not None
    if has_question:
        try:
            check_pace(session.owner, services)
        except InputError as exc:
            yield InputRejected.of(exc)
            return
    with session.lock:
        conversation = session.conversation
        reply = None
        if conversation.last_user_index() is not None:
            undo = change(conversation)
            reply = conversation.add_assistant("", status="interrupted")
    if reply is None:
        yield InputRejected(nothing_to_answer)
        return

    def take_back() -> None:
        _remove_turns(conversation, reply)
        undo()

    yield from _answer(session, conversation, reply, token, services, params, speech, take_back, clock)


def _remove_turns(conversation: Conversation, *turns: Turn) -> None:
    conversation.turns[:] = [t for t in conversation.turns if not any(t is gone for gone in turns)]


# --- the answer ---

class _Refused(Exception):
    """The question can't be answered as it stands (too long, model unavailable)."""


def _answer(session: ChatSession, conversation: Conversation, reply: Turn, token: CancelToken, services: Services,
            params: GenerationParams, speech: Speech | None, take_back: Callable[[], None],
            clock: StageClock) -> Iterator[TurnEvent]:
    """Write the answer into `reply`, the placeholder after the question of `conversation`.

    `take_back()` undoes the turn's change to the conversation when the question is
    refused before an answer starts. With `speech`, a SpeechWorker speaks each sentence
    as soon as it is complete, on its own thread, so the text never waits for speech.
    `clock` times the answer's stages, which are kept with the reply.
    """
    pieces: list[str] = []
    status, error, completion = "interrupted", None, None
    refused: str | None = None
    refused_key: str | None = None  # the refusal's mmchat.i18n key, e.g. OUT_OF_MEMORY
    slot = None
    ran_out = False  # the engine's stream ended by itself
    cut = False  # words the engine wrote after a Stop were dropped
    question = conversation.turns[conversation.turns.index(reply) - 1]
    task = task_of(question)
    try:
        if task is not None and task.preset.measure is not None:  # answered from the pixels: no model, no line
            engine, messages = _Measured(task, question), []
            voice = yield from _voice_for(speech, services)
            slot = _NO_SLOT
        else:
            engine = yield from _wait_for_engine(services, token)
            if engine is not None:
                fitted = _fit(conversation, reply, engine, services)
                messages = fitted.messages
                if fitted.notice:
                    yield Notice(fitted.notice)
                voice = yield from _voice_for(speech, services)
                slot = yield from services.admission.enter(token)
        if slot is not None:
            with contextlib.closing(_generate(engine, messages, params, token, voice)) as items:
                for item in items:
                    if isinstance(item, Completion):
                        completion = item
                    elif token.cancelled:  # Stop: the answer is what the user saw when pressing it;
                        cut = cut or isinstance(item, str)  # the engine ends within a token, with its Completion
                        continue
                    elif isinstance(item, str):
                        clock.mark("first_token")
                        pieces.append(item)
                        with session.lock:
                            reply.parts = [TextPart("".join(pieces))]
                        yield TextDelta(item)
                    else:
                        clock.mark("first_audio")
                        yield item  # AudioChunk
                else:
                    ran_out = True
        # The text is whole once the engine says so, even if Stop then cut the speech.
        if completion is not None:
            # Words the engine had written before it heard the Stop, and were dropped, make the
            # kept answer a cut one even when the engine itself finished.
            status = "interrupted" if completion.finish_reason == "cancelled" or cut else "complete"
        elif ran_out and not token.cancelled:  # an engine that ends without a Completion
            status = "complete"
    except _Refused as exc:
        refused = str(exc)
    except GeneratorExit:  # the consumer went away (closed tab): end the work, keep what we have
        token.cancel()
        raise
    except Exception as exc:
        if _out_of_memory(exc) and not pieces:
            # Nothing was written: the question as it stands does not fit in the GPU. Taken
            # back like a question too long, so the next question's history does not carry
            # it into the same failure, and the page puts it back in the box to shorten.
            log.warning("out of memory before the answer began: %s", exc)
            refused, refused_key = _failure_message(exc), OUT_OF_MEMORY
        else:
            log.exception("generation failed")
            status, error = "error", _failure_message(exc)
    finally:
        if slot is not None:
            slot.release()
        with session.lock:
            if refused is not None:
                take_back()
            else:
                clock.mark("done")
                answer = "".join(pieces)
                if task is not None and status == "complete":  # e.g. a brief description kept to one sentence
                    answer = task.finish(answer)
                reply.parts = [TextPart(answer)]
                reply.status = status
                reply.timings = dict(clock.marks)
        unsaved = _saved(session, conversation)
    if unsaved:
        yield Notice(unsaved)
    if refused is not None:
        yield InputRejected(refused, refused_key)
    else:
        yield TurnDone(status, reply.text, error, completion, dict(clock.marks))


class _NoSlot:
    """The place in line of an answer that needs none (it does not use the model)."""

    def release(self) -> None:
        pass


_NO_SLOT = _NoSlot()


class _Measured:
    """A task answered from the photo's pixels (the light level), streamed like a model's
    answer so it is shown, spoken and saved the same way."""

    def __init__(self, task: Task, question: Turn) -> None:
        self.task, self.question = task, question

    def stream(self, messages, params, token) -> Iterator[str | Completion]:
        if not self.question.images:
            raise UserFacingError(_needs_photos(self.task))
        words = self.task.preset.measure(self.question.images[-1].path)
        yield words
        yield Completion("stop", 0, 0)


def _wait_for_engine(services: Services, token: CancelToken):
    """The engine once loaded (returned), None if stopped first; raises _Refused if it
    can't be loaded."""
    handle = services.engine
    if not handle.loaded(0) and handle.status.error is None:
        yield Notice(f"Waiting for the model: {handle.status.message}")
    while not handle.loaded(POLL_SECONDS):
        if token.cancelled:
            return None
    try:
        return handle.wait()
    except UserFacingError as exc:
        raise _Refused(exc.message) from exc


def _fit(conversation: Conversation, reply: Turn, engine: Engine, services: Services):
    """The history that fits the token budget, ending with the question being answered."""
    try:
        messages = conversation.to_openai(services.config.system_prompt, before=reply)
        return fit_history(messages, engine.count_tokens, services.config.history_tokens)
    except (HistoryTooLong, UserFacingError) as exc:
        raise _Refused(str(exc)) from exc
    except Exception as exc:  # e.g. an image that was readable once and no longer is
        log.exception("preparing the prompt failed")
        raise _Refused(f"The question could not be prepared: {exc}") from exc


_TEXT_END = object()  # put by the text pump when the engine's stream is over


@dataclass(frozen=True)
class _Failure:
    exception: BaseException


def _generate(engine: Engine, messages: list[dict], params: GenerationParams, token: CancelToken,
              voice: TextToSpeech | None) -> Iterator[str | Completion | AudioChunk]:
    """The engine's stream; with a voice, merged with the audio of each finished sentence.

    With speech, one thread pumps the engine's text into a queue (feeding the speech
    worker as it goes) and the worker adds each sentence's audio to the same queue, so
    neither waits for the other and each piece goes out as soon as it exists.
    """
    if voice is None:
        yield from engine.stream(messages, params, token)
        return
    from .tts.worker import SpeechWorker

    merged: queue.Queue = queue.Queue()
    speaker = SpeechWorker(voice, token, emit=merged.put)

    def pump_text() -> None:
        try:
            for item in engine.stream(messages, params, token):
                merged.put(item)
                if isinstance(item, str):
                    speaker.feed(item)
        except BaseException as exc:  # re-raised on the turn's thread
            merged.put(_Failure(exc))
        finally:
            speaker.finish()
            merged.put(_TEXT_END)

    pump = threading.Thread(target=pump_text, name="mmchat-answer-text", daemon=True)
    pump.start()
    finished = False
    try:
        text_over = False
        while True:
            try:
                item = merged.get(timeout=POLL_SECONDS)
            except queue.Empty:
                # After a Stop the text still ends (within a token, with the Completion);
                # the speaker stops at once.
                if text_over and (token.cancelled or speaker.join(0)):
                    break
                continue
            if item is _TEXT_END:
                text_over = True
            elif isinstance(item, _Failure):
                raise item.exception
            else:
                yield item
        while not merged.empty():  # audio that arrived as the speaker finished
            item = merged.get_nowait()
            if isinstance(item, AudioChunk) and not token.cancelled:
                yield item
        finished = True
    finally:
        if not finished:  # the turn ended early (Stop, failure, consumer gone): stop both workers
            token.cancel()
        pump.join(JOIN_SECONDS)
        speaker.close()
        if speaker.error is not None and not token.cancelled:
            log.warning("speech failed: %s", speaker.error)


# The key of a question refused because the GPU ran out of memory before its answer began
# (the API answers it with 413: the request is larger than the server can take now).
OUT_OF_MEMORY = "out_of_memory"


def _out_of_memory(exc: Exception) -> bool:
    return type(exc).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError, without importing torch here


def _failure_message(exc: Exception) -> str:
    if _out_of_memory(exc):
        return ("The GPU ran out of memory for this answer. Try fewer or smaller photos, a shorter "
                "answer, or a New chat (a long conversation needs memory too).")
    if isinstance(exc, UserFacingError):  # it says what went wrong and how to fix it already
        return exc.message
    return f"The model failed while answering: {type(exc).__name__}: {exc}"
