"""A video clip on its way in: checked from its container's header, decoded once into the
few frames the model reads, those frames kept for the turns that send the clip again.

PyAV (FFmpeg's libraries, bundled in its wheel, already what reads recordings) decodes
every container and codec a phone or a browser makes (MP4/MOV with H.264, HEVC or AV1,
WebM with VP8/VP9, MKV, animated GIF), frame by frame: a frame that is not kept is
dropped as soon as the next one is decoded, so a 60-second 1080p clip never holds more
than the frames it keeps (each already shrunk to its share of the pixel budget).

Frames are sampled at `ClipLimits.fps` (2 a second), at fixed times k / rate from the
clip's first frame, each time taking the decoded frame nearest it: a clip of variable
frame rate (phones drop to 15 fps in the dark) is sampled by its frames' timestamps,
never by counting frames. A clip longer than `max_frames / fps` seconds is sampled more
sparsely, one longer than `max_seconds` only over its first `max_seconds` (said in the
clip's notice). The display matrix (a phone held upright) is applied to each frame.

What is refused, in one sentence each, before any long decode where the header says
enough: a file that is not a video (or too damaged to play), one with no picture track,
frames larger than 4096 pixels a side, more than 240 frames a second, a clip with no
frame at all, and a decode that takes longer than its time limit.

A clip that came as bytes (the API's data URLs) is held in memory under a memory://clip/
URL while its request holds its `Clip`, as photos are (media.photos).
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import av
import numpy as np
from PIL import Image

from ..errors import InputError
from .photos import IDENTITY_KEY, content_digest, local_photo_path, stored_digest

# What the page and the API take as a clip by its name (a .webm or .mp4 holding only
# sound is a recording: `has_pictures` tells them apart; an animated GIF is a clip).
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".3gp", ".ogv", ".gif"}
MEMORY_URL = "memory://clip/"
# Decoded clips kept for the conversations in progress: at the default budget a clip's
# frames take at most 24 MB as RGB (8 MP), so 16 clips hold under 400 MB.
CLIP_CACHE_ITEMS = 16
# Frames larger than this a side are refused: 8K (7680x4320) would be 100 MB a frame to
# decode for a model that reads each at under a megapixel.
MAX_SIDE = 4096
# More frames a second than any camera records for people to watch: 1,000 fps would be
# 500 decoded frames for each one kept.
MAX_FRAME_RATE = 240.0
# Container formats that hold one picture: a photo named .mp4 is refused as a clip (it
# is sent as a photo instead), rather than read as a one-frame video.
_PICTURE_FORMATS = ("image2", "_pipe", "png", "mjpeg", "webp")
_SLACK_SECONDS = 0.05  # timestamps of frames that sit exactly on the limit


@dataclass(frozen=True)
class ClipLimits:
    """How a clip is sampled and what it may cost (the --video-* settings)."""

    fps: float = 2.0  # frames kept per second of clip
    max_frames: int = 64  # most frames kept from one clip (a longer clip is sampled more sparsely)
    max_seconds: float = 120.0  # a longer clip is looked at over its first max_seconds only
    max_pixels: int = 8_000_000  # all the kept frames of a clip together
    frame_pixels: int = 1024 * 28 * 28  # one kept frame at most (the photo budget, --max-pixels)
    time_limit: float = 120.0  # seconds a decode may take before the clip is refused

    @classmethod
    def of(cls, config) -> "ClipLimits":
        # Held to what can sample anything at all: a rate or a frame count of 0 would take no frame.
        return cls(max(config.video_fps, 0.05), max(config.max_video_frames, 1), max(config.max_video_seconds, 0.5),
                   max(config.max_video_pixels, 32 * 32), config.max_pixels, config.video_decode_seconds)


@dataclass(frozen=True, eq=False)
class Frames:
    """What one decode of a clip keeps: upright RGB frames and when each was shown."""

    images: tuple[Image.Image, ...]  # shared: callers must not modify them
    times: tuple[float, ...]  # seconds from the clip's start, times[k] == k / rate
    rate: float  # frames kept per second
    duration: float  # the whole clip's length, in seconds (as its header says, else as decoded)
    seconds: float  # how much of the clip the frames cover (its first `seconds`)
    size: tuple[int, int]  # (width, height) of the clip, upright
    has_sound: bool
    identity: tuple  # (digest of the file, limits): tells this clip's frames from any other's


@dataclass(frozen=True, eq=False)
class Clip:
    """One clip as it came in, checked, with what its one decode made."""

    name: str
    data: bytes | None  # the bytes, for a clip that came as bytes (else its file is the copy to keep)
    digest: str
    frames: Frames
    notice: str | None  # e.g. only the first two minutes are looked at
    url: str  # what a conversation's part holds: the upload's path, or its memory:// URL


def is_clip_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def has_pictures(path: str | Path) -> bool:
    """Whether the file a clip's name names has moving pictures: a video track (not a
    recording in a .webm), or more than one frame (not a still GIF). Reads the header only."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".gif":
            with Image.open(path) as image:
                return getattr(image, "n_frames", 1) > 1
        with av.open(str(path), metadata_errors="ignore") as container:
            return bool(container.streams.video) and not _is_picture(container)
    except Exception:  # a damaged file: decoding it as a clip says what is wrong with it
        return path.suffix.lower() != ".gif" and path.suffix.lower() not in (".webm", ".m4a")


