"""KV reuse between turns (issue 11): answers identical to a full prefill, photos told apart by identity.

Every check runs a conversation twice through the real loader, once with the prefix
cache and once without (prefix_cache_mb=0), and compares the greedy answers token for
token; it also checks the cache really was used, so that it cannot pass by doing nothing.
The random fixtures are kept from ending by themselves, so every answer is long and
every step counts.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest
import torch
from PIL import Image

from clips import make_clip
from conftest import engine_for
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.cancel import CancelScope, CancelToken
from mmchat.config import Config
from mmchat.engine import Completion, GenerationParams
from mmchat.engine.compiled_decode import CACHE_BLOCK, CompiledDecoder
from mmchat.engine.local import create_local_engine
from mmchat.media.video import model_frames

GREEDY = GenerationParams(max_new_tokens=12, temperature=0.0)
PATHS = [("tiny-qwen3-vl", "none"), ("tiny-qwen3-vl", "int4"), ("tiny-idefics3", "none"), ("tiny-idefics3", "int4")]


def _user(text, *images):
    content = [{"type": "image_url", "image_url": {"url": p.resolve().as_uri()}} for p in images]
    return {"role": "user", "content": content + [{"type": "text", "text": text}]}


def _endless(engine):
    engine.model.generation_config.eos_token_id = None
    if engine.decoder is not None:
        engine.decoder.eos_token_ids = set()
    return engine


@pytest.fixture(scope="module", params=PATHS, ids=["-".join(p) for p in PATHS])
def engines(request):
    """(with the prefix cache, without it) for one family and weight format."""
    family, quantization = request.param
    return (_endless(engine_for(family, quantization)),
            _endless(engine_for(family, quantization, prefix_cache_mb=0)))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Photos of three sizes, and two of the same size that differ only in colour."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = {}
    for name, colour, size in (("red", "red", (64, 48)), ("blue", "blue", (40, 80)), ("green", "green", (96, 96)),
                               ("grey", "grey", (64, 48))):
        paths[name] = folder / f"{name}.png"
        Image.effect_noise(size, 60).convert("RGB").save(paths[name]) if name == "grey" else \
            Image.new("RGB", size, colour).save(paths[name])
    return paths


def _ask(engine, messages, params=GREEDY):
    """(the answer, its Completion without the timing, so that two can be compared)."""
    *pieces, completion = engine.stream(messages, params, CancelToken.standalone())
    assert isinstance(completion, Completion)
    assert (completion.first_token_seconds is not None) == (completion.completion_tokens > 0)
    return "".join(pieces), dataclasses.replace(completion, first_token_seconds=None)


class Chat:
    """A conversation as the app sends it: every turn the whole history again."""

    def __init__(self, *first):
        self.messages = [{"role": "system", "content": "You are a test."}, _user(*first)]

    def answered(self, text):
        self.messages.append({"role": "assistant", "content": text})

    def ask(self, *question):
        self.messages.append(_user(*question))


def _both(engines, steps):
    """Run `steps(ask)` with each engine; `ask(chat)` answers the chat and adds the answer."""
    results = []
    for engine in engines:
        answers = []

        def ask(chat, engine=engine, answers=answers):
            text, completion = _ask(engine, chat.messages)
            answers.append((text, completion.prompt_tokens, completion.completion_tokens, completion.finish_reason))
            chat.answered(text)
            return text

        steps(ask)
        results.append(answers)
    return results


def _reused(engine) -> int:
    return engine.prefix.reused_tokens


def test_follow_ups_with_photos_answer_as_without_the_cache(engines, pictures):
    cached, _ = engines
    before = _reused(cached)

    def steps(ask):
        chat = Chat("What is this?", pictures["red"])
        ask(chat)
        chat.ask("And now these two?", pictures["blue"], pictures["green"])  # two photos in a turn
        ask(chat)
        chat.ask("Which was first?")  # no photo: all three are in the cached prefix
        ask(chat)
        chat.ask("And this one?", pictures["red"])  # a photo seen before, again
        ask(chat)

    with_cache, without = _both(engines, steps)
    assert with_cache == without
    assert all(completion_tokens == GREEDY.max_new_tokens for _, _, completion_tokens, _ in with_cache)
    # Each follow-up read at least the whole turn before it from the cache.
    assert _reused(cached) - before >= sum(prompt for _, prompt, _, _ in with_cache[:-1])


def test_regenerate_and_edit_cut_the_cache_back_and_answer_as_without_it(engines, pictures):
    cached, _ = engines

    def steps(ask):
        chat = Chat("Look.", pictures["blue"])
        first = ask(chat)
        chat.ask("Compare with this.", pictures["green"], pictures["red"])
        ask(chat)
        chat.messages.pop()  # Regenerate: the same question again
        ask(chat)
        chat.messages[-2:] = [_user("Compare the colours.", pictures["green"], pictures["red"])]  # Edit the words
        ask(chat)
        chat.messages[-2:] = [_user("Compare with this.", pictures["red"])]  # Edit away a photo
        ask(chat)
        chat.messages[1:] = [_user("Look.", pictures["blue"]), {"role": "assistant", "content": first}]
        chat.ask("Short?")  # back to an earlier branch of the conversation
        ask(chat)

    before = _reused(cached)
    with_cache, without = _both(engines, steps)
    assert with_cache == without
    assert _reused(cached) > before


def test_two_conversations_interleaved_answer_as_alone(engines, pictures):
    cached, _ = engines

    def steps(ask):
        a, b = Chat("What is this?", pictures["red"]), Chat("What is this?", pictures["green"])
        for question in ("Why?", "Sure?", "Really?"):
            ask(a)
            ask(b)
            a.ask(question)
            b.ask(question, pictures["blue"])
        ask(a)
        ask(b)

    with_cache, without = _both(engines, steps)
    assert with_cache == without
    # With the static cache of the int4 path too, the conversations continue from their own.
    assert cached.prefix.hits and _reused(cached) > 0


@pytest.mark.parametrize("quantization", ["none", "int4"])
def test_a_conversation_without_photos_after_one_with_them(quantization, pictures):
    """Qwen-VL keeps the M-RoPE offset of the last prompt it read whole: a text-only prompt
    continued from the cache must not inherit it from another conversation's photos."""
    fresh = (_endless(engine_for("tiny-qwen3-vl", quantization)),  # an empty store: the first prompt is read whole
             _endless(engine_for("tiny-qwen3-vl", quantization, prefix_cache_mb=0)))

    def steps(ask):
        photo, text = Chat("What is this?", pictures["blue"], pictures["green"]), Chat("Hello there.")
        ask(photo)
        ask(text)  # continues from the photo conversation's system prompt
        text.ask("Tell me more.")
        ask(text)
        photo.ask("Why?")
        ask(photo)

    with_cache, without = _both(fresh, steps)
    assert with_cache == without


