"""The answer's engine side: waiting for the model, the prompt that fits, and the engine's
stream merged with the speech of each finished sentence."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

from ..cancel import CancelToken
from ..conversation import Conversation, Turn
from ..engine import Completion, Engine, GenerationParams
from ..errors import UserFacingError
from ..events import AudioChunk, Notice
from ..history import HistoryTooLong, fit_history
from ..presets import Task
from ..tts import TextToSpeech
from .inputs import needs_photos
from .services import JOIN_SECONDS, POLL_SECONDS, Services, Speech

log = logging.getLogger(__name__)


class Refused(Exception):
    """The question can't be answered as it stands (too long, model unavailable)."""




def voice_for(speech: Speech | None, services: Services):
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


class NoSlot:
    """The place in line of an answer that needs none (it does not use the model)."""

    def release(self) -> None:
        pass


NO_SLOT = NoSlot()


def measured(preset, photo) -> str:
    """The answer of a preset answered from the pixels (`Preset.measure`), for a photo
    (a path, PIL image or [H, W, 3] frame)."""
    if preset.measure == "light":
        from ..media.light import read_light  # numpy and PIL only when the light is asked for

        return read_light(photo).spoken
    raise ValueError(f"no measure {preset.measure!r}")


class Measured:
    """A task answered from the photo's pixels (the light level), streamed like a model's
    answer so it is shown, spoken and saved the same way."""

    def __init__(self, task: Task, question: Turn) -> None:
        self.task, self.question = task, question

    def stream(self, messages, params, token) -> Iterator[str | Completion]:
        if not self.question.images:
            raise UserFacingError(needs_photos(self.task))
        yield measured(self.task.preset, self.question.images[-1].path)
        yield Completion("stop", 0, 0)


def wait_for_engine(services: Services, token: CancelToken):
    """The engine once loaded (returned), None if stopped first; raises Refused if it
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
        raise Refused(exc.message) from exc


def fit_prompt(conversation: Conversation, reply: Turn, engine: Engine, services: Services):
    """The history that fits the token budget, ending with the question being answered."""
    try:
        messages = conversation.to_openai(services.config.system_prompt, before=reply)
        return fit_history(messages, engine.count_tokens, services.config.history_tokens)
    except (HistoryTooLong, UserFacingError) as exc:
        raise Refused(str(exc)) from exc
    except Exception as exc:  # e.g. an image that was readable once and no longer is
        log.exception("preparing the prompt failed")
        raise Refused(f"The question could not be prepared: {exc}") from exc


_TEXT_END = object()  # put by the text pump when the engine's stream is over


@dataclass(frozen=True)
class _Failure:
    exception: BaseException


def generate(engine: Engine, messages: list[dict], params: GenerationParams, token: CancelToken,
              voice: TextToSpeech | None) -> Iterator[str | Completion | AudioChunk]:
    """The engine's stream; with a voice, merged with the audio of each finished sentence.

    With speech, one thread pumps the engine's text into a queue (feeding the speech
    worker as it goes) and the worker adds each sentence's audio to the same queue, so
    neither waits for the other and each piece goes out as soon as it exists.
    """
    if voice is None:
        yield from engine.stream(messages, params, token)
        return
    from ..tts.worker import SpeechWorker

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


def out_of_memory(exc: Exception) -> bool:
    return type(exc).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError, without importing torch here


def failure_message(exc: Exception) -> str:
    if out_of_memory(exc):
        return ("The GPU ran out of memory for this answer. Try fewer or smaller photos, a shorter "
                "answer, or a New chat (a long conversation needs memory too).")
    if isinstance(exc, UserFacingError):  # it says what went wrong and how to fix it already
        return exc.message
    return f"The model failed while answering: {type(exc).__name__}: {exc}"
