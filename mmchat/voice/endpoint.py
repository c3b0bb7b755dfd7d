"""Where a spoken turn starts and ends, on a live stream of microphone chunks.

    detector = EndpointDetector(EndpointSettings.from_config(config))
    for chunk in mic:                                    # any length, any rate
        for event in detector.feed(chunk, 48_000):
            if isinstance(event, SpeechStarted): ...     # barge-in: stop talking
            elif isinstance(event, TurnEnded): ...       # event.audio -> Whisper
            elif isinstance(event, FalseStart): ...      # it was a cough: carry on

Silero VAD scores every 32 ms of 16 kHz audio. A turn ends once the speech has been
followed by `end_of_turn_ms` of silence (or runs past `max_turn_seconds`). Every
position is stream time: 16 kHz samples fed so far, never the wall clock, so a
detector that falls behind and catches up decides exactly as one that kept pace.
"""

from __future__ import annotations

import importlib.resources
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal, Union

import numpy as np
import onnxruntime

from mmchat.media.audio import SAMPLE_RATE
from mmchat.config import Config
from mmchat.media.resample import StreamResampler

FRAME = 512  # samples Silero scores at once at 16 kHz (32 ms); the model takes no other size
_CONTEXT = 64  # samples of the previous frame the model sees in front of each one
_FRAME_MS = FRAME * 1000 / SAMPLE_RATE


@dataclass(frozen=True)
class EndpointSettings:
    end_of_turn_ms: int = 600  # silence after speech that ends the turn
    threshold: float = 0.5  # VAD probability that counts as speech (lower: more sensitive)
    min_speech_ms: int = 250  # less speech than this is a click, a cough or a breath: no turn
    max_turn_seconds: float = 30.0  # a turn this long ends even mid-speech (Whisper's window)
    # Speech needed before SpeechStarted: short, since barge-in waits on it, yet more than
    # one frame, as single frames of noise score high now and then.
    start_ms: int = 96
    pre_roll_ms: int = 300  # audio kept before the first speech frame: soft word onsets
    post_roll_ms: int = 200  # silence kept after the last speech frame
    hold_ms: int = 700  # extra silence to wait when the hold callback says so

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"VAD threshold must be between 0 and 1, got {self.threshold}")
        if self.end_of_turn_ms <= 0 or self.max_turn_seconds <= 0:
            raise ValueError("end_of_turn_ms and max_turn_seconds must be positive")
        if min(self.min_speech_ms, self.start_ms, self.pre_roll_ms, self.post_roll_ms, self.hold_ms) < 0:
            raise ValueError("durations must not be negative")

    @classmethod
    def from_config(cls, config: Config, **overrides) -> "EndpointSettings":
        return cls(
            end_of_turn_ms=config.end_of_turn_ms,
            threshold=config.voice_sensitivity,
            min_speech_ms=config.min_speech_ms,
            max_turn_seconds=config.max_turn_seconds,
            **overrides,
        )


@dataclass(frozen=True)
class SpeechStarted:
    """The VAD is sure someone speaks (what barge-in acts on)."""

    start: int  # stream position (16 kHz samples) of the first speech frame
    at: int  # stream position where the detector became sure


@dataclass(frozen=True)
class FalseStart:
    """What SpeechStarted announced ended too short to be a turn (a cough, a click)."""

    start: int
    at: int


@dataclass(frozen=True)
class TurnEnded:
    """The person finished a turn; `audio` is what to transcribe."""

    audio: np.ndarray  # [N] float32, 16 kHz, mono: the utterance with a little padding
    start: int  # stream position of audio[0]
    speech_end: int  # stream position just after the last speech frame
    at: int  # stream position where the turn was declared ended
    reason: Literal["silence", "max_length", "stream_end"]

    @property
    def speech_seconds(self) -> float:
        return (self.speech_end - self.start) / SAMPLE_RATE


EndpointEvent = Union[SpeechStarted, FalseStart, TurnEnded]

# Asked once per pause, when the pause has lasted end_of_turn_ms, with the turn's audio
# so far: True waits `hold_ms` longer before ending the turn ("and...", "um...").
HoldCallback = Callable[[np.ndarray], bool]


# --- Silero VAD: one ONNX session per process, one recurrent state per stream ---

_session: onnxruntime.InferenceSession | None = None
_session_lock = threading.Lock()


def silero_session() -> onnxruntime.InferenceSession:
    """The silero-vad package's ONNX model, loaded once; `run` is safe from many threads."""
    global _session
    with _session_lock:
        if _session is None:
            path = importlib.resources.files("silero_vad.data") / "silero_vad.onnx"
            options = onnxruntime.SessionOptions()
            # One frame is a few hundred microseconds of work: threads would cost more
            # than they give, and many sessions' streams share the CPU.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            _session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        return _session