def read_clip(source: str | Path | bytes, *, limits: ClipLimits, max_bytes: int, name: str | None = None,
              progress: Callable[[float], None] = lambda fraction: None) -> Clip:
    """Check a clip (a file, or bytes that came in a request) and decode its frames, once;
    `progress` hears the fraction of the clip read so far.

    Raises InputError, with a message for the user, for any clip that can't be used."""
    if isinstance(source, bytes):
        name = name or "clip"
        _check_bytes(name, len(source), max_bytes)
        digest = content_digest(source)
        url = f"{MEMORY_URL}{digest}{Path(name).suffix.lower()}"  # its suffix: what the chat plays it as
    else:
        path = Path(source)
        name = name or path.name
        try:
            size = path.stat().st_size
        except OSError:
            raise InputError(f"The clip {name} could not be read. Please send it again.") from None
        _check_bytes(name, size, max_bytes)
        digest, url = stored_digest(path), str(source)
    frames, notice = CLIPS.get(digest, limits, lambda: source, name, progress)
    clip = Clip(name, source if isinstance(source, bytes) else None, digest, frames, notice, url)
    if isinstance(source, bytes):
        with _held_lock:
            clip = _held.setdefault(url, clip)
    return clip


def held_clip(url: str) -> Clip | None:
    if not url.startswith(MEMORY_URL):
        return None
    with _held_lock:
        return _held.get(url)


_held: "weakref.WeakValueDictionary[str, Clip]" = weakref.WeakValueDictionary()
_held_lock = threading.Lock()


def model_frames(url: str, limits: ClipLimits) -> Frames:
    """The frames of the clip a conversation's URL names (a file, or one held in memory),
    decoded once per clip and limits."""
    held = held_clip(url)
    if held is not None:
        return CLIPS.get(held.digest, limits, lambda: held.data, held.name)[0]
    path = local_photo_path(url)
    if path is None:
        raise ValueError("clips are read from files on this machine, or held in memory as they came in")
    return CLIPS.get(stored_digest(path), limits, lambda: path, path.name)[0]


def clip_identity(url: str, limits: ClipLimits) -> tuple:
    held = held_clip(url)
    if held is not None:
        return (held.digest, limits)
    path = local_photo_path(url)
    return (stored_digest(path) if path is not None else url, limits)


def decode_frames(source: str | Path | bytes, name: str, limits: ClipLimits, digest: str,
                  progress: Callable[[float], None] = lambda fraction: None) -> tuple[Frames, str | None]:
    """The one decode of a clip (`digest`: of its bytes): its kept frames, and the notice
    about how it is used."""
    file: str | BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            return _decode(container, name, limits, (digest, limits), progress)
    except av.error.FFmpegError as exc:
        raise InputError(f"{name} is not a video clip, or it is too damaged to play. Please send an MP4, WebM, "
                         "MOV or MKV clip, or an animated GIF.", "clip_unreadable", name=name) from exc


def _video_stream(container, name: str):
    """The clip's picture track, checked from the header: (stream, frames a second it declares)."""
    if not container.streams.video or _is_picture(container):
        if container.streams.audio:
            raise InputError(f"{name} has no pictures: it holds only sound. Send it as a recording instead.",
                             "clip_sound_only", name=name)
        raise InputError(f"{name} holds no moving pictures: it is empty, or a still picture (send a photo as a "
                         "photo).", "clip_no_video", name=name)
    stream = container.streams.video[0]
    _check_frame_size(name, stream.codec_context.width, stream.codec_context.height)
    declared_rate = float(stream.average_rate or stream.guessed_rate or 0)
    if declared_rate > MAX_FRAME_RATE:
        raise InputError(f"{name} has {declared_rate:,.0f} frames a second; mmchat takes clips of up to "
                         f"{MAX_FRAME_RATE:.0f}.", "clip_too_many_frames", name=name, rate=f"{declared_rate:,.0f}")
    return stream, declared_rate


