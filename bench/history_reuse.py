"""Time to first token as a photo conversation grows: each turn's cost with and without the caches of issue 11.

Issue 11 measured, before this work, on a CPU with a random-weight Qwen3-VL of moderate
size (a 448x448 photo per turn, one new token per answer): 0.21 s to the first token of
question 1, 1.88 s for question 11, because every turn decoded every photo of the
history again (twice: once to count tokens for the budget, once to answer), processed
it again, and prefilled the whole conversation. The goal: question 11 within 1.3 times
question 1.

The conversation. A system prompt, then 11 questions, each with a new 448x448 JPEG (a
distinct noise pattern, in new files every run so that nothing is cached across runs) and
a short question; each answer is the model's one new token, kept in the history as the
app keeps it. A turn is what the app's turn loop does (mmchat/turn.py): `fit_history`
with the engine's `count_tokens` and the default budget, then `engine.stream` of the
fitted messages; time to first token is from the start of the turn to the first new
token (`Completion.first_token_seconds`, plus the fitting).

The ways, all in one process, run after run interleaved so that a busy machine slows
them alike:
- ``no caches``: as before issue 11: prefix_cache_mb=0, and the photo caches and the
  prepared-prompt memo emptied as soon as filled, so every prompt decodes, processes and
  prefills everything (the engine's work is then what it was before).
- ``photos once``: photos decoded and processed once and the counted prompt reused to
  answer, but no KV reuse (prefix_cache_mb=0).
- ``all caches``: the app's default: the above, and each turn continues from the KV
  cache of the turn before (`mmchat/engine/prefix_cache.py`).

The model: random weights, the Qwen3-VL classes and image processor settings of
bench/generation.py (patch 16, merge 2: a 448x448 photo is 196 tokens), at one of the
sizes of SHAPES below (``--shape``; ``tiny`` is for the smoke test). It is loaded
through the app's own loader, fp32 on the CPU as the app does.

    python bench/history_reuse.py [--runs 5] [--turns 11] [--shape moderate|4b-like|tiny]
                                  [--ways "no caches,photos once,all caches"] [--device cpu|cuda] [--out table.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.append(str(ROOT / "scripts"))  # a folder of tools, not a package
from generation import QWEN3_VL_IMAGES, TINY_SHAPES, Shape, device_name, write_checkpoint  # noqa: E402
from make_fixture_models import qwen3_vl_processor  # noqa: E402
from mmchat.media import photos as photo_cache  # noqa: E402
from mmchat.cancel import CancelToken  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine import Completion, GenerationParams  # noqa: E402
from mmchat.engine.loading import LoadPlan, load_model  # noqa: E402
from mmchat.engine.local import LocalEngine  # noqa: E402
from mmchat.history import fit_history  # noqa: E402

# Qwen3-VL's classes at sizes a CPU answers in a fraction of a second (moderate) or in
# about two (4b-like). What is left of the growth with every cache on is the new tokens'
# attention over the longer history: per layer it grows with the history's length times
# the width of the queries, while the rest of the work grows with the square of the
# model's width. So it weighs more in a narrow model: about as much as the MLP at 2.8k
# tokens of history in `moderate`, a third of it in `4b-like`, which keeps
# Qwen3-VL-4B-Instruct's proportions (queries 1.5x and MLP 3.75x the width, 4x grouped
# KV heads, a vision tower 0.4x as wide and 2/3 as deep) at 1024 wide.
SHAPES = {
    "moderate": Shape(384, 6, 6, 2, 64, 1536, 8192, True, 4, 192, 768, 3, (0, 1, 2)),
    "4b-like": Shape(1024, 6, 24, 4, 64, 3840, 8192, True, 4, 384, 1536, 6, (0, 1, 2)),
    "tiny": TINY_SHAPES["4b"],
}
WAYS = ("no caches", "photos once", "all caches")
PHOTO_SIZE = (448, 448)
ONE_TOKEN = GenerationParams(max_new_tokens=1, temperature=0.0)


def write_photo(path: Path, seed: int) -> None:
    noise = np.random.default_rng(seed).integers(0, 256, (*PHOTO_SIZE, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)


@contextlib.contextmanager
def caching(engine: LocalEngine, photos: bool):
    """With `photos` False, every photo and prompt is prepared afresh (as before issue 11)."""
    saved = photo_cache.PHOTOS.items, engine._images.cache.max_bytes, engine.prepared_prompts
    if not photos:
        photo_cache.PHOTOS.items, engine._images.cache.max_bytes, engine.prepared_prompts = 0, 0, 0
    photo_cache.PHOTOS.clear()
    try:
        yield
    finally:
        photo_cache.PHOTOS.items, engine._images.cache.max_bytes, engine.prepared_prompts = saved


def conversation(engine: LocalEngine, folder: Path, turns: int, tag: str) -> list[tuple[int, float]]:
    """(prompt tokens, seconds to the first token) of each turn of one new conversation."""
    config = Config()
    messages = [{"role": "system", "content": config.system_prompt}]
    measured = []
    for turn in range(turns):
        photo = folder / f"{tag}-photo{turn}.jpg"  # a new file: nothing cached from another run
        write_photo(photo, turn)  # the same pixels for every way: the same prompts
        messages.append({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": photo.as_uri()}},
            {"type": "text", "text": f"What is in photo {turn + 1}? Is it like the ones before?"},
        ]})
        started = time.perf_counter()
        fitted = fit_history(messages, engine.count_tokens, config.history_tokens)
        asked = time.perf_counter()
        *pieces, completion = engine.stream(fitted.messages, ONE_TOKEN, CancelToken.standalone())
        assert isinstance(completion, Completion) and completion.completion_tokens == 1, completion
        measured.append((completion.prompt_tokens, asked - started + completion.first_token_seconds))
        messages.append({"role": "assistant", "content": "".join(pieces)})
    return measured


def cell(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f} / {statistics.median(values) * 1000:.0f}"


def ratio(values_last: list[float], values_first: list[float]) -> str:
    return (f"{min(values_last) / min(values_first):.2f} / "
            f"{statistics.median(values_last) / statistics.median(values_first):.2f}")


def table(args, timings: dict[str, list[list[tuple[int, float]]]]) -> list[str]:
    shape = SHAPES[args.shape]
    lines = [
        f"History reuse benchmark, {datetime.date.today().isoformat()}: {device_name(args.device)}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}; random-weight Qwen3-VL "
        f"({args.shape}: text {shape.num_hidden_layers} layers x {shape.hidden_size}, vision "
        f"{shape.vision_depth} x {shape.vision_hidden_size}), one {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} photo a turn, "
        f"one new token an answer, {args.runs} runs after a warm-up. Cells: time to first token in ms, "
        "best / median.",
        "",
        "| question | prompt tokens | " + " | ".join(args.ways) + " |",
        "|---|---|" + "---|" * len(args.ways),
    ]
    prompt_tokens = [tokens for tokens, _ in timings["all caches"][0]]
    seconds = {way: [[run[turn][1] for run in timings[way]] for turn in range(args.turns)] for way in args.ways}
    for turn in range(args.turns):
        lines.append(f"| {turn + 1} | {prompt_tokens[turn]} | "
                     + " | ".join(cell(seconds[way][turn]) for way in args.ways) + " |")
    lines.append(f"| **{args.turns} / 1** | | "
                 + " | ".join(ratio(seconds[way][-1], seconds[way][0]) for way in args.ways) + " |")
    lines += ["", f"Goal (issue 11): question {args.turns} within 1.3x question 1 (last row, best / median)."]
    return lines


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turns", type=int, default=11)
    parser.add_argument("--shape", choices=SHAPES, default="moderate")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)}")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    args.ways = tuple(way for way in WAYS if way in args.ways.split(","))
    if "all caches" not in args.ways:
        parser.error("--ways must include 'all caches'")
    transformers.utils.logging.disable_progress_bar()
    processor = qwen3_vl_processor(QWEN3_VL_IMAGES)
    with tempfile.TemporaryDirectory(prefix="mmchat-history-") as tmp:
        folder = Path(tmp)
        write_checkpoint(SHAPES[args.shape], processor, folder / "model", args.device)
        engines = {
            way: LocalEngine(load_model(LoadPlan(str(folder / "model"), args.device, "none")),
                             max_pixels=Config().max_pixels,
                             prefix_cache_mb=Config().prefix_cache_mb if way == "all caches" else 0)
            for way in args.ways
        }
        assert engines["all caches"].prefix is not None
        timings: dict[str, list] = {way: [] for way in args.ways}
        for run in range(args.runs + 1):  # run 0 warms every way up and is not counted
            for way in args.ways:
                with caching(engines[way], photos=way != "no caches"):
                    measured = conversation(engines[way], folder, args.turns if run else 2, f"run{run}-{way}")
                if run:
                    timings[way].append(measured)
                    log(f"run {run} {way}: " + " ".join(f"{s * 1000:.0f}" for _, s in measured) + " ms")
    lines = table(args, timings)
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