class _VadStream:
    """Silero's state for one stream: its recurrent state and the previous frame's tail."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self._session = session
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame])[None, :]  # [1, 64 + 512]
        prob, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = frame[-_CONTEXT:]
        return float(prob[0, 0])


def _frames(ms: float) -> int:
    return int(np.ceil(ms / _FRAME_MS))


class EndpointDetector:
    """Turns a live stream of audio chunks into SpeechStarted / FalseStart / TurnEnded.

    One detector per microphone stream; not thread-safe (feed it from one place).
    `hold` is asked whether to wait longer at a pause that would end the turn.
    """

    def __init__(self, settings: EndpointSettings | None = None, *, hold: HoldCallback | None = None) -> None:
        self.settings = settings or EndpointSettings()
        self._hold = hold
        self._vad = _VadStream(silero_session())
        self._resample = StreamResampler()
        s = self.settings
        self._on = s.threshold
        # Hysteresis as in Silero's own segmenter: a dip just under the threshold inside
        # a word is not yet silence.
        self._off = max(s.threshold - 0.15, 0.01)
        self._min_speech_frames = _frames(s.min_speech_ms)
        # Never more than a turn needs, so every TurnEnded has had its SpeechStarted.
        self._start_frames = max(min(_frames(s.start_ms), self._min_speech_frames), 1)
        self._end_frames = _frames(s.end_of_turn_ms)
        self._hold_frames = _frames(s.hold_ms)
        self._max_frames = max(_frames(s.max_turn_seconds * 1000), 1)
        self._post_frames = min(_frames(s.post_roll_ms), self._end_frames)
        self._pending = np.zeros(0, np.float32)  # 16 kHz samples short of a whole frame
        self._pre_roll: deque[np.ndarray] = deque(maxlen=_frames(s.pre_roll_ms))
        self.position = 0  # 16 kHz samples scored so far: the stream clock
        self._idle()

    def _idle(self) -> None:
        self._turn: list[np.ndarray] | None = None  # frames of the turn under way, pre-roll first
        self._turn_start = 0
        self._speech_start = 0
        self._voiced = 0  # speech frames in the turn
        self._announced: SpeechStarted | None = None
        self._silent = 0  # silence frames since the last speech frame
        self._speaking = False  # hysteresis state
        self._wait_frames = 0  # silence that ends the turn now (grows when held)
        self._asked = False  # hold callback asked during this pause

    def feed(self, samples: np.ndarray, sample_rate: int) -> list[EndpointEvent]:
        """Score a chunk ([N] or [N, C], int or float, any rate); the events it caused."""
        audio = self._resample(samples, sample_rate)
        return self._score(audio)

    def flush(self) -> list[EndpointEvent]:
        """The stream has ended (microphone off): a turn under way ends now."""
        events = self._score(self._resample.flush())
        if self._turn is not None:
            last = self._finish("stream_end")
            if last is not None:
                events.append(last)
        self._pending = np.zeros(0, np.float32)
        return events

    def reset(self) -> None:
        """Forget everything heard (e.g. while the assistant's own voice played)."""
        self._vad.reset()
        self._pending = np.zeros(0, np.float32)
        self._pre_roll.clear()
        self._idle()

    @property
    def in_turn(self) -> bool:
        """A turn is under way (speech was heard and its end has not come yet)."""
        return self._turn is not None

    @property
    def silence_ms(self) -> float:
        """How long the current pause inside the turn has lasted (0 while speaking)."""
        return self._silent * _FRAME_MS if self._turn is not None else 0.0

    @property
    def turn_start(self) -> int | None:
        """Stream position of the turn's first sample (None between turns): tells turns apart."""
        return self._turn_start if self._turn is not None else None

    def turn_audio(self) -> np.ndarray:
        """The turn's audio so far, from the same first sample as its TurnEnded.audio."""
        return np.concatenate(self._turn) if self._turn else np.zeros(0, np.float32)

    def _score(self, audio: np.ndarray) -> list[EndpointEvent]:
        if self._pending.size:
            audio = np.concatenate([self._pending, audio])
        whole = len(audio) // FRAME * FRAME
        self._pending = audio[whole:].copy()
        events: list[EndpointEvent] = []
        for offset in range(0, whole, FRAME):
            frame = audio[offset : offset + FRAME]
            event = self._step(frame, self._vad(frame))
            if event is not None:
                events.append(event)
        return events

    def _step(self, frame: np.ndarray, prob: float) -> EndpointEvent | None:
        frame_start = self.position
        self.position += FRAME
        if prob >= self._on:
            self._speaking = True
        elif prob < self._off:
            self._speaking = False

        if self._turn is None:
            if not self._speaking:
                self._pre_roll.append(frame)
                return None
            self._turn = list(self._pre_roll)
            self._pre_roll.clear()
            self._turn_start = frame_start - len(self._turn) * FRAME
            self._speech_start = frame_start
            self._wait_frames = self._end_frames

        self._turn.append(frame)
        if self._speaking:
            self._voiced += 1
            self._silent = 0
            self._wait_frames, self._asked = self._end_frames, False
        else:
            self._silent += 1

        if self._announced is None and self._voiced >= self._start_frames:
            self._announced = SpeechStarted(start=self._speech_start, at=self.position)
            return self._announced
        if self.position - self._speech_start >= self._max_frames * FRAME:
            return self._finish("max_length")
        if self._silent >= self._wait_frames:
            if self._should_hold():
                self._wait_frames = self._end_frames + self._hold_frames
                return None
            return self._finish("silence")
        return None

    def _should_hold(self) -> bool:
        if self._hold is None or self._asked or self._voiced < self._min_speech_frames:
            return False
        self._asked = True
        speech = self._turn[: len(self._turn) - self._silent + self._post_frames]
        return bool(self._hold(np.concatenate(speech)))

    def _finish(self, reason: str) -> EndpointEvent | None:
        turn, announced, voiced, silent = self._turn, self._announced, self._voiced, self._silent
        start = self._turn_start
        self._idle()
        # The silence that ended the turn is also the next turn's pre-roll.
        for frame in turn[len(turn) - min(silent, self._pre_roll.maxlen) :] if silent else ():
            self._pre_roll.append(frame)
        if voiced < self._min_speech_frames:
            return FalseStart(start=announced.start, at=self.position) if announced else None
        kept = len(turn) - silent + min(silent, self._post_frames)
        speech_end = start + (len(turn) - silent) * FRAME
        return TurnEnded(
            audio=np.concatenate(turn[:kept]), start=start, speech_end=speech_end, at=self.position, reason=reason
        )
