"""Photos and clips in a prompt, per model family: each processed once, and pixels for any part of a prompt.

A processor turns all the photos of a prompt into one batch of pixel tensors on every
call, and every turn sends the whole history again. `CachingImageProcessor` stands in
for the processor's image processor: it runs the real one on each photo alone, once
(keyed by the identity `mmchat.media.photos` tags it with), and gives the processor
only what it needs to write the placeholder tokens. `CachingVideoProcessor` does the
same for a family that reads video (Qwen3-VL), a clip at a time (keyed by the clip's
identity, which comes with its metadata: `ClipMetadata`). The family's `VisionLayout` then
assembles the pixel tensors the model reads, for all the photos of a prompt or only for
those after a cached prefix (`prefix_cache.py`), and says where each photo's
placeholders sit and, for M-RoPE models, the positions of every token.

Families without a layout here still work: their processor runs as it is, and their
prompts are never continued from a cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import BatchFeature
from transformers.video_utils import VideoMetadata, make_batched_videos

from ..media.photos import IDENTITY_KEY

# Processed pixels kept for the photos of the conversations in progress. A 448x448
# photo is 3 MB of float32 patches for Qwen3-VL, one at the default pixel budget 12 MB.
FEATURE_CACHE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Photo:
    """One photo (or one clip) as the image (or video) processor made it, alone."""

    identity: tuple | None  # mmchat.media.photos.photo_identity; None: not a stored photo (never cached)
    tensors: dict  # the image processor's output for this photo by itself
    tokens: int  # placeholder tokens it takes in the prompt
    nbytes: int
    video: bool = False  # a clip: its tensors are the video processor's, its placeholders the video token's


class VisionLayout(Protocol):
    image_token_id: int
    # Processor outputs that carry pixels: assembled by `pixel_inputs`, never by the processor.
    vision_keys: tuple[str, ...]

    def photo(self, identity: tuple | None, processed: BatchFeature) -> Photo: ...

    def stand_in(self, photos: list[Photo]) -> dict:
        """What the processor reads from its image processor to write the placeholders."""
        ...

    def pixel_inputs(self, photos: list[Photo]) -> dict:
        """The model's pixel inputs for `photos`, in prompt order ({} for none)."""
        ...

    def positions(self, token_inputs: dict, photos: list[Photo]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(position ids of the whole prompt, rope deltas) for M-RoPE; (None, None) where
        a token's position is its index, as the model computes by itself."""
        ...


def _nbytes(tensors: dict) -> int:
    return sum(v.numel() * v.element_size() for v in tensors.values() if isinstance(v, torch.Tensor))


class QwenVLLayout:
    """Qwen3-VL: patches of all photos in one [patches, features] tensor, a grid per photo,
    and 3-D rotary positions (M-RoPE) that depend on every photo before a token. Clips
    likewise, in tensors of their own (pixel_values_videos, a grid per clip)."""

    vision_keys = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw")

    def __init__(self, model, processor) -> None:
        self.image_token_id = int(processor.image_token_id)
        self.video_token_id = int(getattr(processor, "video_token_id", -1))
        self.merge = int(processor.image_processor.merge_size)
        # The module that computes M-RoPE positions and keeps their offset (Qwen3VLModel).
        self.rope = next(m for m in model.modules() if hasattr(m, "rope_deltas") and hasattr(m, "get_rope_index"))

    def photo(self, identity, processed) -> Photo:
        tensors = {"pixel_values": processed["pixel_values"], "image_grid_thw": processed["image_grid_thw"]}
        tokens = int(tensors["image_grid_thw"].prod()) // self.merge**2
        return Photo(identity, tensors, tokens, _nbytes(tensors))

    def clip(self, identity, processed) -> Photo:
        tensors = {"pixel_values_videos": processed["pixel_values_videos"], "video_grid_thw": processed["video_grid_thw"]}
        tokens = int(tensors["video_grid_thw"].prod()) // self.merge**2
        return Photo(identity, tensors, tokens, _nbytes(tensors), video=True)

    def stand_in(self, photos) -> dict:
        return {"image_grid_thw": self._grids(photos), "pixel_values": torch.empty(0)}

    def pixel_inputs(self, photos) -> dict:
        images = [p for p in photos if not p.video]
        clips = [p for p in photos if p.video]
        inputs = {}
        if images:
            inputs.update(pixel_values=torch.cat([p.tensors["pixel_values"] for p in images]),
                          image_grid_thw=self._grids(images))
        if clips:
            inputs.update(pixel_values_videos=torch.cat([p.tensors["pixel_values_videos"] for p in clips]),
                          video_grid_thw=self._grids(clips))
        return inputs

    def positions(self, token_inputs, photos):
        # Always given, text only too: left to itself after a cached prefix, the model adds
        # the M-RoPE offset it kept from whichever prompt it read last.
        ids = token_inputs["input_ids"]
        text = torch.arange(ids.shape[-1], dtype=ids.dtype).view(1, 1, -1)  # [1, batch, tokens]
        if not photos:
            return text.expand(4, 1, -1), torch.zeros(1, 1, dtype=ids.dtype)
        images = [p for p in photos if not p.video]
        clips = [p for p in photos if p.video]
        vision, deltas = self.rope.get_rope_index(
            ids, mm_token_type_ids=token_inputs["mm_token_type_ids"],
            image_grid_thw=self._grids(images) if images else None, video_grid_thw=self._grids(clips) if clips else None,
        )
        return torch.cat([text, vision]), deltas  # [4, 1, tokens]: the text row, then T/H/W

    def set_rope_deltas(self, deltas: torch.Tensor | None, device) -> None:
        """What the model would have kept after reading the whole prompt (the compiled decoder reads it)."""
        self.rope.rope_deltas = None if deltas is None else deltas.to(device)

    @staticmethod
    def _grids(photos) -> torch.Tensor:
        return torch.cat([p.tensors["video_grid_thw" if p.video else "image_grid_thw"] for p in photos])


class Idefics3Layout:
    """Idefics3 / SmolVLM: each photo split into tiles (rows x cols, plus the whole photo
    shrunk), tiles of all photos side by side in [1, tiles, 3, H, W], padded to the
    largest tile; positions are plain indices."""

    vision_keys = ("pixel_values", "pixel_attention_mask", "rows", "cols")
    video_token_id = -1  # reads no video: a clip comes as photos (media.video.frames_as_photos)

    def __init__(self, model, processor) -> None:
        token = processor.image_token
        self.image_token_id = int(processor.tokenizer.convert_tokens_to_ids(getattr(token, "content", token)))
        self.image_seq_len = int(processor.image_seq_len)

    def photo(self, identity, processed) -> Photo:
        tensors = {
            "pixel_values": processed["pixel_values"], "pixel_attention_mask": processed["pixel_attention_mask"],
            "rows": int(processed["rows"][0][0]), "cols": int(processed["cols"][0][0]),
        }
        tiles = tensors["rows"] * tensors["cols"] + 1
        return Photo(identity, tensors, tiles * self.image_seq_len, _nbytes(tensors))

    def stand_in(self, photos) -> dict:
        return {
            "rows": [[p.tensors["rows"] for p in photos]], "cols": [[p.tensors["cols"] for p in photos]],
            "pixel_values": torch.empty(0), "pixel_attention_mask": torch.empty(0),
        }

    def pixel_inputs(self, photos) -> dict:
        if not photos:
            return {}
        # As the image processor pads a batch: every tile to the largest height and width, zeros beyond.
        height = max(p.tensors["pixel_values"].shape[-2] for p in photos)
        width = max(p.tensors["pixel_values"].shape[-1] for p in photos)
        first = photos[0].tensors["pixel_values"]
        tiles = sum(p.tensors["pixel_values"].shape[1] for p in photos)
        pixels = first.new_zeros((1, tiles, first.shape[2], height, width))
        mask = photos[0].tensors["pixel_attention_mask"].new_zeros((1, tiles, height, width))
        at = 0
        for p in photos:
            values, valid = p.tensors["pixel_values"], p.tensors["pixel_attention_mask"]
            n, h, w = values.shape[1], values.shape[-2], values.shape[-1]
            pixels[:, at:at + n, :, :h, :w] = values
            mask[:, at:at + n, :h, :w] = valid
            at += n
        return {"pixel_values": pixels, "pixel_attention_mask": mask}

    def positions(self, token_inputs, photos):
        return None, None

    def set_rope_deltas(self, deltas, device) -> None:
        pass


# model_type -> layout; only families whose assembled inputs are tested to equal the processor's own.
LAYOUTS = {"qwen3_vl": QwenVLLayout, "qwen3_vl_moe": QwenVLLayout, "idefics3": Idefics3Layout}


def layout_for(model, processor) -> VisionLayout | None:
    layout = LAYOUTS.get(getattr(model.config, "model_type", None))
    return None if layout is None else layout(model, processor)


def _flat(images) -> list:
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flat(item)]
    return [images]


