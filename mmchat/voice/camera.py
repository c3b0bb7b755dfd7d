"""Voice mode's camera: its latest frame, for "what is this?", and its last few seconds,
for "what just happened?".

The page sends a frame about twice a second. The newest one is what the camera sees now;
the frames of the last `--camera-clip-seconds` are kept too (at most CAMERA_CLIP_FPS a
second, whatever the page sends, so their memory is bounded), and a question about
movement is asked about them as a clip (media.video.write_clip keeps their times).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmchat.media.video import write_clip

# A camera frame older than this is not "what the camera sees now" (the camera was turned off).
FRAME_FRESH_SECONDS = 5.0
# Frames kept a second for the camera's last seconds: one that comes sooner replaces the one before.
CAMERA_CLIP_FPS = 4
# A clip of fewer frames, or spanning less than this, shows no motion: the last frame is asked about.
CAMERA_CLIP_MIN_SECONDS = 0.9


@dataclass(frozen=True)
class View:
    """What the camera had shown when a question ended: its frame (RGB) and its last
    seconds, (time.monotonic(), frame) oldest first; None and () with the camera off."""

    frame: np.ndarray | None = None
    recent: tuple[tuple[float, np.ndarray], ...] = ()

    @property
    def shows_motion(self) -> bool:
        return len(self.recent) >= 2 and self.recent[-1][0] - self.recent[0][0] >= CAMERA_CLIP_MIN_SECONDS

    def write_frame(self, path: Path) -> Path:
        from PIL import Image

        Image.fromarray(np.ascontiguousarray(self.frame[..., :3]).astype(np.uint8)).save(path, quality=90)
        return path

    def write_clip(self, path: Path) -> Path | None:
        """The last seconds as a clip at `path`; None when they show no motion (the camera has just come on)."""
        return write_clip(list(self.recent), path) if self.shows_motion else None


class Camera:
    def __init__(self, clip_seconds: float) -> None:
        self.clip_seconds = clip_seconds
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._frame_at = 0.0
        self._recent: deque[tuple[float, np.ndarray]] = deque(maxlen=max(int(clip_seconds * CAMERA_CLIP_FPS) + 1, 1))

    @property
    def kept(self) -> int:
        """How many frames are held for the last seconds."""
        return len(self._recent)

    def see(self, frame: np.ndarray | None) -> None:
        """The camera's latest frame (RGB uint8)."""
        if frame is None:
            return
        now = time.monotonic()
        with self._lock:
            self._frame, self._frame_at = frame, now
            if self._recent and now - self._recent[-1][0] < 1 / CAMERA_CLIP_FPS:
                self._recent.pop()
            self._recent.append((now, frame))

    def view(self) -> View:
        """What the camera shows now (nothing, once its last frame is stale)."""
        now = time.monotonic()
        with self._lock:
            if now - self._frame_at > FRAME_FRESH_SECONDS:
                return View()
            return View(self._frame, tuple((at, frame) for at, frame in self._recent if now - at <= self.clip_seconds))

    def photo(self, folder: Path) -> Path | None:
        """What the camera sees now, as a JPEG in `folder` (for the page's Describe); None with no fresh frame."""
        view = self.view()
        if view.frame is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        return view.write_frame(folder / f"camera-{uuid.uuid4().hex}.jpg")

    def clip(self, folder: Path) -> Path | None:
        """The last seconds as a clip in `folder` (the page's "What is happening"); None when they show no motion."""
        view = self.view()
        if not view.shows_motion:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        return view.write_clip(folder / f"camera-{uuid.uuid4().hex}.mp4")
