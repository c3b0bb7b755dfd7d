"""Speech endpoints' work: recordings to text through the STT adapter, text to audio
files through the TTS adapter, and the file formats OpenAI's audio API speaks."""

from __future__ import annotations

import io
import re

import av
import numpy as np
import soundfile as sf

from ..media.audio import load_audio
from ..media.resample import resample
from ..cancel import CancelToken
from ..errors import InputError, UserFacingError
from ..events import Transcript
from ..stt import speech_language
from ..tts import SpeakableSentences
from ..turn import POLL_SECONDS, Services, Speech
from .errors import ApiError

# OpenAI's voices: code written for its API names one of these; this server speaks
# them all with its own default voice.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                           "shimmer", "verse", "marin", "cedar"})
# A voice the request may name: an installed voice's name, never a path on the server.
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
PCM_RATE = 24_000  # OpenAI's raw "pcm": 24 kHz, 16-bit signed little-endian, mono

MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}
# format -> (container, codec, sample rate); Opus only runs at 48 kHz and its kin.
_ENCODED = {"mp3": ("mp3", "libmp3lame", None), "opus": ("ogg", "libopus", 48_000), "aac": ("adts", "aac", None)}


# --- speech in ---

def transcribe(services: Services, data: bytes, language: str | None, cancel: CancelToken) -> Transcript | None:
    """The recording's words (None if `cancel` was cancelled first); ApiError for what can't be done."""
    config = services.config
    if services.stt is None:
        raise ApiError(503, "Speech recognition is turned off on this server (--stt-backend none).",
                       code="stt_unavailable")
    if language is not None and not _LANGUAGE.match(language):
        raise ApiError(400, f"Invalid language {language!r}: use an ISO-639-1 code such as 'en' or 'zh'.",
                       param="language")
    try:
        samples = load_audio(data, max_seconds=config.max_audio_seconds)
    except InputError as exc:
        raise ApiError(400, exc.message, param="file") from None
    while not services.stt.loaded(POLL_SECONDS):
        if cancel.cancelled:
            return None
    try:
        stt = services.stt.wait()
        return stt.transcribe(samples, language=language or speech_language(config), cancel=cancel)
    except UserFacingError as exc:  # e.g. Chinese asked of an English-only model
        status = 400 if language else 503
        raise ApiError(status, exc.message, param="language" if language else None) from None


def _segments(transcript: Transcript) -> list[tuple[float, float, str]]:
    if transcript.segments:
        return [(start, end, text.strip()) for start, end, text in transcript.segments]
    return [(0.0, transcript.duration, transcript.text.strip())] if transcript.text.strip() else []


def _stamp(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def as_srt(transcript: Transcript) -> str:
    return "".join(f"{number}\n{_stamp(start, ',')} --> {_stamp(end, ',')}\n{text}\n\n"
                   for number, (start, end, text) in enumerate(_segments(transcript), 1))


def as_vtt(transcript: Transcript) -> str:
    return "WEBVTT\n\n" + "".join(f"{_stamp(start, '.')} --> {_stamp(end, '.')}\n{text}\n\n"
                                  for start, end, text in _segments(transcript))


def as_verbose_json(transcript: Transcript) -> dict:
    return {
        "task": "transcribe",
        "language": transcript.language or "",
        "duration": round(transcript.duration, 3),
        "text": transcript.text.strip(),
        "segments": [{"id": number, "seek": 0, "start": round(start, 3), "end": round(end, 3), "text": text,
                      "tokens": [], "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0,
                      "no_speech_prob": transcript.no_speech_prob}
                     for number, (start, end, text) in enumerate(_segments(transcript))],
    }


# --- speech out ---

def voice_for(name: str, config) -> str:
    if name.lower() in OPENAI_VOICES:
        return config.voice
    if name == "auto" or (_VOICE_NAME.match(name) and not name.lower().endswith(".onnx")):
        return name
    raise ApiError(400, f"Invalid voice {name!r}: name an installed voice, or one of OpenAI's voice names "
                        "(which speak with this server's default voice).", param="voice")


def synthesize(services: Services, text: str, voice: str, speed: float, cancel: CancelToken) -> tuple[np.ndarray, int]:
    """[N] float32 samples of `text` spoken, and their sample rate."""
    if services.tts is None:
        raise ApiError(503, "Speech output is turned off on this server (--tts-backend none).",
                       code="tts_unavailable")
    try:
        tts = services.tts(Speech(voice_for(voice, services.config), speed))
    except UserFacingError as exc:
        raise ApiError(400, exc.message, param="voice") from None
    speakable = SpeakableSentences()
    sentences = speakable.feed(text) + speakable.flush()
    if not sentences:
        raise ApiError(400, "The input has nothing that can be spoken (only markup or symbols).", param="input")
    chunks = [chunk.samples for chunk in tts.stream(sentences, cancel)]
    if not chunks:
        return np.zeros(0, dtype=np.float32), tts.sample_rate
    return np.concatenate(chunks).astype(np.float32, copy=False), tts.sample_rate


def encode(samples: np.ndarray, rate: int, response_format: str) -> bytes:
    pcm16 = _pcm16(samples)
    if response_format in ("wav", "flac"):
        out = io.BytesIO()
        sf.write(out, pcm16, rate, format=response_format.upper(), subtype="PCM_16")
        return out.getvalue()
    if response_format == "pcm":
        return _pcm16(resample(samples, rate, PCM_RATE)).tobytes()
    container_format, codec, codec_rate = _ENCODED[response_format]
    return _encoded(pcm16, rate, container_format, codec, codec_rate or rate)


def _frame(pcm16: np.ndarray, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(pcm16.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


def _pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")


def _encoded(pcm16: np.ndarray, rate: int, container_format: str, codec: str, codec_rate: int) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate, layout="mono")
        # The encoder wants its own sample format, rate and frame size; PyAV's encode()
        # converts and re-frames what it is given.
        if pcm16.size:
            for packet in stream.encode(_frame(pcm16, rate)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
