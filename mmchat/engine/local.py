"""The local engine: a transformers vision-language model on this machine.

Generation runs in a worker thread and streams through a TextIteratorStreamer; a
StoppingCriteria that reads the cancel token ends `generate()` within one token, so
Stop, barge-in and a closed tab all free the GPU at once. With int4 weights the
compiled decoder (`compiled_decode.py`) replaces generate(), on its own thread, with
the same streamer and the same one-token stop.

Each photo is decoded and processed once (`media.photos`, `vision.py`), a prompt
counted for the token budget is not prepared again to be answered, and a follow-up
continues from the KV cache of the turns before it (`prefix_cache.py`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import OrderedDict
from typing import Iterator, Union

import torch
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from ..cancel import CancelToken
from ..config import Config
from ..media.photos import PHOTOS, model_image, url_identity
from ..media.video import CLIPS, ClipLimits, Frames, clip_identity, frames_as_photos, model_frames
from . import Completion, GenerationParams, part_urls
from .compiled_decode import CompiledDecoder
from .loading import LoadedModel, Progress, load_model, plan_load
from .markers import defuse_content, markup_pattern
from .prefix_cache import (
    MB, Entry, PrefixStore, cache_argument, common_prefix, dynamic_cache_from, kv_nbytes, prefill, prefix_cache_supported,
)
from .prompt import Prompt
from .vision import (
    FEATURE_CACHE_BYTES, CachingImageProcessor, CachingVideoProcessor, ClipMetadata, FeatureCache, QwenVLLayout,
    layout_for,
)

# How long to wait for the worker after a cancel: one decode step plus slack.
WORKER_JOIN_SECONDS = 30.0
# How often an answer waiting for the compiled decoder's thread checks for Stop.
QUEUED_POLL_SECONDS = 0.1
# Prompts kept prepared: the one just counted for the token budget is the one answered.
PREPARED_PROMPTS = 8


class _StopWhen(StoppingCriteria):
    """Ends generate() after the current token once `stopped()` says so (Stop, closed tab)."""

    def __init__(self, stopped) -> None:
        self.stopped = stopped
        self.fired = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        stop = self.stopped()
        self.fired = self.fired or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _TimedStreamer(TextIteratorStreamer):
    """Also notes when the first token of the answer arrives, before any text is whole."""

    first_token_at: float | None = None

    def put(self, value) -> None:
        if self.first_token_at is None and not (self.skip_prompt and self.next_tokens_are_prompt):
            self.first_token_at = time.perf_counter()
        super().put(value)


class LocalEngine:
    def __init__(self, loaded: LoadedModel, *, max_pixels: int, prefix_cache_mb: float = 0.0,
                 photo_cache_mb: float = FEATURE_CACHE_BYTES / MB, clip_limits: ClipLimits | None = None) -> None:
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
        self.max_pixels = max_pixels
        self.clip_limits = clip_limits or ClipLimits(frame_pixels=max_pixels)
        # Families whose processor reads video (Qwen3-VL: frames with their time stamps);
        # the others are given a clip as a few photos, each after the time it was shown.
        self.reads_video = getattr(self.processor, "video_processor", None) is not None and \
            getattr(self.processor, "video_token", None) is not None
        self.name = loaded.plan.model
        self._control_tokens = markup_pattern(self.tokenizer)
        self._eos = _end_of_turn_ids(self.model)
        # int4 weights decode through the static-cache loop, compiled on CUDA (issue 6).
        self.decoder: CompiledDecoder | None = None
        if loaded.plan.quantization == "int4":
            self.decoder = CompiledDecoder(self.model, compile=loaded.plan.device == "cuda", eos_token_ids=self._eos)
        # Families the engine knows the photos of: each photo processed once, prompts continued.
        self.layout = layout_for(self.model, self.processor)
        self._images: CachingImageProcessor | None = None
        self._videos: CachingVideoProcessor | None = None
        if self.layout is not None:
            # Photos and clips share one budget (--photo-cache-mb): a clip's frames are photos too.
            cache = FeatureCache(int(photo_cache_mb * MB))
            self._images = CachingImageProcessor(self.processor.image_processor, self.layout, cache=cache)
            self.processor.image_processor = self._images
            if self.reads_video and isinstance(self.layout, QwenVLLayout):
                self._videos = CachingVideoProcessor(self.processor.video_processor, self.layout, cache)
                self.processor.video_processor = self._videos
        self.prefix: PrefixStore | None = None
        if prefix_cache_mb > 0 and self.layout is not None and prefix_cache_supported(self.model):
            self.prefix = PrefixStore(int(prefix_cache_mb * MB))
        self._prepared: OrderedDict[str, Prompt] = OrderedDict()
        self._prepared_lock = threading.Lock()
        self.prepared_prompts = PREPARED_PROMPTS

    def forget(self) -> None:
        """Drop every cache (decoded and processed photos, prepared prompts, KV caches), so
        the next question is prepared and read from scratch, as a first question is: what a
        benchmark of one question measures. Not while an answer is being generated."""
        PHOTOS.clear()
        CLIPS.clear()
        if self._images is not None:
            self._images.clear()
        with self._prepared_lock:
            self._prepared.clear()
        if self.prefix is not None:
            self.prefix.clear()
        if self.decoder is not None:
            self.decoder.resident = None  # what its static cache holds counts as unknown: read all again

    # --- prompt ---
    def _to_hf_messages(self, messages: list[dict]) -> tuple[list[dict], list[ClipMetadata]]:
        """OpenAI chat messages -> the processor's chat format, with decoded photos and clips;
        and each clip's metadata, in order, for a processor that reads video."""
        converted, clips = [], []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            items = []
            # Typed markers stay text: see markers.py (parts written back to back included).
            for item in defuse_content(content, self._control_tokens):
                if item["type"] == "text":
                    items.append({"type": "text", "text": item["text"]})
                elif item["type"] == "image_url":
                    url = item["image_url"]["url"]
                    items.append({"type": "image", "image": model_image(url, self.max_pixels)})
                elif item["type"] == "video_url":
                    frames = model_frames(item["video_url"]["url"], self.clip_limits)
                    if self.reads_video:
                        video, metadata = _as_video(frames, int(self.processor.video_processor.temporal_patch_size))
                        items.append({"type": "video", "video": video})
                        clips.append(metadata)
                    else:
                        items.extend(_as_photos(frames))
                else:
                    raise ValueError(f"the local engine cannot read {item['type']!r} content")
            converted.append({"role": message["role"], "content": items})
        return converted, clips

    def prepare(self, messages: list[dict]) -> Prompt:
        """`messages` as the model reads them (on the CPU), prepared once: the prompt just
        counted for the token budget is the one then answered."""
        images, videos = part_urls(messages, "image_url"), part_urls(messages, "video_url")
        # The photos' and clips' identities are in the key: a photo stored again under the same name is another photo.
        fingerprint = json.dumps([messages, [url_identity(url, self.max_pixels) for url in images],
                                  [clip_identity(url, self.clip_limits) for url in videos]],
                                 sort_keys=True, default=str)
        with self._prepared_lock:
            prompt = self._prepared.get(fingerprint)
            if prompt is not None:
                self._prepared.move_to_end(fingerprint)
                return prompt
        converted, clips = self._to_hf_messages(messages)
        # Clips' frames are sampled already (media.video): the processor takes them as they are,
        # with the times they were shown, which it writes into the prompt ("<2.5 seconds>").
        video_options = {"video_metadata": clips, "do_sample_frames": False, "cap_pixels_per_frame": True}
        inputs = self.processor.apply_chat_template(
            converted,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            **({"processor_kwargs": video_options} if clips else {}),
        )
        if self.layout is None:
            prompt = Prompt(dict(inputs), None, None)
        else:
            photos = self._images.last_photos() if images or (videos and not self.reads_video) else []
            photos = photos + (self._videos.last_clips() if clips and self._videos is not None else [])
            tokens = {k: v for k, v in inputs.items() if k not in self.layout.vision_keys}
            prompt = Prompt(tokens, photos, self.layout)
        with self._prepared_lock:
            self._prepared[fingerprint] = prompt
            while len(self._prepared) > self.prepared_prompts:
                self._prepared.popitem(last=False)
        return prompt

    def prepare_inputs(self, messages: list[dict]) -> dict:
        """The tensors `generate()` gets for `messages`, on the model's device (public so
        tests and benchmarks can inspect them)."""
        return _to_device(self.prepare(messages).full_inputs(), self.model.device)

    def count_tokens(self, messages: list[dict]) -> int:
        return self.prepare(messages).length

    # --- generation ---
    def stream(self, messages: list[dict], params: GenerationParams,
               cancel: CancelToken) -> Iterator[Union[str, Completion]]:
        started = time.perf_counter()
        prompt = self.prepare(messages)
        # generate() hands the streamer the prompt first; the compiled decoder does not. The
        # timeout lets a Stop end an answer still waiting for the decoder's thread.
        streamer = _TimedStreamer(self.tokenizer, skip_prompt=self.decoder is None, skip_special_tokens=True,
                                  timeout=QUEUED_POLL_SECONDS if self.decoder is not None else None)
        closed = threading.Event()  # set when our caller stops listening
        finished = threading.Event()
        failure: list[BaseException] = []
        outcome: list[tuple[int, str]] = []  # (tokens written, finish reason), from the worker

        def stopped() -> bool:
            return cancel.cancelled or closed.is_set()

        def work() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    if self.decoder is None:
                        outcome.append(self._generate(prompt, params, streamer, stopped))  # ends the streamer itself
                    else:
                        if not stopped():  # an answer stopped while it waited its turn never starts
                            outcome.append(self._decode(prompt, params, streamer, stopped))
                        streamer.end()
            except BaseException as exc:  # reported to the caller below, never lost in the thread
                failure.append(exc)
                streamer.end()
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    if self.prefix is not None:
                        self.prefix.clear()
                    torch.cuda.empty_cache()  # give the memory back before the next question
            finally:
                finished.set()

        queued = None
        if self.decoder is not None:
            queued = self.decoder.submit(work)  # its one thread: answers asked at once take turns
        else:
            threading.Thread(target=work, name="mmchat-generate", daemon=True).start()
        try:
            yield from _pieces(streamer, lambda: cancel.cancelled and queued is not None and queued.cancel())
        finally:
            closed.set()
            if queued is None or not queued.cancel():  # a job still waiting its turn is dropped
                finished.wait(WORKER_JOIN_SECONDS)
        if failure:
            raise failure[0]
        written, reason = outcome[0] if outcome else (0, "cancelled")
        first = None if streamer.first_token_at is None else streamer.first_token_at - started
        yield Completion(reason, prompt.length, written, first)

    def _generate(self, prompt: Prompt, params: GenerationParams, streamer, stopped) -> tuple[int, str]:
        """generate(), continued from a cached prefix when there is one; (tokens written, finish reason)."""
        sampling = {"do_sample": False}
        if params.temperature > 0:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        stop = _StopWhen(stopped)
        common = dict(**sampling, max_new_tokens=params.max_new_tokens, streamer=streamer,
                      stopping_criteria=StoppingCriteriaList([stop]))
        n, device = prompt.length, self.model.device
        caching = self.prefix is not None and prompt.reusable
        # generate() computes at least the prompt's last token itself: reuse at most n - 1.
        reuse = self.prefix.take(prompt, n - 1) if caching else None
        if reuse is None:
            cache = DynamicCache(config=self.model.config) if caching else None
            extra = {cache_argument(self.model): cache} if caching else {}
            output = self.model.generate(**_to_device(prompt.full_inputs(), device), **extra, **common)
        else:
            cache = dynamic_cache_from(self.model, reuse)
            positions, _ = prompt.layout.positions(prompt.tokens, prompt.photos)
            if reuse.matched < n - 1:
                prefill(self.model, prompt, cache, reuse.matched, n - 1, positions)
            # Given the whole prompt's positions generate() continues them (see QwenVLLayout.positions).
            extra = {} if positions is None else {"position_ids": positions.to(device)}
            output = self.model.generate(
                input_ids=prompt.tokens["input_ids"].to(device), attention_mask=torch.ones(1, n, dtype=torch.long, device=device),
                **{cache_argument(self.model): cache}, **extra, **common,
            )
        written = output[0, n:].cpu()
        if cache is not None:
            held = cache.get_seq_length()
            self.prefix.put(Entry(torch.cat([prompt.key, written])[:held], cache, kv_nbytes(cache)))
        ended = len(written) > 0 and int(written[-1]) in self._eos
        tokens = len(written) - ended
        reason = "stop" if ended else "cancelled" if stop.fired else "length" if tokens >= params.max_new_tokens else "stop"
        return tokens, reason

    def _decode(self, prompt: Prompt, params: GenerationParams, streamer, stopped) -> tuple[int, str]:
        """The compiled decoder, continued from its own cache or a stored one; on its thread."""
        decoder, n = self.decoder, prompt.length
        run = dict(max_new_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                   on_token=streamer.put, should_stop=stopped)
        if self.prefix is None or not prompt.reusable:
            given = decoder.generate(_to_device(prompt.full_inputs(), self.model.device), **run)
        else:
            keep, kv = self._settle_decoder_cache(prompt, n - 1)
            positions, deltas = prompt.layout.positions(prompt.tokens, prompt.photos) if keep else (None, None)

            def rest_of_prompt(cache) -> torch.Tensor:
                prompt.layout.set_rope_deltas(deltas, self.model.device)  # the decode steps read it
                return prefill(self.model, prompt, cache, keep, n, positions)

            inputs = {"input_ids": prompt.tokens["input_ids"]} if keep else _to_device(prompt.full_inputs(), self.model.device)
            given = decoder.generate(inputs, **run, key=prompt.key, keep=keep, kv=kv, prefill=rest_of_prompt)
        reason = {"end": "stop", "limit": "length", "stopped": "cancelled"}[decoder.last_stop]
        return given, reason

    def _settle_decoder_cache(self, prompt: Prompt, limit: int):
        """(tokens to keep, KV to put in first or None): the decoder's own cache where it
        shares the most with `prompt`, else the stored entry that does; what the decoder
        held is stored first when it may be another conversation's."""
        decoder = self.decoder
        resident = decoder.resident
        held = 0 if resident is None else prompt.cut_before_photo(common_prefix(resident, prompt.key[:limit]))
        reuse = self.prefix.take(prompt, limit, longer_than=held)
        if resident is not None and len(resident) and (reuse is not None or len(resident) - held > held):
            kv = decoder.copy_resident()
            self.prefix.put(Entry(resident, kv, kv_nbytes(kv)))
        if reuse is None:
            if held:
                self.prefix.count(held)
            return held, None
        return reuse.matched, reuse.kv


