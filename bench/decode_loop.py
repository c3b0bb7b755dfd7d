"""Per-token cost of the decoding loop itself: transformers' generate() against the app's own loop.

On a model so small that its arithmetic is negligible, the time per token is the loop:
Python, the framework's per-step work, launches and synchronisation. That is what the
app's compiled decoder (mmchat/engine/compiled_decode.py) changes, so this script
measures it apart from the weights' format and size: the same model and prompt,

- ``generate``: generate(), dynamic cache, eager (what the app does with nf4/none);
- ``loop``: the app's CompiledDecoder with compile=False;
- ``generate static+compile``: generate() with the static cache and transformers'
  compile of the decode step (mode="reduce-overhead");
- ``loop compiled``: the app's CompiledDecoder with compile=True (as on CUDA).

The model is the tests' random-weight tiny Qwen3-VL (2 layers, hidden 64), loaded by
the app's loader in fp32 (CPU) or bf16 (CUDA). Each row: one warm-up call (holds the
compile), then --runs calls of exactly --new-tokens greedy tokens; ms per token over
the whole call (prefill included, which is small here), best and median, and the
ratio to ``generate``'s median.

    python bench/decode_loop.py [--device cpu|cuda] [--runs 5] [--new-tokens 128] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import CompileConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the fixture builder the tests use
from fixture_models import fixture_model_path  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine.compiled_decode import CompiledDecoder  # noqa: E402
from mmchat.engine.loading import load_model, plan_load  # noqa: E402
from mmchat.engine.local import LocalEngine  # noqa: E402

PROMPT = [{"role": "user", "content": "Describe the photo in one short sentence, most important fact first."}]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--no-compile", action="store_true", help="only the eager rows (fast; for CI)")
    args = parser.parse_args(argv)

    loaded = load_model(plan_load(Config(model=str(fixture_model_path("tiny-qwen3-vl")), device=args.device, quantization="none")))
    model = loaded.model
    model.generation_config.eos_token_id = None  # every call makes exactly --new-tokens
    inputs = LocalEngine(loaded, max_pixels=Config().max_pixels).prepare_inputs(PROMPT)
    tokens = args.new_tokens

    def generate(**extra) -> None:
        with torch.inference_mode():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens, **extra)
        assert out.shape[-1] - inputs["input_ids"].shape[-1] == tokens

    def app_loop(decoder: CompiledDecoder) -> None:
        made = decoder.submit(lambda: decoder.generate(
            inputs, max_new_tokens=tokens, temperature=0.0, top_p=1.0,
            on_token=lambda token: None, should_stop=lambda: False, stop_at_end_of_turn=False,
        )).result()
        assert made == tokens

    eager = CompiledDecoder(model, compile=False, eos_token_ids=set())
    ways = {
        "generate": generate,
        "loop": lambda: app_loop(eager),
    }
    if not args.no_compile:
        def generate_static_compiled() -> None:
            # transformers declines to compile on the CPU; lift that for this row only (with
            # the refusal lifted it would compile the dynamic-cache row too).
            model._valid_auto_compile_criteria = lambda model_kwargs, generation_config: True
            try:
                generate(cache_implementation="static", compile_config=CompileConfig(mode="reduce-overhead"))
            finally:
                del model._valid_auto_compile_criteria

        ways["generate static+compile"] = generate_static_compiled
        compiled = CompiledDecoder(model, compile=True, eos_token_ids=set())
        ways["loop compiled"] = lambda: app_loop(compiled)

    device = args.device
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"Decoding loop cost: {name}; torch {torch.__version__}; tiny Qwen3-VL ({loaded.plan.dtype}), "
          f"{inputs['input_ids'].shape[-1]}-token prompt, {tokens} new tokens, {args.runs} runs after a warm-up\n")
    print("| way | warm-up s | ms/token best | ms/token median | speed vs generate |\n|---|---|---|---|---|")
    baseline = None
    for label, run in ways.items():
        started = time.perf_counter()
        run()
        warm_up = time.perf_counter() - started
        per_token = []
        for _ in range(args.runs):
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            run()
            if device == "cuda":
                torch.cuda.synchronize()
            per_token.append((time.perf_counter() - started) / tokens * 1000)
        median = statistics.median(per_token)
        baseline = baseline or median
        print(f"| {label} | {warm_up:.1f} | {min(per_token):.3f} | {median:.3f} | {baseline / median:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