class FeatureCache:
    """Processed photos and clips by (identity, options), least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, Photo] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple | None) -> Photo | None:
        if key is None:
            return None
        with self._lock:
            photo = self._items.get(key)
            if photo is not None:
                self._items.move_to_end(key)
            return photo

    def put(self, key: tuple | None, photo: Photo) -> None:
        if key is None or photo.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = photo
            self._bytes += photo.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class CachingImageProcessor:
    """Stands in for a processor's image processor (see the module's docstring).

    Every other attribute is the real image processor's, so the processor's own code
    (patch sizes, merge sizes, `fetch_images`) reads what it always read.
    """

    def __init__(self, real, layout: VisionLayout, max_bytes: int = FEATURE_CACHE_BYTES,
                 cache: FeatureCache | None = None) -> None:
        self._real = real
        self._layout = layout
        self.cache = cache or FeatureCache(max_bytes)  # shared with the clips' (CachingVideoProcessor)
        self._last = threading.local()
        self._count = threading.Lock()
        self.processed = 0  # photos the real image processor ran on (for tests)

    def __getattr__(self, name):  # only called for what this class does not define
        return getattr(self._real, name)

    def __call__(self, images, **kwargs) -> BatchFeature:
        options = repr(sorted(kwargs.items()))
        photos = [self._photo(image, options, kwargs) for image in _flat(images)]
        self._last.photos = photos
        return BatchFeature(self._layout.stand_in(photos))

    def clear(self) -> None:
        self.cache.clear()

    def last_photos(self) -> list[Photo]:
        """The photos of this thread's latest processor call, in prompt order."""
        return getattr(self._last, "photos", [])

    def _photo(self, image, options: str, kwargs: dict) -> Photo:
        identity = getattr(image, "info", {}).get(IDENTITY_KEY)
        key = None if identity is None else (identity, options)
        photo = self.cache.get(key)
        if photo is None:
            photo = self._layout.photo(identity, self._real([[image]], **kwargs))
            with self._count:
                self.processed += 1
            self.cache.put(key, photo)
        return photo


