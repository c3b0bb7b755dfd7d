"""The compiled decoder (issue 6's fast path) against transformers' generate(), on the CPU.

On the CPU torch.compile makes C++ kernels instead of CUDA graphs, but the traced step,
the static cache, the positions and the cache resizing are the same code as on a GPU.
"""

from __future__ import annotations

import threading

import pytest
import torch
import torch._dynamo.utils

from conftest import engine_for
from fixture_models import shapes_vlm_path
from mmchat.cancel import CancelScope, CancelToken
from mmchat.config import Config
from mmchat.engine import Completion, GenerationParams
from mmchat.engine.compiled_decode import CACHE_BLOCK, CompiledDecoder
from mmchat.engine.local import create_local_engine

TOKENS = 40


def _user(text, *images):
    content = [{"type": "image_url", "image_url": {"url": p.resolve().as_uri()}} for p in images]
    return {"role": "user", "content": content + [{"type": "text", "text": text}]}


def _conversations(photos):
    red, blue = photos
    return {
        "one photo": [_user("What is in this photo?", red)],
        "text only": [_user("Hello, what can you do?")],
        # Photos in an earlier turn and two in the last: M-RoPE positions run ahead of the
        # token count by a different amount than with one photo.
        "two turns, three photos": [
            _user("Look at this.", red),
            {"role": "assistant", "content": "A red square."},
            _user("Compare these two.", blue, red),
        ],
    }


def _text(items) -> str:
    """The answer's text, checking the stream ended with its one Completion."""
    *pieces, completion = items
    assert isinstance(completion, Completion) and all(isinstance(p, str) for p in pieces)
    return "".join(pieces)


def _decode(decoder, inputs, tokens=TOKENS, stop_at_end_of_turn=True, temperature=0.0, top_p=1.0):
    out = []
    decoder.submit(lambda: decoder.generate(
        inputs, max_new_tokens=tokens, temperature=temperature, top_p=top_p,
        on_token=lambda token: out.append(int(token[0])), should_stop=lambda: False,
        stop_at_end_of_turn=stop_at_end_of_turn,
    )).result()
    return out


@pytest.fixture(scope="module")
def random_qwen():
    """The random-weight tiny Qwen3-VL: long, arbitrary answers, so every step counts."""
    return engine_for("tiny-qwen3-vl")


@pytest.mark.parametrize("name", ["one photo", "text only", "two turns, three photos"])
def test_greedy_tokens_equal_generate(random_qwen, photos, name):
    inputs = random_qwen.prepare_inputs(_conversations(photos)[name])
    eos = random_qwen.model.generation_config.eos_token_id
    decoder = CompiledDecoder(random_qwen.model, compile=False, eos_token_ids=set(eos))
    with torch.inference_mode():
        output = random_qwen.model.generate(**inputs, do_sample=False, max_new_tokens=TOKENS)
    expected = [t for t in output[0, inputs["input_ids"].shape[-1]:].tolist() if t not in eos]
    got = _decode(decoder, inputs)
    assert len(got) > 5
    assert got == expected


