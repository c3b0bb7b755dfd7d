"""Decode whatever a browser or a person sends into the audio Whisper expects.

Microphone recordings arrive as WebM/Opus (Chrome, Firefox) or MP4/AAC (Safari);
uploads can be WAV, FLAC, MP3, OGG or M4A at any sample rate and channel count.
PyAV (FFmpeg's libraries, bundled in its wheel) reads them all in-process.

A recording that is too long is refused from its header when the container
declares a duration, so a 3-hour file costs milliseconds; when it does not (live
WebM from MediaRecorder), decoding stops as soon as the limit is passed, so memory
never exceeds what `max_seconds` of 16 kHz audio takes.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

from mmchat.errors import InputError

SAMPLE_RATE = 16_000  # what Whisper and Silero VAD expect

# Codec padding (AAC/MP3 priming, Opus pre-skip) makes a file slightly longer than
# what was recorded; a clip of exactly the limit must still pass.
_SLACK_SECONDS = 0.5

_UNREADABLE = (
    "Could not read the recording: the file is damaged or not an audio format this app "
    "understands (WAV, FLAC, MP3, OGG, M4A or WebM)."
)


def load_audio(source: str | Path | bytes, *, max_seconds: float) -> np.ndarray:
    """Decode `source` (a file path or the file's bytes) to 16 kHz mono float32.

    Raises InputError with a message for the user when the file is empty, unreadable,
    has no audio, or is longer than `max_seconds`.
    """
    if isinstance(source, bytes):
        if not source:
            raise InputError("The recording is empty.")
        file: str | io.BytesIO = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"The recording {path.name!r} was not found.")
        if path.stat().st_size == 0:
            raise InputError("The recording is empty.")
        file = str(path)

    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InputError("The file has no sound in it (no audio track).")
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > max_seconds + _SLACK_SECONDS:
                raise InputError(_too_long(max_seconds, declared))
            samples = _decode(container, stream, max_seconds)
    except av.error.FFmpegError as exc:
        raise InputError(_UNREADABLE) from exc

    if samples.size == 0:
        raise InputError("The recording is empty: it holds no sound.")
    return samples


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the file claims, without decoding; None when it claims none."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode(container: av.container.InputContainer, stream: av.AudioStream, max_seconds: float) -> np.ndarray:
    # Channels are averaged here rather than by the resampler: FFmpeg's stereo-to-mono
    # matrix adds both sides at -3 dB each, which lifts centred speech above 1.0.
    resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
    limit = int((max_seconds + _SLACK_SECONDS) * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue  # one damaged packet (a glitch in a recording) should not lose the rest
        for frame in frames:
            # Browser recordings can have timestamps that jump; the resampler's filter
            # graph refuses those, and we only need the samples in order.
            frame.pts = None
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0))  # planar [C, N] -> [N]
                total += out.samples
        if total > limit:
            raise InputError(_too_long(max_seconds))
    for out in resampler.resample(None):  # flush what the resampler holds back
        chunks.append(out.to_ndarray().mean(axis=0))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _too_long(max_seconds: float, seconds: float | None = None) -> str:
    limit = _describe_seconds(max_seconds)
    if seconds is None:
        return f"The recording is longer than the limit of {limit}. Please send a shorter clip."
    return (
        f"The recording is {_describe_seconds(seconds)} long; the limit is {limit}. "
        "Please send a shorter clip."
    )


def _describe_seconds(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
