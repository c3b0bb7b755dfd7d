"""Voice mode for one session: the microphone and camera in, turns out, barge-in.

    loop = VoiceLoop(session, services)
    heard = loop.hear(48_000, chunk)          # every microphone chunk, in order
    loop.see(frame)                           # camera frames (about two a second; camera.py)
    if heard.turn:                            # the person finished a question
        loop.answers.start(heard.turn, send)  # answered now, on a thread (answering.py), or:
        for event in loop.answer(heard.turn, params, speech): ...   # turn events, as turn.submit's

`hear` runs the endpoint detector and the streaming transcriber on each chunk, so when
the question ends only its last stretch is left to transcribe. Speech that starts while
the assistant answers stops the answer at once (barge-in: the session's cancel scope),
unless it is the assistant's own voice coming back through the speakers (`EchoGuard`).
`answer` turns the finished question, with the camera's frame at its end (or its last
seconds, for a question about movement), into a turn of the shared turn layer, or carries
out a spoken command ("stop", "new chat"...).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from mmchat.media.audio import SAMPLE_RATE
from mmchat.engine import GenerationParams
from mmchat.events import AudioChunk, InputRejected, Notice, QuestionAdded, Transcript, TurnEvent
from mmchat.presets import DESCRIBE, Task, Verbosity, preset_for_words
from mmchat.turn.services import Speech
from mmchat.turn.session import ChatSession
from mmchat.voice.answering import Answers
from mmchat.voice.camera import Camera, View
from mmchat.voice.commands import Command, spoken_command
from mmchat.voice.echo import EchoGuard
from mmchat.voice.endpoint import EndpointDetector, EndpointSettings, FalseStart, SpeechStarted, TurnEnded
from mmchat.voice.hold import TrailingWordHold, ends_mid_thought
from mmchat.voice.speculate import Speculation
from mmchat.voice.streaming import FINAL_BEAM, StreamingTranscriber

log = logging.getLogger(__name__)

State = Literal["listening", "hearing", "thinking", "speaking"]
STATE_WORDS: dict[State, str] = {
    "listening": "Listening",
    "hearing": "Hearing you",
    "thinking": "Thinking",
    "speaking": "Speaking (talk to interrupt)",
}

# The page plays what it is sent a little after it arrives (its audio buffer); the
# assistant counts as speaking until then.
PLAYBACK_SLACK_SECONDS = 0.3
# Speech over the assistant's voice is told from its echo on this much of it (from the first
# speech frame): a first look as early as EchoGuard can match at all (its min_seconds), so
# the answer stops within about 300 ms of the person's first word, and a last one where its
# figures are sure (on 300 ms a person passes for echo about one time in eight; on 500 ms,
# seldom), for those the first look took for echo.
ECHO_CHECKS_SECONDS = (0.25, 0.5)
# The early look barges in only when the match is clearly poor: on so little audio some of
# the assistant's own echo scores under EchoGuard's threshold, and stopping the answer for
# its own voice is worse than a quarter second more of talking over the person.
EARLY_ECHO_SCORE = 0.15
# Whisper's own confidence that a stretch was no speech at all: above it, a transcript is a
# guess at noise ("Thank you.") and no question.
NO_SPEECH_LIMIT = 0.6


@dataclass
class HeardTurn:
    """A question the person has finished saying, waiting for `VoiceLoop.answer`."""

    number: int
    ended: TurnEnded
    speech_ended_at: float  # time.monotonic() when the last word ended (as the server heard it)
    view: View  # what the camera showed at the end of the question
    # Its transcript is finished at once, on a thread, while its answer's thread starts.
    transcribed: threading.Event = field(default_factory=threading.Event)
    transcript: Transcript | None = None
    transcribed_at: float = 0.0


@dataclass(frozen=True)
class Heard:
    """What one microphone chunk changed."""

    state: State
    turn: int | None = None  # the number of a question that just ended (for `answer`)
    barged_in: bool = False  # the person spoke over the answer: it was stopped
    speech_ended_at: float | None = None  # the question's end of speech (time.monotonic()), with `turn`


class VoiceLoop:
    """One session's voice mode. `hear` and `see` are called by the voice socket;
    `answer` by the thread that answers a heard question (`answers.start`)."""

    def __init__(self, session: ChatSession, services, *, settings: EndpointSettings | None = None,
                 echo_guard: EchoGuard | None = None) -> None:
        if services.stt is None:
            raise ValueError("voice mode needs speech recognition")
        from mmchat.stt import speech_language

        self.session = session
        self.services = services
        # How long a task's answer is ("describe", "read this"): brief by default, as a first
        # description should be (details come when asked); the page sets the user's choice.
        self.verbosity = Verbosity.BRIEF
        # What each spoken question is answered with (the page sets the user's settings).
        config = services.config
        self.answer_with: tuple[GenerationParams, Speech | None] = (
            GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature),
            Speech(config.voice, config.speech_rate) if services.tts is not None else None)
        self.answers = Answers(self)
        self.fed_at = 0.0  # when the microphone's last chunk came (time.monotonic())
        stt = services.stt.wait()  # loaded at start-up; the first chunk waits for it at most
        language = speech_language(services.config)
        self._quick_hold = TrailingWordHold(stt, language=language)
        self._detector = EndpointDetector(settings or EndpointSettings.from_config(services.config), hold=self._hold)
        self._transcriber = StreamingTranscriber(stt, language=language)
        self._speculation = Speculation(stt, language=language, beam_size=FINAL_BEAM)
        self.echo_guard = echo_guard or EchoGuard()
        # The microphone side (detector, transcriber) takes one chunk at a time; `answer`
        # borrows it to finish a transcript, and the chunks that come meanwhile wait.
        self._mic = threading.Lock()
        self._state = threading.Lock()  # the fields below
        self._numbers = itertools.count(1)
        self._pending: dict[int, HeardTurn] = {}
        self._answering: int | None = None
        self._barges = 0  # barge-ins so far: an answer begun before the latest one stops
        # EchoGuard schedules what the page is sent to play; a barge-in cuts it off here.
        self._playback_cut = -np.inf
        # turn_start of the detector's turn under way once it is known whose it is:
        self._person_turn: int | None = None  # the person's
        self._echo_turn: int | None = None  # our own voice coming back
        self._doubt: SpeechStarted | None = None  # speech during playback, not yet told from echo
        self._checked: tuple[SpeechStarted | None, int] = (None, 0)  # the echo checks done on it
        self.camera = Camera(config.camera_clip_seconds)
        self._last_frame_path: str | None = None  # the previous question's frame, as stored
        # (stream position at a chunk's end, when it arrived): the stream clock to wall time.
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=600)
        self._temporary = Path(tempfile.mkdtemp(prefix="mmchat-voice-"))

    # --- the microphone and the camera ---

    def hear(self, sample_rate: int, samples: np.ndarray) -> Heard:
        """Take one microphone chunk ([N] or [N, C], any rate)."""
        with self._mic:
            events = self._detector.feed(samples, sample_rate)
            now = self.fed_at = time.monotonic()
            self._arrivals.append((self._detector.position, now))
            self._transcriber.update(self._detector)
            self._speculation.update(self._detector)
            heard, barged_in = None, False
            for event in events:
                if isinstance(event, SpeechStarted):
                    barged_in |= self._speech_started(event, now)
                elif isinstance(event, TurnEnded):
                    self._doubt = None
                    heard = self._turn_ended(event, now) or heard
                elif isinstance(event, FalseStart):
                    self._doubt = self._echo_turn = None
            if self._doubt is not None and self._detector.in_turn:
                barged_in |= self._tell_from_echo()
            if heard is None:
                return Heard(self.state, barged_in=barged_in)
            return Heard(self.state, heard.number, barged_in, heard.speech_ended_at)

    def _hold(self, audio: np.ndarray) -> bool:
        """Wait longer at this pause? From the pause's speculative transcript when there is one."""
        guess = self._speculation.for_pause(self._detector)
        if guess is None:
            return self._quick_hold(audio)
        return ends_mid_thought(guess.text)

    def see(self, frame: np.ndarray | None) -> None:
        """The camera's latest frame (RGB uint8)."""
        self.camera.see(frame)

    def camera_photo(self, folder: Path) -> Path | None:
        """What the camera sees now, as a JPEG in `folder` (for the page's Describe); None
        when no fresh frame has come (the camera is off or voice mode has just started)."""
        return self.camera.photo(folder)

    def camera_clip(self, folder: Path) -> Path | None:
        """The camera's last seconds as a clip in `folder` (for the page's Describe, "What is
        happening"); None when they are too few to show motion or the camera is off."""
        return self.camera.clip(folder)

    def stop_listening(self) -> None:
        """Voice mode off: forget the question under way (an answer already running goes on)."""
        with self._mic:
            self._detector.reset()
            self._transcriber.abandon()
            self._speculation.drop()
        with self._state:
            self._pending.clear()

    @property
    def state(self) -> State:
        with self._state:
            if self._detector.in_turn and self._person_turn == self._detector.turn_start and self._heard_speech():
                return "hearing"
            if time.monotonic() < self._playing_until():
                return "speaking"
            if self._answering is not None or self._pending:
                return "thinking"
            return "listening"

    def _heard_speech(self) -> bool:
        return self._detector.silence_ms < self._detector.settings.end_of_turn_ms

    @property
    def _busy(self) -> bool:
        """The assistant is answering or still playing an answer."""
        return self._answering is not None or bool(self._pending) or time.monotonic() < self._playing_until()

    def _playing_until(self) -> float:
        """When the page will have played what it was sent, unless a barge-in stopped it (0)."""
        end = self.echo_guard.playing_until
        return end + PLAYBACK_SLACK_SECONDS if end > self._playback_cut else 0.0

    def _speech_started(self, started: SpeechStarted, now: float) -> bool:
        """Barge in if the assistant is answering (True); while it talks, only once the
        speech is told from the assistant's own voice (`_tell_from_echo`)."""
        with self._state:
            busy, playing = self._busy, now < self._playing_until()
        if playing:
            self._doubt = started
            return self._tell_from_echo()
        self._person_turn = self._detector.turn_start
        if busy:
            self.barge_in()
        return busy

    def _tell_from_echo(self) -> bool:
        """At each of ECHO_CHECKS_SECONDS of speech: the person's voice barges in (True);
        our own voice, at the last check, is ignored to its end."""
        started, detector = self._doubt, self._detector
        heard = detector.turn_audio()[started.start - detector.turn_start :]
        seconds = len(heard) / SAMPLE_RATE
        if seconds < ECHO_CHECKS_SECONDS[0]:
            return False
        due = [limit for limit in ECHO_CHECKS_SECONDS if limit <= seconds]
        if self._checked == (started, len(due)):
            return False  # this check is done; the next one is not due yet
        self._checked = (started, len(due))
        final = len(due) == len(ECHO_CHECKS_SECONDS)
        limit = self.echo_guard.threshold if final else min(EARLY_ECHO_SCORE, self.echo_guard.threshold)
        if self.echo_guard.similarity(heard) < limit:
            self._doubt = None
            self._person_turn = detector.turn_start
            self.barge_in()
            return True
        if final:
            self._doubt = None
            self._echo_turn = detector.turn_start
        return False

    def barge_in(self) -> None:
        """Stop the answer (kept, marked stopped) and drop the questions not yet answered."""
        with self._state:
            self._pending.clear()
            self._barges += 1
            # Still remembered by the guard: what was played may yet come back as echo.
            self._playback_cut = self.echo_guard.playing_until
        self.session.cancel_scope.cancel()

    def _turn_ended(self, ended: TurnEnded, now: float) -> HeardTurn | None:
        if self._echo_turn == ended.start:  # our own voice from start to end
            self._echo_turn = None
            self._transcriber.abandon()
            return None
        with self._state:
            overlapped_playback = now - (ended.at - ended.start) / SAMPLE_RATE < self._playing_until()
        # A safety net: speech during playback was told from echo at its start already.
        if overlapped_playback and self.echo_guard.is_echo(ended.audio):
            self._transcriber.abandon()
            return None
        view = self.camera.view()
        with self._state:
            number = next(self._numbers)
            heard = self._pending[number] = HeardTurn(number, ended, self._wall_time(ended.speech_end, now), view)
        threading.Thread(target=self._finish_transcript, args=(heard,), name="mmchat-voice-transcript",
                         daemon=True).start()
        return heard

    def _finish_transcript(self, heard: HeardTurn) -> None:
        try:
            # The microphone side's transcriber: the chunks that come meanwhile wait for it.
            guess = self._speculation.for_turn(heard.ended)
            with self._mic:
                if guess is not None:  # transcribed at the pause that turned out to end the turn
                    self._transcriber.abandon()
                    heard.transcript = guess
                else:
                    heard.transcript = self._transcriber.finish(heard.ended)
        except Exception:  # noqa: BLE001 - the question is dropped, the loop goes on listening
            log.exception("voice: transcribing a question failed")
        finally:
            heard.transcribed_at = time.monotonic()
            heard.transcribed.set()

    def _wall_time(self, position: int, now: float) -> float:
        """When the server received the stream's audio at `position` (the chunk it was in)."""
        for end, arrived in self._arrivals:
            if end >= position:
                return arrived - (end - position) / SAMPLE_RATE
        return now

    # --- answering ---

    def answer(self, number: int, params: GenerationParams, speech, on_transcript=None) -> Iterator[TurnEvent]:
        """Answer heard question `number` (or carry out its command); turn events as
        `turn.submit` yields them. Nothing, if it was dropped (barge-in, voice mode off),
        also while its transcript was being finished. `on_transcript(transcript)`: once known."""
        from mmchat.turn import UserInput, submit

        with self._state:
            heard = self._pending.get(number)
        if heard is None:
            return
        heard.transcribed.wait()
        with self._state:
            if self._pending.pop(number, None) is None:
                return
            self._answering, barges = number, self._barges
        files: list[Path] = []
        try:
            transcript, transcribed_at = heard.transcript, heard.transcribed_at
            if transcript is not None and on_transcript is not None:
                on_transcript(transcript)
            if transcript is None:
                yield InputRejected("Your question could not be transcribed; please say it again.")
                return
            text = transcript.text.strip()
            if not text or transcript.no_speech_prob > NO_SPEECH_LIMIT:
                log.info("voice: no words in %.1f s of sound", heard.ended.speech_seconds)
                return
            command = spoken_command(text)
            if command is Command.STOP:
                self.barge_in()
                yield Notice("Stopped.")
                return
            if command is Command.NEW_CHAT:
                self.session.new_chat()
                self._last_frame_path = None
                yield Notice("New chat started.")
                return
            # A task said by name ("describe", "read this", "how bright is it?") is asked as the
            # preset, at the user's verbosity; "describe" names the describe preset.
            # Without a camera frame, only "describe" says the camera is needed; "what is this?"
            # and the like are then ordinary questions (about the photos in the chat, if any).
            preset = DESCRIBE if command is Command.DESCRIBE else preset_for_words(text)
            if heard.view.frame is None and command is not Command.DESCRIBE:
                preset = None
            task = Task(preset, self.verbosity) if preset is not None else None
            shown = self._camera_media(heard, command, task, files)
            if isinstance(shown, InputRejected):
                yield shown
                return
            images, clips = shown
            recording = self._write_recording(heard.ended.audio, number)
            files.append(recording)
            if task is not None:  # the preset's prompt is the question; the recording is not needed
                user_input = UserInput("", tuple(images), task=task, asked_at=heard.speech_ended_at,
                                       stages_done=(("transcript", transcribed_at),), videos=tuple(clips))
            else:
                user_input = UserInput("", tuple(images), str(recording), audio_transcript=transcript,
                                       asked_at=heard.speech_ended_at, stages_done=(("transcript", transcribed_at),),
                                       videos=tuple(clips))
            with contextlib.closing(submit(self.session, user_input, self.services, params, speech)) as events:
                for event in events:
                    if barges is not None and self._barges != barges:  # barged in on before the turn's
                        self.session.cancel_scope.cancel()                # token existed: stop it now
                    barges = None
                    if isinstance(event, QuestionAdded) and heard.view.frame is not None:
                        self._last_frame_path = self._stored_frame()
                    elif isinstance(event, AudioChunk):
                        self._playing(event)
                    yield event
        finally:
            with self._state:
                if self._answering == number:
                    self._answering = None
            for path in files:
                path.unlink(missing_ok=True)

    def _playing(self, chunk: AudioChunk) -> None:
        """The page is sent `chunk` to play: the assistant speaks until it has played."""
        self.echo_guard.played(chunk.samples, chunk.sample_rate)

    def _stored_frame(self) -> str | None:
        """The path the turn layer stored this question's frame at (its last photo)."""
        with self.session.lock:
            index = self.session.conversation.last_user_index()
            if index is None:
                return None
            images = self.session.conversation.turns[index].images
            return images[-1].path if images else None

    def _camera_media(self, heard: HeardTurn, command: Command | None, task: Task | None,
                      files: list[Path]) -> tuple[list[str], list[str]] | InputRejected:
        """What of the camera goes with the question, (photos, clips), each file also in
        `files` (removed after the turn); or why the question can't be asked. "What is
        happening?" and questions about movement take its last seconds, as a clip; "what
        changed?" and Compare the previous question's frame and this one; the rest the frame."""
        number, view = heard.number, heard.view
        if (task is not None and task.preset.clips) or (task is None and command is Command.MOTION):
            clip = view.write_clip(self._temporary / f"camera-{number}.mp4")
            if clip is not None:
                files.append(clip)
                return [], [str(clip)]  # the clip ends with the frame the question would have had
            if task is not None:
                return InputRejected("Keep the camera on for a few seconds, then ask again: there is not yet "
                                     "enough of it to see what is happening.")
        images = []
        wants_previous = command is Command.COMPARE or (task is not None and task.preset.needs_two_photos)
        if wants_previous and self._last_frame_path and Path(self._last_frame_path).is_file():
            images.append(self._last_frame_path)
        if view.frame is not None:
            images.append(str(view.write_frame(self._temporary / f"frame-{number}.jpg")))
            files.append(Path(images[-1]))
        elif task is not None:
            return InputRejected(f"Turn the camera on for {task.preset.label.lower()} (or upload a photo).")
        return images, []

    def _write_recording(self, audio: np.ndarray, number: int) -> Path:
        import soundfile

        path = self._temporary / f"question-{number}.wav"
        soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        return path

    def close(self) -> None:
        """The session ended: stop the background transcription, remove temporary files."""
        self.stop_listening()
        for path in self._temporary.glob("*"):
            path.unlink(missing_ok=True)
        self._temporary.rmdir()
