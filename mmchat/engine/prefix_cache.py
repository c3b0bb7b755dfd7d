"""The model's KV cache of a conversation, kept between turns: a follow-up reads only what is new.

What vLLM's automatic prefix caching and llama.cpp's prompt cache do, for one process.
The engine is never told which conversation a prompt belongs to; it need not be:

- Every answer leaves an entry: the prompt's key (`prompt.py`: token ids, photos by
  identity) plus the answer's tokens, and the KV cache that holds them.
- A new prompt continues from the entry that shares the longest prefix with it, cut
  back so that no photo is cut in two. A follow-up shares everything but the new
  question; Regenerate and Edit share everything before the changed part; two
  conversations share at most their common beginning (the system prompt).
- The store is bounded in bytes (`Config.prefix_cache_mb`); the least recently used
  entries go first.
- An entry belongs to one answer at a time. A follow-up takes its conversation's entry
  out, continues it and puts the longer one back. When the match covers less than half
  of an entry, its rest most likely is another conversation's: the entry stays, and
  the answer gets a copy of the matched part.
- Only an answer that ran to its end (stop, length or a Stop between two tokens) puts
  its cache back; one that failed may have left its layers half-written.

The generate() path keeps transformers DynamicCaches; the compiled decoder keeps its
one StaticCache and stores copies of it here when it switches conversations.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .prompt import Prompt

MB = 1024 * 1024

# Per layer, the cached (keys, values), each [batch, kv heads, tokens, head dim].
KV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(eq=False)
class Entry:
    key: torch.Tensor  # [T] int64 on the CPU: what the cache holds, as a prompt key
    cache: object  # a DynamicCache, or a KV snapshot of the compiled decoder's StaticCache
    nbytes: int


@dataclass
class Reuse:
    """What a prompt continues from: `matched` tokens of a stored entry."""

    matched: int
    kv: KV  # the entry's layers cut to `matched` tokens (views: read them, never write them)
    owned: Entry | None  # the entry itself when it was taken out of the store, else None


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


def kv_of(cache) -> KV:
    if isinstance(cache, list):
        return cache
    return [(layer.keys, layer.values) for layer in cache.layers]


def kv_nbytes(cache) -> int:
    # Storage, not numel: a cut DynamicLayer is a view that still holds its whole tensor.
    return sum(t.untyped_storage().nbytes() for pair in kv_of(cache) for t in pair)


class PrefixStore:
    """Entries by key, least recently used first, at most `max_bytes` in all; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        # For tests and the benchmark: continued prompts, and the tokens they did not recompute.
        self.hits = 0
        self.reused_tokens = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, prompt: Prompt, limit: int, longer_than: int = 0) -> Reuse | None:
        """The longest stored prefix of `prompt` (at most `limit` tokens), or None if none
        is longer than `longer_than`."""
        key = prompt.key[:limit]
        with self._lock:
            best, matched = None, 0
            for entry in self._entries.values():
                length = prompt.cut_before_photo(common_prefix(entry.key, key))
                if length > matched:
                    best, matched = entry, length
            if best is None or matched <= longer_than:
                return None
            # Views taken under the lock: whoever owns an entry next replaces its tensors
            # (DynamicLayer concatenates, the decoder installs copies) but never writes into them.
            kv = [(k[:, :, :matched], v[:, :, :matched]) for k, v in kv_of(best.cache)]
            owned = None
            if len(best.key) - matched <= matched:
                owned = best
                self._remove(best)
            else:
                self._entries.move_to_end(id(best))
            self.count(matched)
            return Reuse(matched, kv, owned)

    def count(self, matched: int) -> None:
        """Note a prompt continued from `matched` cached tokens (the decoder's own cache counts too)."""
        self.hits += 1
        self.reused_tokens += matched

    def put(self, entry: Entry) -> None:
        with self._lock:
            if entry.nbytes > self.max_bytes or len(entry.key) == 0:
                return
            for other in list(self._entries.values()):  # the same tokens twice: keep the newer
                if len(other.key) == len(entry.key) and common_prefix(other.key, entry.key) == len(entry.key):
                    self._remove(other)
            self._entries[id(entry)] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes:
                self._remove(next(iter(self._entries.values())))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _remove(self, entry: Entry) -> None:
        del self._entries[id(entry)]
        self._bytes -= entry.nbytes


def cache_argument(model) -> str:
    """The name transformers gives the KV cache argument (`past_key_values` before 5.24's rename)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefix_cache_supported(model) -> bool:
    """Whether every layer's cache is a plain DynamicLayer, which can be cut back to any
    length (sliding-window and linear-attention layers have forgotten what they would need)."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def dynamic_cache_from(model, reuse: Reuse) -> DynamicCache:
    """A DynamicCache holding the `reuse.matched` tokens: the owned entry's, cut back in
    place, or a copy of the shared one's."""
    if reuse.owned is not None:
        cache = reuse.owned.cache
        for layer, (keys, values) in zip(cache.layers, reuse.kv):
            layer.keys, layer.values = keys, values
        return cache
    cache = DynamicCache(config=model.config)
    for index, (keys, values) in enumerate(reuse.kv):
        cache.update(keys, values, index)  # concatenated onto an empty layer: a copy
    return cache


def prefill(model, prompt: Prompt, cache, start: int, end: int, positions: torch.Tensor | None) -> torch.Tensor:
    """Run the model on the prompt's tokens [start, end) after `cache`, which holds [0, start).

    Only the photos from `start` on go through the vision encoder. M-RoPE positions are
    the whole prompt's (`positions`, [4, 1, N]), sliced: the same a full prefill computes.
    Returns the logits after token end - 1, as float ([1, vocab]).
    """
    inputs = {"input_ids": prompt.tokens["input_ids"][:, start:end],
              **prompt.layout.pixel_inputs(prompt.photos_from(start))}
    if positions is not None:
        inputs["position_ids"] = positions[..., start:end]
    inputs = {name: value.to(model.device) for name, value in inputs.items()}
    output = model(**inputs, **{cache_argument(model): cache}, use_cache=True, logits_to_keep=1)
    return output.logits[:, -1, :].float()