@dataclass
class ClipMetadata(VideoMetadata):
    """A clip's metadata as the video processor reads it (its frames' rate and indices), and
    the clip's identity (media.video.Frames.identity), for the processed clip's cache."""

    identity: tuple | None = None


class CachingVideoProcessor:
    """Stands in for a processor's video processor as CachingImageProcessor does for its
    image processor: each clip (its frames, sampled already, and their metadata) processed
    alone, once; the processor gets the grids and the metadata it writes the placeholders
    and the frames' times from."""

    def __init__(self, real, layout: QwenVLLayout, cache: FeatureCache) -> None:
        self._real = real
        self._layout = layout
        self._cache = cache
        self._last = threading.local()
        self._count = threading.Lock()
        self.processed = 0  # clips the real video processor ran on (for tests)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __call__(self, videos, **kwargs) -> BatchFeature:
        metadata = list(kwargs.pop("video_metadata", None) or [])
        options = repr(sorted((k, v) for k, v in kwargs.items()))
        clips = [self._clip(frames, metadata[number] if number < len(metadata) else None, options, kwargs)
                 for number, frames in enumerate(make_batched_videos(videos))]
        self._last.clips = clips
        return BatchFeature({"video_grid_thw": torch.cat([c.tensors["video_grid_thw"] for c in clips]),
                             "pixel_values_videos": torch.empty(0), "video_metadata": metadata},
                            skip_tensor_conversion=["video_metadata"])

    def last_clips(self) -> list[Photo]:
        return getattr(self._last, "clips", [])

    def _clip(self, frames, metadata, options: str, kwargs: dict) -> Photo:
        # The frames arrive as one array (the processor stacks them): the clip's identity
        # comes with its metadata (ClipMetadata), made where the clip was read.
        identity = getattr(metadata, "identity", None)
        key = None if identity is None else (identity, options)
        clip = self._cache.get(key)
        if clip is None:
            given = {**kwargs, "video_metadata": [metadata]} if metadata is not None else kwargs
            clip = self._layout.clip(identity, self._real([frames], **given))
            with self._count:
                self.processed += 1
            self._cache.put(key, clip)
        return clip
