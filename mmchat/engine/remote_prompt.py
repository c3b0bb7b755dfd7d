"""The remote engine's prompt: the conversation's messages as an OpenAI-compatible server
takes them (each photo on this machine as a data URL, encoded once per photo; each clip
as a `video_url` part, as vLLM takes it: the frames mmchat sampled, re-encoded as a small
MP4 that keeps their times, encoded once per clip; for a server that refuses video, as a
few of its frames, photos after their times, which every server with photo input reads;
typed chat-template markers defused), and an estimate of their length in tokens."""

from __future__ import annotations

import base64
import io
import math
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from ..media.photos import IDENTITY_KEY, MEMORY_URL, SIZE_KEY, local_photo_path, model_image, url_identity
from ..media.video import MEMORY_URL as CLIP_MEMORY_URL
from ..media.video import ClipLimits, frames_as_photos, model_frames, write_clip
from .markers import ANY_FAMILY_MARKUP, defuse_content

JPEG_QUALITY = 90
# Encoded photos kept: every turn sends the whole history again, photos included.
DATA_URLS_KEPT = 32
IMAGE_ESTIMATES_KEPT = 4096

# The token estimate (the OpenAI API has no tokenize endpoint). It errs high, so the
# history budget drops an old turn too early rather than the server refusing a prompt:
# English runs about 4 characters a token, so ASCII text counts 1 per 3 characters;
# other scripts (Chinese is about 1.5 characters a token) count 1 per character; each
# message adds its role markers; a photo counts 1 per 28x28 pixels of its fitted size
# (Qwen2.5-VL's patch; Qwen3-VL's 32x32 gives fewer), plus its start and end markers.
ASCII_CHARS_PER_TOKEN = 3
MESSAGE_TOKENS = 4
PIXELS_PER_IMAGE_TOKEN = 28 * 28
IMAGE_MARKER_TOKENS = 2