def _as_video(frames: Frames, temporal_patch: int) -> tuple[list, ClipMetadata]:
    """A clip's frames as the processor's video input, and the metadata it writes the frames'
    times from (frame k was shown k / rate seconds in)."""
    images = list(frames.images)
    indices = list(range(len(images)))
    while len(images) < temporal_patch:  # the vision encoder reads frames in pairs: a one-frame clip is held
        images.append(images[-1])
        indices.append(indices[-1])
    width, height = images[0].size
    return images, ClipMetadata(total_num_frames=len(images), fps=frames.rate, frames_indices=indices,
                                duration=frames.seconds, width=width, height=height,
                                identity=("clip", *frames.identity, len(images)))


def _as_photos(frames: Frames) -> list[dict]:
    """A clip for a family that reads no video: a few of its frames as photos, each after its time."""
    intro, shown = frames_as_photos(frames)
    items = [{"type": "text", "text": intro}]
    for when, image in shown:
        items += [{"type": "text", "text": when}, {"type": "image", "image": image}]
    return items


def _pieces(streamer: TextIteratorStreamer, dropped_while_waiting) -> Iterator[str]:
    """The streamer's text pieces; with a timeout set, `dropped_while_waiting()` is asked
    at each timeout and ends the pieces when it says the work was dropped unstarted."""
    while True:
        try:
            text = next(streamer)
        except StopIteration:
            return
        except queue.Empty:
            if dropped_while_waiting():
                return
            continue
        if text:
            yield text


def _to_device(inputs: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _end_of_turn_ids(model) -> set[int]:
    ids = model.generation_config.eos_token_id
    if ids is None:
        return set()
    return {int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])}


def create_local_engine(config: Config, progress: Progress = lambda message, fraction: None) -> LocalEngine:
    """Load the configured model and warm it up, so the first question pays no start-up cost."""
    loaded = load_model(plan_load(config), progress)
    engine = LocalEngine(loaded, max_pixels=config.max_pixels, prefix_cache_mb=config.prefix_cache_mb,
                         photo_cache_mb=config.photo_cache_mb, clip_limits=ClipLimits.of(config))
    progress("Warming up the model", None)
    warm_up = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    if engine.decoder is not None:
        engine.decoder.warm_up(engine.prepare_inputs(warm_up), progress)
    else:
        for _ in engine.stream(warm_up, GenerationParams(max_new_tokens=2, temperature=0), CancelToken.standalone()):
            pass  # text pieces, then the Completion: only the work matters here
    if engine.prefix is not None:
        engine.prefix.clear()  # nobody will ask "Hi" again
    return engine