def test_photos_of_the_same_size_are_told_apart(engines, pictures):
    """Same size, same question: the same token ids, so only the photos' identities differ."""
    cached, plain = engines
    red, grey = [[_user("What is this?", pictures[name])] for name in ("red", "grey")]
    assert cached.prepare(red).tokens["input_ids"].tolist() == cached.prepare(grey).tokens["input_ids"].tolist()
    for messages in (red, grey, red):
        assert _ask(cached, messages) == _ask(plain, messages)


def test_a_photo_stored_again_under_the_same_name_is_another_photo(engines, pictures, tmp_path):
    cached, plain = engines
    path = tmp_path / "again.png"
    Image.new("RGB", (64, 48), "red").save(path)
    messages = [_user("What is this?", path)]
    _ask(cached, messages)
    Image.effect_noise((64, 48), 60).convert("RGB").save(path)
    os.utime(path, ns=(1, 1))  # a different mtime however fast the file system's clock
    assert _ask(cached, messages) == _ask(plain, messages)


def test_a_stop_from_another_thread_leaves_a_cache_that_goes_on_correctly(engines, pictures):
    cached, plain = engines
    chat = Chat("Describe it at length.", pictures["green"])
    scope = CancelScope()
    flowing = threading.Event()
    stopper = threading.Thread(target=lambda: (flowing.wait(30), scope.cancel()))
    stopper.start()
    items = []
    for item in cached.stream(chat.messages, GenerationParams(max_new_tokens=100_000, temperature=0.0), scope.new_token()):
        items.append(item)
        if len(items) == 3:
            flowing.set()
    stopper.join()
    *pieces, completion = items
    assert completion.finish_reason == "cancelled" and 0 < completion.completion_tokens < 2000
    chat.answered("".join(pieces))
    chat.ask("Go on.")
    before = _reused(cached)
    assert _ask(cached, chat.messages) == _ask(plain, chat.messages)
    assert _reused(cached) > before, "the stopped answer's cache should have been kept"