class RemotePrompt:
    def __init__(self, max_pixels: int, clip_limits: ClipLimits | None = None) -> None:
        self.max_pixels = max_pixels
        self.clip_limits = clip_limits or ClipLimits(frame_pixels=max_pixels)
        # Clips go as video until the server refuses one (RemoteEngine.stream), then as frames.
        self.video_parts = True
        self._data_urls: OrderedDict[tuple, str] = OrderedDict()
        self._image_tokens: dict[tuple, int] = {}
        self._lock = threading.Lock()
        self.encoded = 0  # photos encoded as data URLs (for tests)

    def count_tokens(self, messages: list[dict]) -> int:
        """An estimate that errs high (see ASCII_CHARS_PER_TOKEN); the server's own count
        comes back in each answer's usage."""
        total = 0
        for message in messages:
            total += MESSAGE_TOKENS
            content = message["content"]
            for item in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                if item.get("type") == "text":
                    total += _text_tokens(item.get("text") or "")
                elif item.get("type") == "image_url":
                    total += self._image_token_estimate(item["image_url"]["url"])
                elif item.get("type") == "video_url":  # every frame as a photo: errs high for video too
                    frames = model_frames(item["video_url"]["url"], self.clip_limits)
                    pixels = sum(min(image.width * image.height, self.max_pixels) for image in frames.images)
                    total += math.ceil(pixels / PIXELS_PER_IMAGE_TOKEN) + IMAGE_MARKER_TOKENS * len(frames.images)
        return total

    def _image_token_estimate(self, url: str) -> int:
        if not _ours(url):  # a data: or web URL passed on as is: assume the whole budget
            return math.ceil(self.max_pixels / PIXELS_PER_IMAGE_TOKEN) + IMAGE_MARKER_TOKENS
        identity = url_identity(url, self.max_pixels)
        known = self._image_tokens.get(identity)
        if known is not None:
            return known
        # The photo's size as sent, from its decoded copy: decoded once for the answer anyway.
        width, height = model_image(url, self.max_pixels).info[SIZE_KEY]
        tokens = math.ceil(min(width * height, self.max_pixels) / PIXELS_PER_IMAGE_TOKEN) + IMAGE_MARKER_TOKENS
        if len(self._image_tokens) >= IMAGE_ESTIMATES_KEPT:  # a few ints each; only a long-running server fills it
            self._image_tokens.clear()
        self._image_tokens[identity] = tokens
        return tokens

    def outgoing(self, messages: list[dict]) -> list[dict]:
        """`messages` as the server gets them: each photo on this machine as a data URL,
        and the words with any chat-template marker in them defused (markers.py): the
        server writes its own template around them and would read a typed one as real."""
        converted = []
        for message in messages:
            content = defuse_content(message["content"], ANY_FAMILY_MARKUP)
            if not isinstance(content, str):
                items = []
                for item in content:
                    if item.get("type") == "image_url":
                        item = {"type": "image_url", "image_url": {**item["image_url"],
                                                                   "url": self._data_url(item["image_url"]["url"])}}
                    if item.get("type") != "video_url":
                        items.append(item)
                    elif self.video_parts:
                        items.append({"type": "video_url", "video_url": {"url": self._clip_url(item["video_url"]["url"])}})
                    else:
                        items += self._clip_as_photos(item["video_url"]["url"])
                content = items
            converted.append({**message, "content": content})
        return converted

    def _clip_url(self, url: str) -> str:
        """A clip of this machine as a data:video/mp4 URL: its sampled frames at their times
        (a few hundred kB, where the clip as sent may be a hundred MB), encoded once per clip."""
        if not _ours(url):
            return url
        frames = model_frames(url, self.clip_limits)
        identity = ("video", *frames.identity)
        with self._lock:
            known = self._data_urls.get(identity)
            if known is not None:
                self._data_urls.move_to_end(identity)
                return known
        with tempfile.TemporaryDirectory(prefix="mmchat-clip-") as folder:
            path = write_clip([(at, np.asarray(image)) for at, image in zip(frames.times, frames.images)],
                              Path(folder) / "clip.mp4")
            encoded = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        return self._keep(identity, encoded)

    def _clip_as_photos(self, url: str) -> list[dict]:
        """A clip of this machine as text and image_url parts (media.video.frames_as_photos)."""
        intro, shown = frames_as_photos(model_frames(url, self.clip_limits))
        items = [{"type": "text", "text": intro}]
        for when, image in shown:
            items += [{"type": "text", "text": when},
                      {"type": "image_url", "image_url": {"url": self._encoded(image.info[IDENTITY_KEY], image)}}]
        return items

    def _data_url(self, url: str) -> str:
        """A photo of the conversation as a data URL, encoded once per photo (by identity):
        every turn sends the whole history again, and base64 of every earlier photo each
        time made a long photo chat slower with each turn."""
        if not _ours(url):
            return url
        return self._encoded(url_identity(url, self.max_pixels), None, url)

    def _encoded(self, identity: tuple, image: Image.Image | None, url: str = "") -> str:
        """The data URL of a photo (`image`, or the one `url` names) by its identity, encoded once."""
        with self._lock:
            known = self._data_urls.get(identity)
            if known is not None:
                self._data_urls.move_to_end(identity)
                return known
        # JPEG: a fitted photo is a few hundred kB, where PNG of the same pixels is megabytes.
        buffer = io.BytesIO()
        (image or model_image(url, self.max_pixels)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return self._keep(identity, "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))

    def _keep(self, identity: tuple, encoded: str) -> str:
        """Keep a data URL just encoded; the one kept for `identity` (this one, or another thread's)."""
        with self._lock:
            self.encoded += 1
            encoded = self._data_urls.setdefault(identity, encoded)
            self._data_urls.move_to_end(identity)
            while len(self._data_urls) > DATA_URLS_KEPT:
                self._data_urls.popitem(last=False)
        return encoded


def _ours(url: str) -> bool:
    """Whether `url` names a photo of this machine (a file, or one held in memory), which
    leaves as a data URL; data: and web URLs are passed on as they are."""
    return url.startswith((MEMORY_URL, CLIP_MEMORY_URL)) or local_photo_path(url) is not None


def _text_tokens(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + (len(text) - ascii_chars)
