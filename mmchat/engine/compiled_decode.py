"""Decoding with a static KV cache and a compiled one-token step (the fast path of issue 6).

At batch 1 a 4B model's decode step is about 2 GB of 4-bit weights read once: a
millisecond or two of GPU work, so the host's work per token decides the speed.
transformers' generate() does input preparation, logits processors, stopping criteria
and cache bookkeeping per token, and waits for each token before preparing the next
step (the GPU idles meanwhile); on the CPU that work alone costs 0.28 ms per token
beyond the compiled step (bench/decode_loop.py). This loop does, per token: one call
of the compiled step (under mode="reduce-overhead", one CUDA graph replay), sampling,
and a copy of the token to the host that overlaps the next step.

- The prefill (photos, vision encoder, the whole prompt) runs eagerly through the
  model's own forward, so photos of any size need no recompile, and the model computes
  its own multimodal positions (M-RoPE) as it does in generate().
- The KV cache is a transformers StaticCache, reset and reused from turn to turn and
  only reallocated (in steps of CACHE_BLOCK tokens) when a prompt outgrows it. Its
  length is marked dynamic, so one compile serves every size.
- All decoding runs on one dedicated thread: CUDA graph trees keep their state per
  thread, and the one cache serves one answer at a time (others wait their turn).
- Between answers the cache keeps what it holds (`resident`, as a prompt key): a
  follow-up continues from it, cut back to the part it shares, and only the rest of
  the prompt is prefilled (`keep`, `prefill`). A copy of another conversation's cache
  can be put in first (`install`, from `prefix_cache.PrefixStore`). The compiled step
  reads its position off the cache's length, so a cut is only a smaller length: what
  lies beyond it is masked out as any future position is, then overwritten.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from concurrent.futures import Future
from typing import Callable

import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer

log = logging.getLogger(__name__)

# The cache grows in blocks of this many tokens: few sizes (each new size records one
# more CUDA graph), little waste (attention reads the whole block every step).
CACHE_BLOCK = 1024


class _TensorSizedLayer(StaticLayer):
    """A StaticLayer whose attention-mask length is read off its tensors, not off a Python
    int: the compiled step then keeps the cache length symbolic, one compile for all sizes."""

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        if not self.is_initialized:  # the prefill asks before its first update
            return self.max_cache_len, 0
        return self.keys.shape[-2], 0


# Per layer, (keys, values) [batch, kv heads, tokens, head dim]: what goes in or out of the cache.
KV = list[tuple[torch.Tensor, torch.Tensor]]


def new_static_cache(config, tokens: int) -> StaticCache:
    cache = StaticCache(config=config, max_cache_len=tokens)
    if all(type(layer) is StaticLayer for layer in cache.layers):  # full attention everywhere
        cache.layers = [_TensorSizedLayer(max_cache_len=tokens) for _ in cache.layers]
    return cache


def truncate(cache: StaticCache, tokens: int) -> None:
    """Keep the first `tokens` of `cache` (in place, so compiled graphs keep their addresses)."""
    for layer in cache.layers:
        if layer.is_initialized:
            layer.cumulative_length.fill_(tokens)


def install(cache: StaticCache, kv: KV) -> None:
    """Make `cache` hold `kv` (copied in) and nothing after it."""
    truncate(cache, 0)
    for layer, (keys, values) in zip(cache.layers, kv):
        layer.update(keys, values)  # the first update also allocates the layer


def snapshot(cache: StaticCache, tokens: int) -> KV:
    """A copy of the first `tokens` of `cache`."""
    return [(layer.keys[:, :, :tokens].clone(), layer.values[:, :, :tokens].clone()) for layer in cache.layers]


def decode_step(model, cache: StaticCache, token: torch.Tensor, position_offsets: torch.Tensor) -> torch.Tensor:
    """Logits for the token after `token`, appending it to `cache`; what gets compiled.

    The position is read from the cache's own length (a tensor), so the compiled graph
    does not depend on it. `position_offsets` is [0] for plain RoPE, or [0, d, d, d] for
    M-RoPE models (Qwen-VL): the text position, then the 3 rotary positions, which run
    `d` (the model's rope_deltas) apart from it after the photos of the prompt.
    """
    position = cache.get_seq_length() + position_offsets
    position_ids = position.view(-1, 1, 1) if position_offsets.numel() > 1 else position.view(1, 1)
    output = model(input_ids=token, position_ids=position_ids, past_key_values=cache, use_cache=True)
    return output.logits[:, -1, :].float()


def sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The next token id, shape [1, 1]: greedy at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Keep the most likely tokens whose mass before them is under top_p (always the first).
    sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(dim=-1) - sorted_probs > top_p, 0.0)
    return order.gather(-1, torch.multinomial(sorted_probs, 1))


class _Worker:
    """One daemon thread that runs submitted functions in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Callable[[], None]) -> Future:
        future: Future = Future()
        self._jobs.put((fn, future))
        return future

    def _run(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)


