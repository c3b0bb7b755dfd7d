"""A prepared prompt: its tokens, its photos and clips, and a key that tells it apart from any other.

The key is what a cached prefix is matched on (`prefix_cache.py`). It is the token ids,
except that each photo's (and clip's) placeholder tokens carry its identity instead: two
different photos of the same size get the same placeholder ids, and a cache matched on
ids alone would answer about the wrong photo.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import torch

from .vision import Photo, VisionLayout

_unknown_photos = itertools.count()


def identity_mark(identity: tuple | None) -> int:
    """A negative number (never a token id) standing for one photo's placeholders.

    A photo without an identity (not a stored file) gets a mark no other prompt has,
    so nothing from it on is ever reused."""
    text = repr(identity) if identity is not None else f"unknown photo {next(_unknown_photos)}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return -(int.from_bytes(digest, "little") >> 2) - 1


@dataclass
class Prompt:
    """What one call of the engine reads. All tensors stay on the CPU until a model needs them."""

    tokens: dict  # token-level inputs, [1, N] each (input_ids, attention_mask, mm_token_type_ids...)
    photos: list[Photo] | None  # in prompt order; None: a family without a layout, pixels are in `tokens`
    layout: VisionLayout | None
    key: torch.Tensor = field(init=False)  # [N] int64: the ids, each photo's placeholders marked by its identity
    spans: list[tuple[int, int]] = field(init=False)  # each photo's placeholder tokens [start, end)
    reusable: bool = field(init=False)  # whether a cached prefix may be continued

    def __post_init__(self) -> None:
        ids = self.tokens["input_ids"][0]
        self.key = ids.clone()
        self.spans = []
        self.reusable = self.layout is not None and self.photos is not None
        if not self.reusable:
            return
        # Photos and clips each take their own placeholder token, in the order they were sent.
        places = {False: (ids == self.layout.image_token_id).nonzero().flatten(),
                  True: (ids == self.layout.video_token_id).nonzero().flatten()}
        taken = {False: 0, True: 0}
        spans = []
        for photo in self.photos:
            mine = places[photo.video][taken[photo.video]:taken[photo.video] + photo.tokens]
            taken[photo.video] += photo.tokens
            if len(mine) != photo.tokens:
                break
            self.key[mine] = identity_mark(photo.identity)
            # A clip's placeholders stand between its frames' times: its span holds those too.
            spans.append((int(mine[0]), int(mine[-1]) + 1))
        if any(taken[kind] != len(places[kind]) for kind in places) or len(spans) != len(self.photos):
            self.reusable = False  # the processor placed them some other way: never guess
            self.key = ids.clone()
            return
        order = sorted(range(len(spans)), key=lambda i: spans[i][0])  # prompt order, photos and clips together
        self.photos = [self.photos[i] for i in order]
        self.spans = [spans[i] for i in order]

    @property
    def length(self) -> int:
        return int(self.tokens["input_ids"].shape[-1])

    def full_inputs(self) -> dict:
        """Everything the model reads for the whole prompt (on the CPU)."""
        if self.photos is None:
            return dict(self.tokens)
        return {**self.tokens, **self.layout.pixel_inputs(self.photos)}

    def photos_from(self, start: int) -> list[Photo]:
        """The photos whose placeholders begin at or after token `start`."""
        return [photo for photo, (begin, _) in zip(self.photos or [], self.spans) if begin >= start]

    def cut_before_photo(self, tokens: int) -> int:
        """`tokens`, or less so as not to cut a photo's placeholders in two."""
        for begin, end in self.spans:
            if begin < tokens < end:
                return begin
        return tokens