def _decode(container, name: str, limits: ClipLimits, identity: tuple,
            progress: Callable[[float], None]) -> tuple[Frames, str | None]:
    stream, declared_rate = _video_stream(container, name)
    width, height = stream.codec_context.width, stream.codec_context.height
    declared = _declared_seconds(container, stream)
    seconds = min(declared, limits.max_seconds) if declared else limits.max_seconds
    if declared:  # the rate that spreads the frame budget over the whole stretch looked at
        rate = min(limits.fps, limits.max_frames / seconds)
        wanted = max(1, min(limits.max_frames, math.floor(seconds * rate + _SLACK_SECONDS) + 1))
    else:  # a length nobody wrote down (a browser's recording): sampled at the full rate, thinned as it runs on
        rate, wanted = limits.fps, limits.max_frames
    frame_pixels = max(min(limits.frame_pixels, limits.max_pixels // wanted), 32 * 32)

    stream.thread_type = "AUTO"  # frame and slice threads: a long clip decodes on every core
    deadline = time.monotonic() + limits.time_limit
    kept: list[Image.Image] = []
    start = previous = previous_time = None
    last_time = 0.0
    decoded = 0
    damaged = False
    for packet in container.demux(stream):
        if time.monotonic() > deadline:
            raise InputError(f"{name} took longer than {limits.time_limit:.0f} seconds to read; please send a "
                             "shorter or smaller clip.", "clip_too_slow", name=name, seconds=f"{limits.time_limit:.0f}")
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            damaged = True  # a damaged packet (a truncated upload's last one): the rest still plays
            continue
        for frame in frames:
            decoded += 1
            _check_frame_size(name, frame.width, frame.height)
            at = frame.time if frame.time is not None else decoded / (declared_rate or limits.fps)
            start = at if start is None else start
            at -= start
            if decoded > (at + 1) * MAX_FRAME_RATE + 16:  # a header that lies about its rate
                raise InputError(f"{name} has more than {MAX_FRAME_RATE:.0f} frames a second; mmchat takes clips "
                                 f"of up to {MAX_FRAME_RATE:.0f}.", "clip_too_many_frames", name=name,
                                 rate=f"{MAX_FRAME_RATE:.0f}+")
            if declared is None and len(kept) >= wanted and at + _SLACK_SECONDS >= len(kept) / rate:
                kept, rate = kept[::2], rate / 2  # every other frame: the same span at half the rate
            # Every sampling time this frame has reached takes it, or the frame before it if nearer.
            while len(kept) < wanted and at + _SLACK_SECONDS >= len(kept) / rate:
                target = len(kept) / rate
                nearer = previous is not None and target - previous_time < at - target
                kept.append(_upright(previous if nearer else frame, frame_pixels))
                progress(len(kept) / wanted)
            previous, previous_time, last_time = frame, at, max(last_time, at)
        if (declared and len(kept) >= wanted) or last_time > seconds + _SLACK_SECONDS:
            break
    if not kept and previous is not None:  # a clip shorter than one sampling step: its one frame
        kept.append(_upright(previous, frame_pixels))
    if not kept:
        raise InputError(f"{name} holds no pictures: it is empty, or too damaged to play.", "clip_no_frames",
                         name=name)
    for number, image in enumerate(kept):  # a frame given as a photo is processed once, like a photo
        image.info[IDENTITY_KEY] = (*identity, number)
    duration = declared if declared else last_time
    covered = min(duration, seconds) if duration else last_time
    turned = round((previous.rotation or 0) / 90) % 2 if previous is not None else 0
    frames = Frames(tuple(kept), tuple(k / rate for k in range(len(kept))), rate, duration, covered,
                    (height, width) if turned else (width, height), bool(container.streams.audio), identity)
    return frames, _notice(name, limits, declared, last_time, damaged)


def _notice(name: str, limits: ClipLimits, declared: float | None, last_time: float, damaged: bool) -> str | None:
    """What the chat says about how much of the clip was looked at, if not all of it."""
    if declared and declared > limits.max_seconds + _SLACK_SECONDS:
        return (f"Only the first {_seconds_words(limits.max_seconds)} of {name} are looked at: it is "
                f"{_seconds_words(declared)} long.")
    if not declared and last_time > limits.max_seconds + _SLACK_SECONDS:
        return f"Only the first {_seconds_words(limits.max_seconds)} of {name} are looked at."
    if damaged and declared and last_time + 1 < declared:
        return f"{name} is damaged after {_seconds_words(last_time)}: only what plays before is looked at."
    return None


def write_clip(frames: list[tuple[float, np.ndarray]], path: Path) -> Path:
    """Encode camera frames, each (seconds since the first, RGB uint8 array), as an H.264
    MP4 at `path` that keeps their times (the camera sends them when it can, not at a
    steady rate). Every frame is scaled to the first one's size."""
    start = frames[0][0]
    height, width = frames[0][1].shape[:2]
    width, height = width - width % 2, height - height % 2  # 4:2:0 needs even sides
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"preset": "veryfast", "crf": "20"}
        last = -1
        for at, pixels in frames:
            image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]).astype(np.uint8))
            frame = av.VideoFrame.from_image(image.resize((width, height)) if image.size != (width, height) else image)
            frame.pts = last = max(round((at - start) * 1000), last + 1)  # times only ever go forward
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# Most frames of a clip given as photos, to a model that does not read video (SmolVLM, a
# remote server): each costs such a model as many tokens as a whole photo does.
FRAMES_AS_PHOTOS = 8


