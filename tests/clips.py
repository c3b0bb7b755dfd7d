"""Video clips for the tests, encoded here with PyAV (FFmpeg's real encoders), so each
test knows exactly what every frame shows and when it was shown.

A drawn clip is a black field with one square in it; `where(t)` says where its left
edge is at time t (a fraction of the free width), `colour(t)` what colour it is.
"""

from __future__ import annotations

import base64
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np


def draw_frame(size: tuple[int, int], left: float, colour: tuple[int, int, int]) -> np.ndarray:
    width, height = size
    side = max(height // 4, 4)
    frame = np.zeros((height, width, 3), np.uint8)
    x = int(left * (width - side))
    y = (height - side) // 2
    frame[y:y + side, x:x + side] = colour
    return frame


def make_clip(path: Path, *, seconds: float = 3.0, fps: float = 30, size: tuple[int, int] = (320, 240),
              codec: str = "libx264", where: Callable[[float], float] = lambda t: t / 3.0,
              colour: Callable[[float], tuple[int, int, int]] = lambda t: (255, 0, 0),
              times: list[float] | None = None, sound: bool = False, speech: np.ndarray | None = None,
              speech_at: float = 0.0) -> Path:
    """Encode a clip to `path` (its suffix picks the container). `times`: each frame's
    presentation time in seconds (a variable frame rate); default: `fps` steady. `sound`:
    a sound track (a quiet tone, or `speech`, 16 kHz mono, starting `speech_at` seconds in)."""
    times = times if times is not None else [i / fps for i in range(round(seconds * fps))]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p" if codec != "gif" else "rgb8"
        stream.codec_context.time_base = Fraction(1, 1000)  # the frames' own times, to the millisecond
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        audio = None
        if sound or speech is not None:
            audio = out.add_stream("aac", rate=16000)
        for t in times:
            frame = av.VideoFrame.from_ndarray(draw_frame(size, where(t), colour(t)), format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            length = int(16000 * (times[-1] if times else seconds))
            if speech is None:
                samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(length) / 16000)).astype(np.float32)
            else:
                samples = np.zeros(max(length, int(16000 * speech_at) + len(speech)), np.float32)
                samples[int(16000 * speech_at):int(16000 * speech_at) + len(speech)] = speech
            _sound(out, audio, samples)
    return path


def _sound(out, stream, samples: np.ndarray) -> None:
    for start in range(0, len(samples), 1024):
        chunk = samples[start:start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 16000
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def still_clip(path: Path, image, seconds: float = 2.0) -> Path:
    """A clip of `image` (a PIL image) held still for `seconds`, 2 frames a second, near
    lossless (H.264, or VP9 in a .webm)."""
    webm = path.suffix == ".webm"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx-vp9" if webm else "libx264", rate=2)
        stream.width, stream.height = image.size
        stream.pix_fmt, stream.options = "yuv420p", {"lossless": "1"} if webm else {"crf": "12"}
        for _ in range(round(seconds * 2)):
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_recording(path: Path, seconds: float = 1.0) -> Path:
    """A sound-only WebM (Opus), as the page's own microphone recordings are."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libopus", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, int(48000 * seconds)), np.float32), format="flt",
                                           layout="mono")
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


def square_left(image) -> float:
    """Where the drawn square's left edge is in a decoded frame, as a fraction of the width."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    columns = np.nonzero(pixels.sum(axis=2).max(axis=0) > 200)[0]
    if not columns.size:
        return float("nan")
    return float(columns.min()) / max(pixels.shape[1] - columns.size, 1)  # as `where` says it: of the free width


def square_colour(image) -> tuple[int, int, int]:
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    lit = pixels[pixels.sum(axis=1) > 200]
    return tuple(int(v) for v in np.median(lit, axis=0)) if len(lit) else (0, 0, 0)


def clip_data_url(path: Path) -> str:
    mime = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
            ".gif": "image/gif"}[path.suffix]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