class _Fails:
    """Makes the language model's second layer fail at its `at`-th call from now: a fault
    mid-answer that leaves the first layer's cache one token longer than the others'."""

    def __init__(self, model, at):
        self.calls, self.at = 0, at
        layer = next(module for name, module in model.named_modules()
                     if name.endswith("layers.1") and "vision" not in name and "visual" not in name)
        self.handle = layer.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1
        if self.calls == self.at:
            self.handle.remove()
            raise RuntimeError("injected fault")


@pytest.mark.parametrize("at", [1, 4], ids=["in the prefill", "in the third token"])
def test_an_answer_that_failed_leaves_no_cache_behind(engines, pictures, at):
    cached, plain = engines
    chat = Chat("What is this?", pictures["red"])
    chat.answered(_ask(cached, chat.messages)[0])
    chat.ask("And this?", pictures["blue"])
    _Fails(cached.model, at=at)
    with pytest.raises(RuntimeError, match="injected fault"):
        _ask(cached, chat.messages)
    assert _ask(cached, chat.messages) == _ask(plain, chat.messages)


def test_a_failure_just_after_switching_conversations_leaves_no_cache_behind(engines, pictures):
    """On the int4 path, switching puts the other conversation's cache in first: after a
    fault there, the decoder must not take what it holds for the conversation it had."""
    cached, plain = engines
    a, b = Chat("What is this?", pictures["red"]), Chat("What is that?", pictures["green"])
    for chat in (a, b, a):
        chat.answered(_ask(cached, chat.messages)[0])
        chat.ask("More?")
    _Fails(cached.model, at=1)
    with pytest.raises(RuntimeError, match="injected fault"):
        _ask(cached, b.messages)
    assert _ask(cached, a.messages) == _ask(plain, a.messages)
    assert _ask(cached, b.messages) == _ask(plain, b.messages)


def test_answers_generated_at_once_in_two_threads_each_get_their_own(pictures):
    """The generate() path runs answers side by side (--concurrency above 1): no cache is shared."""
    cached, plain = _endless(engine_for("tiny-qwen3-vl")), _endless(engine_for("tiny-qwen3-vl", prefix_cache_mb=0))
    chats = [Chat("What is this?", pictures[name]) for name in ("red", "green")]
    for chat in chats:
        chat.answered(_ask(cached, chat.messages)[0])
        chat.ask("More?", pictures["blue"])
    params = GenerationParams(max_new_tokens=40, temperature=0.0)
    together: dict[int, tuple] = {}
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, _ask(cached, chats[i].messages, params)))
               for i in range(2)]
    before = _reused(cached)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [together[i] for i in range(2)] == [_ask(plain, chat.messages, params) for chat in chats]
    # At least each first question (the random answers need not tokenize back to the same ids).
    assert _reused(cached) - before >= sum(cached.count_tokens(chat.messages[:2]) for chat in chats)


def test_memory_stays_within_the_budget_least_recently_used_first(pictures):
    probe = _endless(engine_for("tiny-qwen3-vl"))
    chats = [Chat("What is this?", pictures[name]) for name in ("red", "blue", "green")]
    _ask(probe, chats[0].messages)
    one = probe.prefix.nbytes  # what one short conversation takes
    engine = _endless(engine_for("tiny-qwen3-vl", prefix_cache_mb=2.5 * one / 2**20))
    store = engine.prefix
    for chat in chats:
        chat.answered(_ask(engine, chat.messages)[0])
        assert store.nbytes <= store.max_bytes
    assert len(store) == 2
    first_prompt = engine.count_tokens(chats[0].messages[:2])
    chats[-1].ask("And?")
    before = store.reused_tokens
    _ask(engine, chats[-1].messages)
    assert store.reused_tokens - before >= engine.count_tokens(chats[-1].messages[:2]), "the newest is kept"
    chats[0].ask("And?")
    before = store.reused_tokens
    _ask(engine, chats[0].messages)
    assert store.reused_tokens - before < first_prompt, "the oldest went first"


@pytest.fixture(scope="module", params=["none", "int4"])
def shapes_engine(request):
    return create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization=request.param))