def frames_as_photos(frames: Frames, most: int = FRAMES_AS_PHOTOS) -> tuple[str, list[tuple[str, Image.Image]]]:
    """A clip as words and photos for a model that reads no video: a line that says what
    follows, then up to `most` frames spread evenly over it, each with the time it was shown."""
    count = len(frames.images)
    shown = min(count, most)
    chosen = sorted({round(i * (count - 1) / max(shown - 1, 1)) for i in range(shown)})
    intro = f"A video clip of {frames.duration:.1f} seconds, shown as {len(chosen)} frames, each after its time:"
    return intro, [(f"At {frames.times[k]:.1f} s:", frames.images[k]) for k in chosen]


def _is_picture(container) -> bool:
    name = container.format.name
    return any(part in name for part in _PICTURE_FORMATS) and "mp4" not in name and "mov" not in name


def _check_frame_size(name: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{name} is not a video clip, or it is too damaged to play.", "clip_unreadable", name=name)
    if max(width, height) > MAX_SIDE:
        raise InputError(f"The frames of {name} are {width}×{height} pixels; mmchat takes clips of up to "
                         f"{MAX_SIDE} pixels a side. Please send a smaller version (4K or less).",
                         "clip_too_large", name=name, size=f"{width}×{height}", most=MAX_SIDE)


def _declared_seconds(container, stream) -> float | None:
    """The length the clip's header claims; None when it claims none (a live WebM)."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _upright(frame: av.VideoFrame, max_pixels: int) -> Image.Image:
    """The frame as people watch it (the display matrix applied), as RGB within `max_pixels`;
    scaled while it is converted, so a full-size copy is never made."""
    width, height = frame.width, frame.height
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    image = frame.to_image(width=max(2, math.floor(width * scale)), height=max(2, math.floor(height * scale)))
    turn = round((frame.rotation or 0) / 90) % 4 * 90  # counterclockwise, as the matrix says
    return image.rotate(turn, expand=True) if turn else image


def _check_bytes(name: str, size: int, max_bytes: int) -> None:
    if size == 0:
        raise InputError(f"The clip {name} is empty (0 bytes). Please send it again.", "clip_empty", name=name)
    if size > max_bytes:
        megabytes, limit = f"{size / 1e6:.1f}", f"{max_bytes / 1e6:.0f}"
        raise InputError(f"The clip {name} is {megabytes} MB; the limit is {limit} MB.", "clip_too_big",
                         name=name, megabytes=megabytes, limit=limit)


def _seconds_words(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds" if seconds >= 10 else f"{seconds:.1f} seconds"


class _ClipCache:
    def __init__(self, items: int) -> None:
        self.items = items
        self._clips: OrderedDict[tuple, tuple[Frames, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # how many times a clip was actually decoded (for tests)

    def get(self, digest: str, limits: ClipLimits, source: Callable[[], str | Path | bytes], name: str,
            progress: Callable[[float], None] = lambda fraction: None) -> tuple[Frames, str | None]:
        key = (digest, limits)
        with self._lock:
            kept = self._clips.get(key)
            if kept is not None:
                self._clips.move_to_end(key)
                return kept
        kept = decode_frames(source(), name, limits, digest, progress)  # outside the lock: another clip need not wait
        with self._lock:
            self.decoded += 1
            kept = self._clips.setdefault(key, kept)
            self._clips.move_to_end(key)
            while len(self._clips) > self.items:
                self._clips.popitem(last=False)
        return kept

    def clear(self) -> None:
        with self._lock:
            self._clips.clear()


CLIPS = _ClipCache(CLIP_CACHE_ITEMS)
