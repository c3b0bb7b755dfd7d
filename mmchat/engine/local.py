"""The local engine: a transformers vision-language model on this machine.

Generation runs in a worker thread and streams through a TextIteratorStreamer; a
StoppingCriteria that reads the cancel token ends `generate()` within one token, so
Stop, barge-in and a closed tab all free the GPU at once. With int4 weights the
compiled decoder (`compiled_decode.py`) replaces generate(), on its own thread, with
the same streamer and the same one-token stop.
"""

from __future__ import annotations

import queue
import re
import threading
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from ..cancel import CancelToken
from ..config import Config
from ..images import open_for_model
from . import GenerationParams
from .compiled_decode import CompiledDecoder
from .loading import LoadedModel, Progress, load_model, plan_load

# Inserted after the first character of a control token typed by a user, so that the
# tokenizer sees plain text instead of a role marker or an image placeholder.
WORD_JOINER = "\u2060"
# How long to wait for the worker after a cancel: one decode step plus slack.
WORKER_JOIN_SECONDS = 30.0
# How often an answer waiting for the compiled decoder's thread checks for Stop.
QUEUED_POLL_SECONDS = 0.1


class _StopWhen(StoppingCriteria):
    """Ends generate() after the current token once `stopped()` says so (Stop, closed tab)."""

    def __init__(self, stopped) -> None:
        self.stopped = stopped

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.stopped(), dtype=torch.bool, device=input_ids.device)


class LocalEngine:
    def __init__(self, loaded: LoadedModel, *, max_pixels: int) -> None:
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
        self.max_pixels = max_pixels
        self.name = loaded.plan.model
        self._control_tokens = _control_token_pattern(self.tokenizer)
        # int4 weights decode through the static-cache loop, compiled on CUDA (issue 6).
        self.decoder: CompiledDecoder | None = None
        if loaded.plan.quantization == "int4":
            self.decoder = CompiledDecoder(
                self.model, compile=loaded.plan.device == "cuda", eos_token_ids=_end_of_turn_ids(self.model)
            )

    # --- prompt ---
    def _to_hf_messages(self, messages: list[dict]) -> list[dict]:
        """OpenAI chat messages -> the processor's chat format, with decoded photos."""
        converted = []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            items = []
            for item in content:
                if item["type"] == "text":
                    items.append({"type": "text", "text": self._neutralize(item["text"])})
                elif item["type"] == "image_url":
                    url = item["image_url"]["url"]
                    items.append({"type": "image", "image": open_for_model(_local_path(url), self.max_pixels)})
                else:
                    raise ValueError(f"the local engine cannot read {item['type']!r} content")
            converted.append({"role": message["role"], "content": items})
        return converted

    def _neutralize(self, text: str) -> str:
        if self._control_tokens is None:
            return text
        return self._control_tokens.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], text)

    def prepare_inputs(self, messages: list[dict]) -> dict:
        """The tensors `generate()` gets for `messages` (public so tests can inspect them)."""
        inputs = self.processor.apply_chat_template(
            self._to_hf_messages(messages),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        return inputs.to(self.model.device)

    def count_tokens(self, messages: list[dict]) -> int:
        return int(self.prepare_inputs(messages)["input_ids"].shape[-1])

    # --- generation ---
    def stream(self, messages: list[dict], params: GenerationParams, cancel: CancelToken) -> Iterator[str]:
        inputs = self.prepare_inputs(messages)
        # generate() hands the streamer the prompt first; the compiled decoder does not. The
        # timeout lets a Stop end an answer still waiting for the decoder's thread.
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=self.decoder is None, skip_special_tokens=True,
                                        timeout=QUEUED_POLL_SECONDS if self.decoder is not None else None)
        closed = threading.Event()  # set when our caller stops listening
        finished = threading.Event()
        failure: list[BaseException] = []

        def stopped() -> bool:
            return cancel.cancelled or closed.is_set()

        def work() -> None:
            try:
                with torch.inference_mode():
                    if self.decoder is None:
                        self._generate(inputs, params, streamer, stopped)  # ends the streamer itself
                    else:
                        if not stopped():  # an answer stopped while it waited its turn never starts
                            self.decoder.generate(
                                inputs, max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                top_p=params.top_p, on_token=streamer.put, should_stop=stopped,
                            )
                        streamer.end()
            except BaseException as exc:  # reported to the caller below, never lost in the thread
                failure.append(exc)
                streamer.end()
                if isinstance(exc, torch.cuda.OutOfMemoryError):
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

    def _generate(self, inputs: dict, params: GenerationParams, streamer, stopped) -> None:
        sampling = {"do_sample": False}
        if params.temperature > 0:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        self.model.generate(
            **inputs,
            **sampling,
            max_new_tokens=params.max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopWhen(stopped)]),
        )


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


def _end_of_turn_ids(model) -> set[int]:
    ids = model.generation_config.eos_token_id
    if ids is None:
        return set()
    return {int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])}


def _local_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" in url or url.startswith("data:"):
        raise ValueError("the local engine reads photos from files on this machine")
    return Path(url)


def _control_token_pattern(tokenizer) -> re.Pattern | None:
    """Matches the tokenizer's added markup tokens (<|im_start|>, <image>, <row_1_col_1>...)."""
    tokens = [
        token.content if hasattr(token, "content") else str(token)
        for token in getattr(tokenizer, "added_tokens_decoder", {}).values()
    ]
    tokens += list(getattr(tokenizer, "all_special_tokens", []))
    markup = sorted({t for t in tokens if len(t) > 1 and t[0] in "<[" and t[-1] in ">]"}, key=len, reverse=True)
    if not markup:
        return None
    return re.compile("|".join(re.escape(t) for t in markup))


def create_local_engine(config: Config, progress: Progress = lambda message, fraction: None) -> LocalEngine:
    """Load the configured model and warm it up, so the first question pays no start-up cost."""
    loaded = load_model(plan_load(config), progress)
    engine = LocalEngine(loaded, max_pixels=config.max_pixels)
    progress("Warming up the model", None)
    warm_up = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    if engine.decoder is not None:
        engine.decoder.warm_up(engine.prepare_inputs(warm_up), progress)
    else:
        for _ in engine.stream(warm_up, GenerationParams(max_new_tokens=2, temperature=0), CancelToken.standalone()):
            pass
    return engine
