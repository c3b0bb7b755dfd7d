"""Decode whatever a browser or a person sends into the audio Whisper expects.

Microphone recordings arrive as WebM/Opus (Chrome, Firefox) or MP4/AAC (Safari);
uploads can be WAV, FLAC, MP3, OGG or M4A at any sample rate and channel count.
PyAV (FFmpeg's libraries, bundled in its wheel) reads them all in-process.

A recording that is too long is refused from its header when the container
declares a duration, so a 3-hour file costs milliseconds; when it does not (live
WebM from MediaRecorder), decoding stops as soon as the limit is passed, so memory
never exceeds what `max_seconds` of 16 kHz audio takes.

Headers are not trusted further than the data bears them out: a WAV whose data
chunk claims fewer bytes than follow it is read to its end, and a declared duration
that the file is too small to hold does not refuse it (decoding still stops at the
limit). NaN and infinite samples (a float WAV from a buggy recorder) become silence
before resampling, where one of them would spread over its neighbours; a recording
that is mostly such samples is refused as damaged.

Each refusal says which of these it is: not audio (or too damaged to play), no sound
track, empty, too short to hold a word, mostly not numbers, or too long.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from mmchat.errors import InputError

from .resample import SAMPLE_RATE, StreamResampler


# Codec padding (AAC/MP3 priming, Opus pre-skip) makes a file slightly longer than
# what was recorded; a clip of exactly the limit must still pass.
_SLACK_SECONDS = 0.5

# Silero VAD, which both Whisper backends use, ignores speech shorter than this, so
# a shorter recording can never be heard: better to say so than "nothing was heard".
MIN_SECONDS = 0.25

_NOT_AUDIO = (
    "The file is not audio, or it is too damaged to play. Please send a recording in "
    "WAV, FLAC, MP3, OGG, M4A or WebM."
)
_NO_AUDIO_TRACK = (
    "The file is not audio: it has no sound track (it may be a picture, a silent video or "
    "text). Please send a recording."
)
_MOSTLY_NOT_NUMBERS = (
    "The recording is damaged: most of its samples are not numbers (NaN or infinite), so "
    "there is nothing to hear. Please record it again."
)
_FLOAT_FORMATS = frozenset({"flt", "fltp", "dbl", "dblp"})  # the sample formats that can hold NaN


def load_audio(source: str | Path | bytes, *, max_seconds: float, keep_first: bool = False) -> np.ndarray:
    """Decode `source` (a file path or the file's bytes) to 16 kHz mono float32.

    Raises InputError with a message for the user when the file is empty, not audio,
    damaged beyond use, shorter than `MIN_SECONDS` or longer than `max_seconds`.
    `keep_first`: a longer file is not refused but cut at `max_seconds` (a video clip's
    sound, of which the part its frames cover is heard).
    """
    if isinstance(source, bytes):
        if not source:
            raise InputError("The recording is empty.")
        size = len(source)
        fix = _wav_size_fix(io.BytesIO(source), size)
        if fix is not None:
            source = source[: fix[0]] + fix[1] + source[fix[0] + 4 :]
        file: str | BinaryIO = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"The recording {path.name!r} was not found.")
        size = path.stat().st_size
        if size == 0:
            raise InputError("The recording is empty.")
        with path.open("rb") as head:
            fix = _wav_size_fix(head, size)
        # A corrected header is laid over the file as it is read: the file itself may
        # be hours long, and is neither copied nor changed.
        file = str(path) if fix is None else _Patched(path.open("rb"), *fix)

    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InputError(_NO_AUDIO_TRACK)
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            if (
                not keep_first
                and declared is not None
                and declared > max_seconds + _SLACK_SECONDS
                and _file_can_hold(size, stream, max_seconds + _SLACK_SECONDS)
            ):
                raise InputError(_too_long(max_seconds, declared))
            samples = _decode(container, stream, max_seconds, keep_first)
    except av.error.FFmpegError as exc:
        raise InputError(_NOT_AUDIO) from exc
    finally:
        if isinstance(file, _Patched):
            file.close()

    if samples.size == 0:
        raise InputError("The recording is empty: it holds no sound.")
    if samples.size < MIN_SECONDS * SAMPLE_RATE:
        raise InputError(
            f"The recording is only {samples.size / SAMPLE_RATE:.2f} seconds long, too short to hold "
            "a word. Please record again and speak for at least a second."
        )
    return samples


def _file_can_hold(size: int, stream: av.AudioStream, seconds: float) -> bool:
    """False when `size` bytes at the stream's bit rate play for less than `seconds`:
    then a header that declares more lies (a hand-edited MP3 Xing frame count), and
    decoding, which stops at the limit anyway, tells the truth.

    Only a file far too small counts: a VBR file's first frame can have twice its
    average rate, and a real 3-hour file refused a little later is still refused.
    """
    bit_rate = stream.codec_context.bit_rate
    if not bit_rate:
        return True  # nothing to check against: believe the header
    return 2 * size * 8 / bit_rate >= seconds


def _wav_size_fix(file: BinaryIO, size: int) -> tuple[int, bytes] | None:
    """(offset, 4 bytes) that make a RIFF/WAVE header's data chunk size tell the truth,
    or None when it does (or the file is no WAV).

    FFmpeg stops reading where the data chunk says it ends. A chunk that declares
    fewer bytes than follow it, when what follows is not another chunk, lies: a
    recorder that died before it wrote the final size, or a file cut and glued by
    hand. A chunk that declares more bytes than there are needs nothing: FFmpeg reads
    what is there. Only the header and the 8 bytes after the declared end are read.
    """
    header = file.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= size:
        file.seek(offset)
        chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
        if chunk_id != b"data":
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
            continue
        if chunk_size in (0, 0xFFFFFFFF):
            return None  # "unknown length", which FFmpeg already reads to the end
        start = offset + 8
        end = start + chunk_size + (chunk_size & 1)
        if end + 8 > size:
            return None  # nothing, or too little for a chunk, after the data
        file.seek(end)
        next_id, next_size = struct.unpack("<4sI", file.read(8))
        if all(32 <= byte < 127 for byte in next_id) and end + 8 + next_size <= size:
            return None  # another chunk (LIST, id3) follows: the size was right
        return offset + 4, struct.pack("<I", min(size - start, 0xFFFFFFFF))
    return None


class _Patched(io.RawIOBase):
    """A file read as if `patch` stood at `at`: a corrected header over a big file."""

    def __init__(self, file: BinaryIO, at: int, patch: bytes) -> None:
        self._file, self._at, self._patch = file, at, patch

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        position = self._file.tell()
        count = self._file.readinto(buffer)
        first, last = max(position, self._at), min(position + count, self._at + len(self._patch))
        if first < last:
            buffer[first - position : last - position] = self._patch[first - self._at : last - self._at]
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the file claims, without decoding; None when it claims none."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode(container: av.container.InputContainer, stream: av.AudioStream, max_seconds: float,
            keep_first: bool = False) -> np.ndarray:
    resampler = StreamResampler(SAMPLE_RATE)  # channels averaged first (resample.py says why)
    limit = int((max_seconds + _SLACK_SECONDS) * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    packets = damaged = 0
    samples_in = not_numbers = 0
    for packet in container.demux(stream):
        if packet.size:
            packets += 1
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            damaged += 1
            continue  # one damaged packet (a glitch in a recording) should not lose the rest
        for frame in frames:
            samples_in += frame.samples
            frame, replaced = _finite(frame)
            not_numbers += replaced
            # Browser recordings can have timestamps that jump: only the samples' order counts.
            out = resampler.frame(frame)
            chunks.append(out)
            total += out.size
        if total > limit:
            if keep_first:
                break
            raise InputError(_too_long(max_seconds))
    if damaged > packets / 2:
        # Bytes that FFmpeg took for a codec's frames (random data with MP3 sync words
        # in it) but most of which did not decode: that is not audio, and not an empty
        # or a too-short recording either. A glitch in a real one costs a packet or two.
        raise InputError(_NOT_AUDIO)
    if not_numbers > samples_in * stream.channels / 2:
        raise InputError(_MOSTLY_NOT_NUMBERS)
    chunks.append(resampler.flush())  # what the resampler holds back
    chunks = [chunk for chunk in chunks if chunk.size]
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if keep_first:
        samples = samples[: int(max_seconds * SAMPLE_RATE)]
    # Finite samples near float32's largest can still overflow in the resampler's filter.
    return np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def _finite(frame: av.AudioFrame) -> tuple[av.AudioFrame, int]:
    """`frame` with NaN and infinite samples set to 0 (silence), and how many there were.

    Done before resampling: the resampler's filter would smear each one over the
    samples around it. A few such samples are a glitch; the rest of the recording is fine.
    """
    if frame.format.name not in _FLOAT_FORMATS:
        return frame, 0  # integer samples are always numbers
    samples = frame.to_ndarray()
    bad = ~np.isfinite(samples)
    count = int(bad.sum())
    if not count:
        return frame, 0
    samples[bad] = 0.0
    fixed = av.AudioFrame.from_ndarray(samples, format=frame.format.name, layout=frame.layout.name)
    fixed.sample_rate = frame.sample_rate
    return fixed, count


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
