"""A turn's input checked and made into parts: text cleaned and bounded, photos checked,
a recording transcribed (with progress), the sender's pace counted."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from ..cancel import CancelToken
from ..config import Config
from ..conversation import AudioPart, ImagePart, Part, TextPart, Turn, VideoPart
from ..errors import InputError
from ..events import Notice, Progress, Transcribed, Transcript
from ..media.photos import Photo, held_photo, read_photo
from ..media.video import Clip, ClipLimits, held_clip, read_clip
from ..presets import Task
from .rate_limit import TOO_FAST, too_fast_message, whole_seconds
from .services import POLL_SECONDS, Services

T = TypeVar("T")


@dataclass(frozen=True)
class UserInput:
    text: str = ""
    # Paths of uploaded photos, or memory:// URLs of photos read already (media.photos.read_photo).
    images: tuple[str, ...] = ()
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
    # Paths of uploaded video clips, or memory:// URLs of clips read already (media.video.read_clip).
    videos: tuple[str, ...] = ()
    # Whether the speech in the clips' sound is transcribed and given to the model (when
    # speech recognition is on and a clip has sound).
    clip_speech: bool = True


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


def checked_parts(user_input: UserInput, services: Services, cancel: CancelToken):
    """Check the input and turn it into parts, or None when the turn was stopped while
    reading a clip or transcribing. Returns (parts, media): the parts' paths are still the
    uploads', and `media` holds each photo and clip as its one decode made it, by the path
    its part holds. Yields events."""
    config = services.config
    text = check_text(user_input.text or "", config)
    if len(user_input.images) > config.max_images_per_turn:
        sent, most = len(user_input.images), config.max_images_per_turn
        raise InputError(f"You sent {sent} photos; at most {most} fit in one message.", "too_many_photos",
                         sent=sent, most=most)
    if len(user_input.videos) > config.max_videos_per_turn:  # counted before any photo or clip is read
        sent, most = len(user_input.videos), config.max_videos_per_turn
        raise InputError(f"You sent {sent} video clips; at most {most} fit in one message.", "too_many_clips",
                         sent=sent, most=most)
    max_bytes = int(config.max_upload_mb * 1e6)
    # Each photo read and decoded once, here: the checks, the model's copy and its identity.
    photos: list[Photo] = [held_photo(path) or read_photo(path, max_pixels=config.max_image_pixels,
                                                          max_bytes=max_bytes, model_pixels=config.max_pixels)
                           for path in user_input.images]
    clips: list[Clip] = []
    for path in user_input.videos:
        clip = held_clip(path) or (yield from read_clip_showing_progress(path, config, cancel))
        if clip is None:  # stopped while the clip was read
            return None
        clips.append(clip)
    notices = [item.notice for item in [*photos, *clips] if item.notice]  # e.g. an animation's first frame
    parts: list[Part] = [ImagePart(photo.url) for photo in photos]
    for clip in clips:
        speech = ""
        if user_input.clip_speech and clip.frames.has_sound and services.stt is not None:
            speech = yield from clip_speech(clip, services, cancel)
            if speech is None:
                return None
        parts.append(VideoPart(clip.url, round(clip.frames.duration, 2), speech))
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
            raise InputError(needs_photos(task))
        if len(user_input.videos) < task.preset.clips:
            raise InputError(f"{task.preset.label} needs a video clip: add one, or turn on the camera in voice mode.",
                             "needs_clip", task=task.preset.label)
        parts.append(TextPart(task.question(), task.tag))
    elif text:
        parts.append(TextPart(text))
    if not any(isinstance(p, (TextPart, AudioPart)) for p in parts):
        if clips and not photos:
            raise InputError("Please type or say a question about the clip.", "no_question_clip")
        if parts:
            raise InputError("Please type or say a question about the photo.", "no_question_photo")
        raise InputError("Please type or say a question.", "no_question")
    for notice in notices:
        yield Notice(notice)
    return parts, {item.url: item for item in [*photos, *clips]}


# Transcripts of clips' sound, by (clip, seconds heard): every turn of an API conversation
# sends its clips again, and the history must read as it did when the clip was asked about.
_CLIP_SPEECH_KEPT = 64
_clip_speech: "OrderedDict[tuple[str, float], str]" = OrderedDict()
_clip_speech_lock = threading.Lock()


def known_clip_speech(clip: Clip) -> str:
    """The transcript `clip_speech` made of this clip's sound, or "" if none was made."""
    with _clip_speech_lock:
        return _clip_speech.get((clip.digest, clip.frames.seconds), "")


def clip_speech(clip: Clip, services: Services, cancel: CancelToken):
    """The speech in a clip's sound over the stretch its frames cover, as timed lines
    ("[1.5-3.0 s] Hello there"), yielding Progress while Whisper works; "" when nothing
    was heard (music, noise, silence), None if `cancel` was cancelled first."""
    from ..media.audio import load_audio
    from ..stt import speech_language

    key = (clip.digest, clip.frames.seconds)
    with _clip_speech_lock:
        if key in _clip_speech:
            _clip_speech.move_to_end(key)
            return _clip_speech[key]
    source = clip.data if clip.data is not None else clip.url
    try:
        samples = load_audio(source, max_seconds=min(clip.frames.seconds, services.config.max_audio_seconds),
                             keep_first=True)
    except InputError:  # too short to hold a word, or a damaged sound track: the frames still stand
        return ""
    while not services.stt.loaded(POLL_SECONDS):
        if cancel.cancelled:
            return None
    stt = services.stt.wait()
    transcript = yield from _with_progress(
        lambda progress: stt.transcribe(samples, language=speech_language(services.config), progress=progress,
                                        cancel=cancel),
        f"Listening to the sound of {clip.name}", cancel)
    if transcript is None:
        return None
    pieces = transcript.segments or ((0.0, transcript.duration, transcript.text),)
    # Cleaned as typed words are (control characters), not held to a message's length: Whisper wrote them.
    speech = "\n".join(f"[{start:.1f}-{end:.1f} s] {clean_text(text).strip()}"
                       for start, end, text in pieces if text.strip())
    with _clip_speech_lock:
        _clip_speech[key] = speech
        while len(_clip_speech) > _CLIP_SPEECH_KEPT:
            _clip_speech.popitem(last=False)
    return speech


def read_clip_showing_progress(path: str, config: Config, cancel: CancelToken):
    """`media.video.read_clip` of an upload, off the caller's thread (a long clip takes
    seconds), yielding Progress as its frames are taken; None if stopped first."""
    limits, max_bytes = ClipLimits.of(config), int(config.max_video_mb * 1e6)
    return (yield from _with_progress(
        lambda progress: read_clip(path, limits=limits, max_bytes=max_bytes, progress=progress),
        f"Reading your clip {Path(path).name}", cancel))


def needs_photos(task: Task) -> str:
    if task.preset.needs_two_photos:
        return f"{task.preset.label} needs two photos: add both (the earlier one first), or take two with the camera."
    return f"{task.preset.label} needs a photo: add one, or turn on the camera."


def task_of(question: Turn) -> Task | None:
    """The describe-mode task a question was asked as, if any."""
    return next((Task.from_tag(p.preset) for p in question.parts if isinstance(p, TextPart) and p.preset), None)


def transcribe_recording(path: str, services: Services, cancel: CancelToken | None = None):
    """Recording -> Transcript (returned), yielding Progress while Whisper works;
    None if `cancel` was cancelled first.

    Raises InputError when nothing was heard, so no invented text reaches the model.
    """
    from ..media.audio import SAMPLE_RATE, load_audio
    from ..stt import speech_language

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