def test_the_trained_model_answers_about_its_own_photo_in_interleaved_conversations(shapes_engine, tmp_path):
    """Same-size photos in two conversations: reused by token ids alone, the second would get the first's colour."""
    paths = {}
    for colour in ("red", "blue", "green"):
        paths[colour] = tmp_path / f"{colour}.png"
        draw_test_image("circle", colour, "left").save(paths[colour])
    chats = {colour: Chat("What colour is the shape?", paths[colour]) for colour in paths}
    for chat in chats.values():
        chat.messages.pop(0)  # as trained: no system prompt
    for colour, chat in chats.items():
        text, completion = _ask(shapes_engine, chat.messages)
        assert text.strip() == colour
        assert completion.finish_reason == "stop"
        assert completion.completion_tokens == len(shapes_engine.tokenizer.encode(text, add_special_tokens=False))
        assert completion.prompt_tokens == shapes_engine.count_tokens(chat.messages)
        chat.answered(text)
        chat.ask("What shape was it?")
    for colour, chat in chats.items():
        assert _ask(shapes_engine, chat.messages)[0].strip() == "circle"
        chat.answered("circle")
        chat.ask("What colour was it?")
    for colour, chat in reversed(chats.items()):
        assert _ask(shapes_engine, chat.messages)[0].strip() == colour
    assert shapes_engine.prefix.reused_tokens > 0


def test_the_length_limit_is_reported(pictures):
    engine = _endless(engine_for("tiny-idefics3"))
    text, completion = _ask(engine, [_user("Hi", pictures["red"])], GenerationParams(max_new_tokens=5, temperature=0.0))
    assert completion.finish_reason == "length" and completion.completion_tokens == 5
    ids = engine.prepare_inputs([_user("Hi", pictures["red"])])
    with torch.inference_mode():
        output = engine.model.generate(**ids, do_sample=False, max_new_tokens=5)
    assert text == engine.tokenizer.decode(output[0, ids["input_ids"].shape[-1]:], skip_special_tokens=True)


def test_the_compiled_step_continues_cut_switched_and_grown_caches_with_one_graph(pictures):
    """What the int4 path does on a GPU (compiled step, one StaticCache), compiled for the CPU here."""
    import torch._dynamo.utils

    cached, plain = engine_for("tiny-qwen3-vl", "int4"), _endless(engine_for("tiny-qwen3-vl", "int4", prefix_cache_mb=0))
    cached.decoder = CompiledDecoder(cached.model, compile=True, eos_token_ids=set())
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()

    def steps(ask):
        a, b = Chat("What is this?", pictures["red"]), Chat("What is that?", pictures["green"])
        ask(a)
        ask(b)  # switches: a's cache is stored, b starts from the shared system prompt
        a.ask("More?", pictures["blue"])
        ask(a)  # switches back: a's copy is put in
        a.messages.pop()
        ask(a)  # Regenerate: cut back in place
        b.ask("word " * (CACHE_BLOCK // 2))
        ask(b)
        b.ask("And?")
        ask(b)  # outgrows the cache: the kept prefix moves to a bigger one

    with_cache, without = _both((cached, plain), steps)
    assert with_cache == without
    assert cached.decoder._cache_tokens > CACHE_BLOCK, "the last turns should have grown the cache"
    assert cached.prefix.reused_tokens > CACHE_BLOCK // 2
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def _clip_turn(text, clip):
    return {"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip.resolve().as_uri()}},
                                        {"type": "text", "text": text}]}


def test_follow_ups_after_a_clip_answer_as_without_the_cache_and_process_it_once(engines, tmp_path):
    # Two clips of the same size and length that differ only in colour: told apart by identity.
    red = make_clip(tmp_path / "red.mp4", seconds=2.0, fps=10, size=(64, 48), colour=lambda t: (255, 0, 0))
    blue = make_clip(tmp_path / "blue.mp4", seconds=2.0, fps=10, size=(64, 48), colour=lambda t: (0, 0, 255))
    cached, _ = engines
    processor = cached._videos or cached._images  # Qwen3-VL reads video; SmolVLM a clip's frames as photos
    before, processed = _reused(cached), processor.processed

    def steps(ask):
        chat = Chat("What happens?")
        chat.messages[-1] = _clip_turn("What happens?", red)
        ask(chat)
        chat.ask("And then?")  # no new clip: the clip is in the cached prefix
        ask(chat)
        chat.messages.append(_clip_turn("And in this one?", blue))
        ask(chat)
        chat.ask("Which came first?")
        ask(chat)

    with_cache, without = _both(engines, steps)
    assert with_cache == without
    assert _reused(cached) - before >= sum(prompt for _, prompt, _, _ in with_cache[:-1])
    # Each clip went through the video (or image) processor once, however often the history sent it.
    frames_each = 1 if cached._videos is not None else len(model_frames(red.as_uri(), cached.clip_limits).images)
    assert processor.processed - processed == 2 * frames_each