def test_compiled_step_gives_the_same_tokens_as_uncompiled_and_compiles_once(random_qwen, photos):
    """Every prompt, then one long enough to need a bigger cache: same tokens, one graph."""
    model = random_qwen.model
    eager = CompiledDecoder(model, compile=False, eos_token_ids=set())
    compiled = CompiledDecoder(model, compile=True, eos_token_ids=set())
    prompts = list(_conversations(photos).values()) + [[_user("word " * (CACHE_BLOCK // 2))]]
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    sizes = []
    for messages in prompts:
        inputs = random_qwen.prepare_inputs(messages)
        assert _decode(compiled, inputs, stop_at_end_of_turn=False) == _decode(eager, inputs, stop_at_end_of_turn=False)
        sizes.append(compiled._cache_tokens)
    assert sizes[0] == CACHE_BLOCK and sizes[-1] > CACHE_BLOCK, "the last prompt should have grown the cache"
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1, "no graph breaks and no recompile on resizing"


def test_int4_shapes_vlm_answers_the_same_compiled(photos, tmp_path):
    from fixture_models import draw_test_image

    engine = create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="int4"))
    assert engine.decoder is not None and not engine.decoder.compile  # the app compiles only on CUDA
    compiled = CompiledDecoder(engine.model, compile=True, eos_token_ids=engine.decoder.eos_token_ids)
    for shape, colour in (("circle", "red"), ("triangle", "blue"), ("square", "yellow")):
        path = tmp_path / f"{colour}.png"
        draw_test_image(shape, colour, "left").save(path)
        inputs = engine.prepare_inputs([_user("What colour is the shape?", path)])
        answer = _decode(compiled, inputs, tokens=8)
        assert answer == _decode(engine.decoder, inputs, tokens=8)
        assert engine.tokenizer.decode(answer, skip_special_tokens=True).strip() == colour


def test_sampling_keeps_only_the_nucleus(random_qwen, photos):
    inputs = random_qwen.prepare_inputs(_conversations(photos)["one photo"])
    decoder = CompiledDecoder(random_qwen.model, compile=False, eos_token_ids=set())
    greedy = _decode(decoder, inputs, stop_at_end_of_turn=False)
    # A nucleus of (almost) nothing keeps only the most likely token: greedy again.
    assert _decode(decoder, inputs, stop_at_end_of_turn=False, temperature=1.5, top_p=1e-6) == greedy
    torch.manual_seed(0)
    sampled = _decode(decoder, inputs, stop_at_end_of_turn=False, temperature=1.5, top_p=1.0)
    assert sampled != greedy and all(0 <= t < random_qwen.model.config.text_config.vocab_size for t in sampled)


@pytest.fixture(scope="module")
def int4_engine():
    engine = engine_for("tiny-qwen3-vl", quantization="int4")
    engine.decoder.eos_token_ids = set()  # random weights that never stop by themselves
    return engine


@pytest.mark.parametrize("how", ["cancel token", "caller closes"])
def test_stop_frees_the_decoder_within_a_token(int4_engine, photos, how):
    scope = CancelScope()
    stream = int4_engine.stream([_user("Describe it.", photos[0])],
                                GenerationParams(max_new_tokens=100_000, temperature=0.0), scope.new_token())
    received = [next(stream), next(stream)]
    if how == "cancel token":
        scope.cancel()
        received += list(stream)
        assert received[-1].finish_reason == "cancelled"
    else:
        stream.close()
    # The decoder's one thread is free again: a job queued now runs at once.
    assert int4_engine.decoder.submit(lambda: "idle").result(timeout=10) == "idle"
    assert len(received) < 1000


def test_answers_asked_at_once_take_turns_and_each_gets_its_own(int4_engine, photos):
    red, blue = photos
    params = GenerationParams(max_new_tokens=12, temperature=0.0)
    questions = [[_user("What is this?", red)], [_user("And this?", blue)], [_user("Hi")]]
    alone = [_text(int4_engine.stream(q, params, CancelToken.standalone())) for q in questions]
    together: dict[int, str] = {}
    threads = [
        threading.Thread(target=lambda i=i, q=q: together.__setitem__(i, _text(int4_engine.stream(q, params, CancelToken.standalone()))))
        for i, q in enumerate(questions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [together[i] for i in range(len(questions))] == alone
    assert len(set(alone)) == len(alone)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_app_compiles_int4_and_answers_as_the_eager_loop(tmp_path):
    """What the app does on a GPU with --quantization int4: CUDA graphs, tinygemm kernels."""
    from fixture_models import draw_test_image

    engine = create_local_engine(Config(model=str(shapes_vlm_path()), device="cuda", quantization="int4"))
    assert engine.decoder is not None and engine.decoder.compile
    eager = CompiledDecoder(engine.model, compile=False, eos_token_ids=engine.decoder.eos_token_ids)
    for shape, colour in (("circle", "red"), ("triangle", "blue"), ("square", "yellow")):
        path = tmp_path / f"{colour}.png"
        draw_test_image(shape, colour, "left").save(path)
        inputs = engine.prepare_inputs([_user("What colour is the shape?", path)])
        answer = _decode(engine.decoder, inputs, tokens=8)
        assert answer == _decode(eager, inputs, tokens=8)
        assert engine.tokenizer.decode(answer, skip_special_tokens=True).strip() == colour


def test_stop_ends_an_answer_still_waiting_for_the_decoder(int4_engine, photos):
    """With --concurrency above 1, an answer may wait behind another; Stop must not wait too."""
    import time

    endless = GenerationParams(max_new_tokens=100_000, temperature=0.0)
    first_scope, waiting_scope = CancelScope(), CancelScope()
    first = int4_engine.stream([_user("Describe it.", photos[0])], endless, first_scope.new_token())
    next(first)  # the first answer holds the decoder's thread
    waiting = int4_engine.stream([_user("Hi")], endless, waiting_scope.new_token())
    outcome: list = []
    reader = threading.Thread(target=lambda: outcome.append(list(waiting)))
    reader.start()
    time.sleep(0.3)
    assert not outcome, "it should be waiting its turn"
    waiting_scope.cancel()
    reader.join(5)
    assert outcome == [[Completion("cancelled", int4_engine.count_tokens([_user("Hi")]), 0, None)]], \
        "a stopped answer that never started ends at once, with no text"
    assert next(first), "the other answer goes on"
    first.close()


def test_when_compiling_fails_the_decoder_warms_up_uncompiled_and_answers(random_qwen, photos):
    """A GPU without a working Triton must give slower answers, not none."""
    decoder = CompiledDecoder(random_qwen.model, compile=True, eos_token_ids=set())

    def broken_compile(*args, **kwargs):  # what a failing inductor build looks like from here
        raise RuntimeError("triton: no kernel for this device")

    decoder._step = broken_compile
    said = []
    inputs = random_qwen.prepare_inputs(_conversations(photos)["one photo"])
    decoder.warm_up(inputs, lambda message, fraction: said.append(message))
    assert not decoder.compile
    assert "failed" in said[-1] and "RuntimeError" in said[-1]
    eager = CompiledDecoder(random_qwen.model, compile=False, eos_token_ids=set())
    assert _decode(decoder, inputs, stop_at_end_of_turn=False) == _decode(eager, inputs, stop_at_end_of_turn=False)
