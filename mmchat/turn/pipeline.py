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
from typing import Callable, Iterator

from ..cancel import CancelToken
from ..conversation import AnswerVersion, AudioPart, Conversation, ImagePart, Part, TextPart, Turn, VideoPart
from ..engine import Completion, GenerationParams
from ..errors import InputError, UserFacingError
from ..events import InputRejected, QuestionAdded, TextDelta, TurnDone, TurnEvent, Notice
from ..media.photos import Photo, remember_copy
from ..media.video import Clip
from ..store.sqlite_store import SaveFailed
from .generation import (
    NO_SLOT, OUT_OF_MEMORY, Measured, Refused, failure_message, fit_prompt, generate, out_of_memory, voice_for,
    wait_for_engine,
)
from .inputs import StageClock, UserInput, check_pace, check_text, checked_parts, task_of
from .services import Services, Speech
from .session import ChatSession

log = logging.getLogger(__name__)


def submit(session: ChatSession, user_input: UserInput, services: Services, params: GenerationParams,
           speech: Speech | None = None) -> Iterator[TurnEvent]:
    """A new question: check it, add it to the conversation, stream the answer."""
    token = session.begin_turn()
    clock = StageClock(user_input.asked_at)
    for stage, at in user_input.stages_done:
        clock.mark(stage, at)
    try:
        checked = yield from checked_parts(user_input, services, token)
        if checked is not None:
            check_pace(user_input.sender or session.owner, services)
    except UserFacingError as exc:  # bad input, too many questions, or speech recognition unavailable
        yield InputRejected.of(exc)
        return
    if checked is None:  # stopped while transcribing: nothing was added
        yield TurnDone("interrupted", "")
        return
    parts, photos = checked
    rejected: str | None = None
    with session.lock:
        conversation = session.conversation
        stopped = token.cancelled  # stopped (or replaced) just now, before anything was added
        if not stopped:
            try:
                parts = _keep_uploads(session, conversation, parts, photos)
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
    """Answer the last question again; the earlier answers are kept as its other versions."""

    def drop_answer(conversation: Conversation) -> tuple[Callable[[], None], list[AnswerVersion]]:
        previous = conversation.turns[-1] if conversation.turns[-1].role == "assistant" else None
        conversation.drop_last_answer()

        def undo() -> None:  # refused: keep the old answer rather than none
            if previous is not None:
                conversation.turns.append(previous)

        return undo, previous.versions() if previous is not None else []

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

    def replace_words(conversation: Conversation) -> tuple[Callable[[], None], list[AnswerVersion]]:
        backup = list(conversation.turns)
        conversation.edit_last_user_text(text)
        return lambda: conversation.turns.__setitem__(slice(None), backup), []  # answers to other words: not kept

    yield from _answer_again(session, services, params, speech, replace_words, "There is no message to edit yet.")


def _answer_again(session: ChatSession, services: Services, params: GenerationParams, speech: Speech | None,
                  change: Callable[[Conversation], tuple[Callable[[], None], list[AnswerVersion]]],
                  nothing_to_answer: str) -> Iterator[TurnEvent]:
    """Answer the last question again after `change(conversation)`, which returns how to undo itself
    and the answers the new one is written beside (it becomes the last of those versions)."""
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
            undo, earlier = change(conversation)
            reply = conversation.add_assistant("", status="interrupted")
            reply.other_versions, reply.version = earlier, len(earlier)
    if reply is None:
        yield InputRejected(nothing_to_answer)
        return

    def take_back() -> None:
        _remove_turns(conversation, reply)
        undo()

    yield from _answer(session, conversation, reply, token, services, params, speech, take_back, clock)


def show_version(session: ChatSession, number: int) -> bool:
    """Show version `number` (0-based, in the order written) of the last answer, the one the
    model is then given, and save it; False when there is no such version, or an answer is
    being written (its versions are not settled yet)."""
    with session.lock:
        turns = session.conversation.turns
        last = turns[-1] if turns else None
        if (last is None or last.role != "assistant" or session.writing is not None
                or not 0 <= number <= len(last.other_versions)):
            return False
        last.show_version(number)
    session.save()
    return True


def _remove_turns(conversation: Conversation, *turns: Turn) -> None:
    conversation.turns[:] = [t for t in conversation.turns if not any(t is gone for gone in turns)]


# --- the answer ---
@dataclasses.dataclass
class _Written:
    """What an answer has come to so far."""

    pieces: list[str] = dataclasses.field(default_factory=list)
    completion: Completion | None = None
    ran_out: bool = False  # the engine's stream ended by itself
    cut: bool = False  # words the engine wrote after a Stop were dropped

    def status(self, token: CancelToken) -> str:
        # The text is whole once the engine says so, even if Stop then cut the speech.
        if self.completion is not None:
            # Words the engine had written before it heard the Stop, and were dropped, make the
            # kept answer a cut one even when the engine itself finished.
            return "interrupted" if self.completion.finish_reason == "cancelled" or self.cut else "complete"
        if self.ran_out and not token.cancelled:  # an engine that ends without a Completion
            return "complete"
        return "interrupted"