class CompiledDecoder:
    """Generates for one transformers model; `compile=False` runs the same loop eagerly."""

    def __init__(self, model, *, compile: bool, eos_token_ids: set[int]) -> None:
        self.model = model
        self.compile = compile
        self.eos_token_ids = eos_token_ids
        self.device = model.device
        self._step = torch.compile(decode_step, mode="reduce-overhead") if compile else decode_step
        self._cache: StaticCache | None = None
        self._cache_tokens = 0
        self._worker = _Worker("mmchat-decode")
        # The module that keeps M-RoPE's offset after a prefill (Qwen-VL), if any.
        self._rope_holder = next((m for m in model.modules() if hasattr(m, "rope_deltas")), None)
        # What the cache holds, as a prompt key (prompt.py); None: unknown, so never continued.
        self.resident: torch.Tensor | None = None
        # Why the latest generate() ended: "end" (an end-of-turn token), "limit" or "stopped".
        self.last_stop = "limit"

    def submit(self, fn: Callable[[], None]) -> Future:
        """Run `fn` on the decoding thread (where generate() must run)."""
        return self._worker.submit(fn)

    def copy_resident(self) -> KV:
        """A copy of what the cache holds (`resident`); only on the decoding thread."""
        return snapshot(self._cache, len(self.resident))

    def _cache_for(self, tokens: int, keep: int, kv: KV | None) -> tuple[StaticCache, bool]:
        """A cache for `tokens` that holds `kv`, or else its own first `keep` tokens."""
        if self._cache is not None and self._cache_tokens >= tokens:
            if kv is not None:
                install(self._cache, kv)
            elif keep:
                truncate(self._cache, keep)
            else:
                self._cache.reset()
            return self._cache, False
        if kv is None and keep:
            kv = snapshot(self._cache, keep)  # copied out before the old cache goes
        self._cache = None  # let the old one go before the new one is allocated
        self._cache_tokens = CACHE_BLOCK * math.ceil(tokens / CACHE_BLOCK)
        self._cache = new_static_cache(self.model.config, self._cache_tokens)
        log.info("static KV cache of %d tokens", self._cache_tokens)
        if kv is not None:
            install(self._cache, kv)
        return self._cache, True

    def _position_offsets(self) -> torch.Tensor:
        if self._rope_holder is None:
            return torch.zeros(1, dtype=torch.long, device=self.device)
        deltas = self._rope_holder.rope_deltas  # None after a prompt without photos
        delta = 0 if deltas is None else int(deltas.reshape(-1)[0])
        return torch.tensor([0, delta, delta, delta], dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def generate(
        self,
        inputs: dict,
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        on_token: Callable[[torch.Tensor], None],
        should_stop: Callable[[], bool],
        stop_at_end_of_turn: bool = True,
        key: torch.Tensor | None = None,
        keep: int = 0,
        kv: KV | None = None,
        prefill: Callable[[StaticCache], torch.Tensor] | None = None,
    ) -> int:
        """Decode up to `max_new_tokens` after the prompt in `inputs` (batch 1).

        Calls `on_token` with each new token id (a [1] CPU tensor) until an end-of-turn
        token, the limit, or `should_stop()`; returns how many tokens it gave. Must run
        on the decoding thread: use `submit`.

        With `key` (the prompt's, prompt.py) the decoder remembers what its cache holds
        afterwards (`resident`). With `keep` > 0 the prompt's first `keep` tokens are not
        computed again: they are in the cache already, or in `kv`, copied in first;
        `prefill(cache)` runs the rest of the prompt and returns its last logits, and
        `inputs` then needs only the input_ids.
        """
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        self.resident = None  # unknown until this call has run to its end
        cache, new_cache = self._cache_for(prompt_tokens + max_new_tokens, keep, kv)
        if keep:
            logits = prefill(cache)
        else:
            if self._rope_holder is not None:
                self._rope_holder.rope_deltas = None  # computed afresh from this prompt's photos
            full = {k: v for k, v in inputs.items() if k != "attention_mask"}  # batch 1: no padding
            logits = self.model(**full, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :].float()
        if new_cache and self.compile:
            for layer in cache.layers:  # one compiled graph for every cache size
                torch._dynamo.mark_dynamic(layer.keys, 2)
                torch._dynamo.mark_dynamic(layer.values, 2)
        offsets = self._position_offsets()
        token = sample(logits, temperature, top_p)

        on_cuda = self.device.type == "cuda"
        host = torch.empty(1, dtype=torch.long, pin_memory=on_cuda)
        copied = torch.cuda.Event() if on_cuda else None
        given = 0
        sampled: list[int] = []  # every token read back, an end-of-turn one included
        self.last_stop = "limit"
        while given < max_new_tokens:
            host.copy_(token.view(1), non_blocking=True)
            if copied is not None:
                copied.record()
            following = None
            if given + 1 < max_new_tokens:
                # Queue the next step before waiting for this token: the GPU keeps working
                # while the host reads, decodes and streams it.
                if self.compile:
                    torch.compiler.cudagraph_mark_step_begin()
                following = sample(self._step(self.model, cache, token, offsets), temperature, top_p)
            if copied is not None:
                copied.synchronize()
            sampled.append(int(host[0]))
            if stop_at_end_of_turn and sampled[-1] in self.eos_token_ids:
                self.last_stop = "end"
                break
            on_token(host.clone())
            given += 1
            if should_stop():
                self.last_stop = "stopped"
                break
            token = following
        if key is not None:
            # The cache holds the prompt and each token a step was run on: the first of `sampled`.
            held = int(cache.get_seq_length())
            self.resident = torch.cat([key, torch.tensor(sampled, dtype=key.dtype)])[:held]
        return given

    def warm_up(self, inputs: dict, progress: Callable[[str, "float | None"], None]) -> None:
        """Compile and record the step now, so the first question pays nothing for it.

        If compiling fails (no Triton for this GPU, a compiler error), the decoder goes on
        uncompiled: slower answers rather than none.
        """
        def run() -> None:
            self.generate(
                inputs, max_new_tokens=8, temperature=0.0, top_p=1.0,
                on_token=lambda token: None, should_stop=lambda: False, stop_at_end_of_turn=False,
            )

        if not self.compile:
            self.submit(run).result()
            return
        # Several steps: cudagraph trees run a step eagerly, then record it, then replay it.
        progress("Compiling the decoder (once per start, takes a minute or two)", None)
        try:
            self.submit(run).result()
        except Exception as exc:
            log.warning("compiling the decoder failed, so it runs uncompiled (slower): %r", exc)
            progress(f"Compiling the decoder failed ({type(exc).__name__}); answering without it, more slowly", None)
            self.compile = False
            self._step = decode_step
            self.submit(run).result()