def _answer(session: ChatSession, conversation: Conversation, reply: Turn, token: CancelToken, services: Services,
            params: GenerationParams, speech: Speech | None, take_back: Callable[[], None],
            clock: StageClock) -> Iterator[TurnEvent]:
    """Write the answer into `reply`, the placeholder after the question of `conversation`.

    `take_back()` undoes the turn's change to the conversation when the question is
    refused before an answer starts. With `speech`, a SpeechWorker speaks each sentence
    as soon as it is complete, on its own thread, so the text never waits for speech.
    `clock` times the answer's stages, which are kept with the reply.
    """
    written = _Written()
    status, error = "interrupted", None
    refused: str | None = None
    refused_key: str | None = None  # the refusal's mmchat.i18n key, e.g. OUT_OF_MEMORY
    slot = None
    question = conversation.turns[conversation.turns.index(reply) - 1]
    task = task_of(question)
    with session.lock:
        session.writing = reply
    try:
        if task is not None and task.preset.measure is not None:  # answered from the pixels: no model, no line
            engine, messages = Measured(task, question), []
            voice = yield from voice_for(speech, services)
            slot = NO_SLOT
        else:
            engine = yield from wait_for_engine(services, token)
            if engine is not None:
                fitted = fit_prompt(conversation, reply, engine, services)
                messages = fitted.messages
                if fitted.notice:
                    yield Notice(fitted.notice)
                voice = yield from voice_for(speech, services)
                slot = yield from services.admission.enter(token)
        if slot is not None:
            yield from _stream_into(reply, generate(engine, messages, params, token, voice), session, token, clock,
                                    written)
        status = written.status(token)
    except Refused as exc:
        refused = str(exc)
    except GeneratorExit:  # the consumer went away (closed tab): end the work, keep what we have
        token.cancel()
        raise
    except Exception as exc:
        if out_of_memory(exc) and not written.pieces:
            # Nothing was written: the question as it stands does not fit in the GPU. Taken
            # back like a question too long, so the next question's history does not carry
            # it into the same failure, and the page puts it back in the box to shorten.
            log.warning("out of memory before the answer began: %s", exc)
            refused, refused_key = failure_message(exc), OUT_OF_MEMORY
        else:
            log.exception("generation failed")
            status, error = "error", failure_message(exc)
    finally:
        if slot is not None:
            slot.release()
        with session.lock:
            if refused is not None:
                take_back()
            else:
                clock.mark("done")
                answer = "".join(written.pieces)
                if task is not None and status == "complete":  # e.g. a brief description kept to one sentence
                    answer = task.finish(answer)
                reply.parts = [TextPart(answer)]
                reply.status = status
                reply.timings = dict(clock.marks)
            if session.writing is reply:
                session.writing = None
        unsaved = _saved(session, conversation)
    if unsaved:
        yield Notice(unsaved)
    if refused is not None:
        yield InputRejected(refused, refused_key)
    else:
        yield TurnDone(status, reply.text, error, written.completion, dict(clock.marks))


def _stream_into(reply: Turn, items, session: ChatSession, token: CancelToken, clock: StageClock,
                 written: _Written) -> Iterator[TurnEvent]:
    """The engine's text into `reply` as it comes (and out as TextDeltas), its audio out as it is."""
    with contextlib.closing(items):
        for item in items:
            if isinstance(item, Completion):
                written.completion = item
            elif token.cancelled:  # Stop: the answer is what the user saw when pressing it;
                written.cut = written.cut or isinstance(item, str)  # the engine ends within a token
                continue
            elif isinstance(item, str):
                clock.mark("first_token")
                written.pieces.append(item)
                with session.lock:
                    reply.parts = [TextPart("".join(written.pieces))]
                yield TextDelta(item)
            elif isinstance(item, Notice):  # the engine's word to the user (a remote server refused a clip)
                yield item
            else:
                clock.mark("first_audio")
                yield item  # AudioChunk
        written.ran_out = True


def _keep_uploads(session: ChatSession, conversation: Conversation, parts: list[Part],
                  media: dict[str, Photo | Clip]) -> list[Part]:
    """Copy the uploads of an accepted question into the store (uploads are temporary files).

    A photo (or a clip that came as bytes) is kept from the bytes its one read gave
    (`media`), not read again, and its copy is noted as holding those bytes, so the decoded
    photo or clip is found by the copy's path. Copies already made when one fails are not
    deleted here: a stored file may be another conversation's too (the same content is kept
    once), and the store removes those no saved turn uses by itself, after a grace time.
    """
    kept: list[Part] = []
    try:
        for part in parts:
            if isinstance(part, (ImagePart, VideoPart)) and part.path in media:
                item = media[part.path]
                part = dataclasses.replace(part, path=session.keep_upload(part.path, conversation, data=item.data))
                if part.path != item.url:
                    remember_copy(part.path, item)
            elif isinstance(part, (ImagePart, VideoPart, AudioPart)):
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


