"""Speed and memory of the local engine's generation paths, on random weights of real shapes.

Issue 6 asks for a 4-bit path of >= 200 tokens/s on an H100 for the default model.
This harness measures the candidates the same way every time, so that the choice is
made by measurement. For each (model, path, photo) it prints one row of a Markdown
table: time to first token, decode tokens/s at batch 1, memory, and the load and
warm-up (compile) times apart from the speed.

Models. Random weights, real shapes; compute cost does not depend on the weights'
values. Nothing is downloaded: the configs are written out below.

- ``4b``, the shape of Qwen/Qwen3-VL-4B-Instruct (the app's DEFAULT_GPU_MODEL), as in
  that checkpoint's config.json. text: hidden 2560, 36 layers, 32 heads, 8 KV heads,
  head_dim 128, MLP 9728, vocab 151936, lm_head tied to the embeddings; vision: depth
  24, hidden 1024, MLP 4096, 16 heads, deepstack taps after blocks 5/11/17, projected
  to 2560. These differ from transformers' Qwen3VLConfig defaults (an 8B-like vision
  tower on a 7B-like text model), so every field is set here.
- ``8b``, the shape of Qwen/Qwen3-VL-8B-Instruct (its config.json): text hidden 4096,
  36 layers, 32/8 heads, head_dim 128, MLP 12288, vocab 151936, untied lm_head; vision
  depth 27, hidden 1152, MLP 4304, 16 heads, deepstack 8/16/24, projected to 4096. Its
  vision tower is Qwen3VLVisionConfig's defaults but for the projection width.
- Shared by both (config.json and transformers' defaults agree): patch 16, temporal
  patch 2, spatial merge 2, 2304 learned vision position embeddings, SiLU text MLP and
  tanh-GELU vision MLP, RMSNorm eps 1e-6, rope theta 5e6 with interleaved M-RoPE
  sections [24, 20, 20] of head_dim / 2.
- ``--tiny`` (the default without CUDA) keeps the same classes, tying, GQA ratio and
  the real image processor, with 4 layers and widths of a few hundred, so the whole
  harness runs on a small CPU in about a minute (vocab 8192 instead of 151936: the
  project-built tokenizer has about 1000 tokens). CI runs it to keep the harness
  alive; its numbers say nothing about a GPU.

The random checkpoint is written once per model (bf16 safetensors, built directly on
the target device so a 4B model is never materialised at fp32 on the CPU) into a
temporary folder, and every path loads it through the app's own loader,
``mmchat.engine.loading.load_model``, so NF4 quantizes exactly what the app quantizes
(vision tower and lm_head kept in 16-bit by ``skip_modules_for``).

Photos and prompt. A 448x448 photo and a 12-megapixel (4000x3000) one, stored as JPEG
and read by ``LocalEngine.prepare_inputs``: the app's own decode, ``fit_pixel_budget``
to ``Config.max_pixels``, and the real Qwen2VLImageProcessor settings of Qwen3-VL
(patch 16, merge 2, 65536..16777216 pixels, so the app's budget is what binds). The
tokenizer is the project-built one from scripts/make_fixture_models.py; the question
is about 50 text tokens in it, chat template included.

Paths.
- ``bf16``: the checkpoint unquantized (bf16 on CUDA; the loader's fp32 on the CPU),
  dynamic cache: what the app does with --quantization none.
- ``nf4``: bitsandbytes NF4 through the app's loader, dynamic cache: the app's default.
- ``*-static-compile``: the same weights with cache_implementation="static" and
  transformers' own recipe of compiling the decode step (torch.compile,
  mode="reduce-overhead"; the prefill stays eager, so photos of any size need no
  recompile). transformers declines that compile for bitsandbytes models and on the
  CPU; the harness lifts the refusal so the path measures what it names, and the
  "compiled" column shows how many graphs dynamo made (more than one means graph
  breaks).
- ``int4``: issue 6's fast path as the app runs it with --quantization int4: weights
  in PyTorch's int4 format (mmchat.engine.int4, groups of 128, the same layers as
  NF4), decoded by the app's own loop with a static cache and a compiled one-token
  step (mmchat.engine.compiled_decode; compiled on CUDA only, as in the app).
- ``int4-static-compile``: the same int4 weights through generate() with the static
  cache and transformers' compile: the difference to ``int4`` is what the app's loop
  saves over generate()'s per-token work.

Method. Per path and photo: one warm-up call (its time is the warm-up column and holds
any compile), then --runs timed calls; best (min time, max rate) and median are shown.
A call is: prepare_inputs (the prep column), then generate() of exactly --new-tokens
greedy tokens (the checkpoint has no EOS token) with the app's cancel criterion and a
streamer that notes when each token reaches the host. TTFT is from the start of
generate() to the first token: vision encoder, prefill and one sampling step. Decode
rate is the tokens after the first over the time after the first. CUDA work is
synchronised before the clock starts and after it stops; each token reaching the
host is itself a synchronisation. Memory on CUDA is torch.cuda.memory_allocated after
loading (weights) and max_memory_allocated over the timed calls (peak); on the CPU,
the resident set over the process's before loading (reset per photo through
/proc/self/clear_refs). A path that fails (out of memory, a compile error) becomes a
note under the table and the run goes on: one GPU lease should give the whole table.

    python bench/generation.py [--device cuda|cpu] [--models 4b,8b] [--paths bf16,nf4,...]
                               [--runs 5] [--new-tokens 128] [--tiny] [--out table.md]
                               [--checkpoints DIR] [--profile DIR]

bench/README.md says how to run it on a GPU machine and what each column means.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import hashlib
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import transformers
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    CompileConfig,
    GenerationConfig,
    Qwen3VLConfig,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "scripts"))  # a folder of tools, not a package
from make_fixture_models import Qwen3VLSpec, qwen3_vl_processor  # noqa: E402
from mmchat.cancel import CancelToken  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine.loading import LoadPlan, load_model  # noqa: E402
from mmchat.engine.local import LocalEngine, _StopWhen  # noqa: E402


@dataclass(frozen=True)
class Shape:
    """The dimensions of one Qwen3-VL (field names follow config.json)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    vision_depth: int
    vision_hidden_size: int
    vision_intermediate_size: int
    vision_num_heads: int
    deepstack_visual_indexes: tuple[int, ...]


SHAPES = {
    "4b": Shape(2560, 36, 32, 8, 128, 9728, 151936, True, 24, 1024, 4096, 16, (5, 11, 17)),
    "8b": Shape(4096, 36, 32, 8, 128, 12288, 151936, False, 27, 1152, 4304, 16, (8, 16, 24)),
}
# Same families scaled down: the deepstack taps feed the first three decoder layers,
# so both towers keep at least four layers.
TINY_SHAPES = {
    "4b": Shape(256, 4, 4, 1, 64, 1024, 8192, True, 4, 128, 512, 2, (0, 1, 2)),
    "8b": Shape(512, 4, 8, 2, 64, 1536, 8192, False, 4, 192, 768, 3, (0, 1, 2)),
}

# Qwen3-VL's preprocessor_config.json: pixels between 256^2 and 4096^2 in steps of
# patch 16 x merge 2, so for any photo the app's own pixel budget is what binds.
QWEN3_VL_IMAGES = Qwen3VLSpec(patch_size=16, min_pixels=65536, max_pixels=16777216)
PHOTOS = {"448x448": (448, 448), "12MP": (4000, 3000)}
# About 50 text tokens with the chat template, in the project-built tokenizer.
QUESTION = "Describe the image in one short sentence, most important fact first. Is there any text I should read?"


@dataclass(frozen=True)
class Recipe:
    """How a path loads and generates: a LoadPlan.quantization that the app's loader
    knows, then either generate() (dynamic cache, or static cache and compile) or the
    app's own compiled decoder (mmchat.engine.compiled_decode)."""

    quantization: str
    static_compile: bool = False
    app_decoder: bool = False


RECIPES = {
    "bf16": Recipe("none"),
    "bf16-static-compile": Recipe("none", static_compile=True),
    "nf4": Recipe("nf4"),
    "nf4-static-compile": Recipe("nf4", static_compile=True),
    # The same int4 weights through generate(): what the app's loop saves over it.
    "int4-static-compile": Recipe("int4", static_compile=True),
    # Issue 6's fast path, as the app runs it with --quantization int4 (compiled on CUDA).
    "int4": Recipe("int4", app_decoder=True),
}


# ---------------------------------------------------------------- model and photos

def qwen3_vl_config(shape: Shape, processor) -> Qwen3VLConfig:
    # M-RoPE splits head_dim / 2 frequencies into time/height/width: [24, 20, 20] at 128.
    section = [shape.head_dim * 3 // 16, shape.head_dim * 5 // 32, shape.head_dim * 5 // 32]
    pad = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return Qwen3VLConfig(
        text_config=dict(
            hidden_size=shape.hidden_size,
            num_hidden_layers=shape.num_hidden_layers,
            num_attention_heads=shape.num_attention_heads,
            num_key_value_heads=shape.num_key_value_heads,
            head_dim=shape.head_dim,
            intermediate_size=shape.intermediate_size,
            vocab_size=shape.vocab_size,
            max_position_embeddings=262144,
            rms_norm_eps=1e-6,
            rope_parameters=dict(rope_type="default", rope_theta=5_000_000.0,
                                 mrope_section=section, mrope_interleaved=True),
            tie_word_embeddings=shape.tie_word_embeddings,
            pad_token_id=pad,
            bos_token_id=pad,
        ),
        vision_config=dict(
            depth=shape.vision_depth,
            hidden_size=shape.vision_hidden_size,
            intermediate_size=shape.vision_intermediate_size,
            num_heads=shape.vision_num_heads,
            out_hidden_size=shape.hidden_size,
            deepstack_visual_indexes=list(shape.deepstack_visual_indexes),
            patch_size=QWEN3_VL_IMAGES.patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=2304,
        ),
        image_token_id=processor.image_token_id,
        video_token_id=processor.video_token_id,
        vision_start_token_id=processor.vision_start_token_id,
        vision_end_token_id=processor.vision_end_token_id,
        tie_word_embeddings=shape.tie_word_embeddings,
    )


def write_checkpoint(shape: Shape, processor, folder: Path, device: str) -> None:
    """A random bf16 checkpoint of `shape`, built on `device` (no fp32 copy on the CPU)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(qwen3_vl_config(shape, processor), dtype=torch.bfloat16)
    pad = model.config.text_config.pad_token_id
    # No EOS token: random weights would end answers at random lengths, and every
    # timed call must decode exactly the same number of tokens.
    model.generation_config = GenerationConfig(bos_token_id=pad, pad_token_id=pad, do_sample=False)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model


@contextlib.contextmanager
def checkpoint_folder(name: str, shape: Shape, processor, args) -> Iterator[str]:
    """The random checkpoint of `shape`: in a temporary folder, or kept under
    --checkpoints so that several calls on one GPU machine write it only once."""
    started = time.perf_counter()
    if args.checkpoints is None:
        with tempfile.TemporaryDirectory(prefix=f"mmchat-bench-{name}-") as folder:
            write_checkpoint(shape, processor, Path(folder), args.device)
            log(f"{name}: random checkpoint written in {time.perf_counter() - started:.0f} s")
            yield folder
        return
    folder = args.checkpoints / f"{name}-{hashlib.sha256(repr(shape).encode()).hexdigest()[:8]}"
    if not folder.is_dir():
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        write_checkpoint(shape, processor, staging, args.device)
        staging.rename(folder)  # so a run killed mid-write leaves nothing that looks whole
        log(f"{name}: random checkpoint written to {folder} in {time.perf_counter() - started:.0f} s")
    yield str(folder)


def write_photos(folder: Path) -> dict[str, Path]:
    """JPEGs of a smooth pattern: a real decode and resize cost, a realistic file size."""
    paths = {}
    for name, (width, height) in PHOTOS.items():
        ramp = Image.linear_gradient("L")
        channels = [ramp.resize((width, height)), ramp.rotate(90).resize((width, height)),
                    ramp.rotate(45).resize((width, height))]
        paths[name] = folder / f"{name}.jpg"
        Image.merge("RGB", channels).save(paths[name], quality=90)
    return paths


def messages_for(photo: Path) -> list[dict]:
    return [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": photo.as_uri()}},
        {"type": "text", "text": QUESTION},
    ]}]


# ---------------------------------------------------------------- clocks and memory

def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class TokenClock(BaseStreamer):
    """Notes when each new token reaches the host (generate() copies it there first)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() streams the prompt first
            self.prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def _proc_status_bytes(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) * 1024


def memory_now(device: str) -> int:
    return torch.cuda.memory_allocated() if device == "cuda" else _proc_status_bytes("VmRSS")


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: peak RSS := current RSS


def memory_peak(device: str) -> int:
    return torch.cuda.max_memory_allocated() if device == "cuda" else _proc_status_bytes("VmHWM")


def free_memory(device: str) -> None:
    gc.collect()
    torch._dynamo.reset()  # drops compiled graphs and their CUDA graph pools
    if device == "cuda":
        torch.cuda.empty_cache()
    elif platform.libc_ver()[0] == "glibc":
        # glibc keeps freed memory for reuse; handing it back now keeps the next
        # model's baseline RSS from counting the last model's leftovers.
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# ---------------------------------------------------------------- one call

@dataclass
class Call:
    prep_s: float
    ttft_s: float
    decode_tokens_per_s: float
    seconds: float  # the whole call, prep included


def prepare_timed(engine: LocalEngine, photo: Path, device: str) -> tuple[dict, float, float]:
    """The prompt for `photo`, with the clock before and after preparing it; every cache
    emptied first, so each run pays what a first question pays (decode, processing, prefill)."""
    engine.forget()
    synchronize(device)
    start = time.perf_counter()
    inputs = engine.prepare_inputs(messages_for(photo))
    synchronize(device)
    return inputs, start, time.perf_counter()


def run_once(engine: LocalEngine, photo: Path, new_tokens: int, generate_kwargs: dict, device: str) -> Call:
    inputs, start, prepared = prepare_timed(engine, photo, device)
    clock = TokenClock()
    # The app's own cancel criterion: its per-token cost belongs in the measurement.
    token, closed = CancelToken.standalone(), threading.Event()
    cancel = _StopWhen(lambda: token.cancelled or closed.is_set())
    with torch.inference_mode():
        engine.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=new_tokens,
            streamer=clock,
            stopping_criteria=StoppingCriteriaList([cancel]),
            **generate_kwargs,
        )
    synchronize(device)
    end = time.perf_counter()
    if len(clock.times) != new_tokens:
        raise RuntimeError(f"generate() made {len(clock.times)} tokens, not {new_tokens}")
    first, last = clock.times[0], clock.times[-1]
    return Call(prepared - start, first - prepared, (new_tokens - 1) / (last - first), end - start)


def run_once_with_app_decoder(engine: LocalEngine, photo: Path, new_tokens: int, device: str) -> Call:
    inputs, start, prepared = prepare_timed(engine, photo, device)
    times: list[float] = []
    cancel = CancelToken.standalone()  # the app's stop check, as in LocalEngine.stream
    engine.decoder.submit(lambda: engine.decoder.generate(
        inputs, max_new_tokens=new_tokens, temperature=0.0, top_p=1.0,
        on_token=lambda token: times.append(time.perf_counter()),
        should_stop=lambda: cancel.cancelled, stop_at_end_of_turn=False,
    )).result()
    synchronize(device)
    end = time.perf_counter()
    if len(times) != new_tokens:
        raise RuntimeError(f"the decoder made {len(times)} tokens, not {new_tokens}")
    return Call(prepared - start, times[0] - prepared, (new_tokens - 1) / (times[-1] - times[0]), end - start)


def generate_kwargs_for(recipe: Recipe, model) -> dict:
    if not recipe.static_compile:
        return {}
    # transformers compiles the decode step itself when the cache is static, except for
    # quantizers that say they cannot be compiled (bitsandbytes does) and on the CPU.
    # Whether compile helps NF4 is what this path is for, so lift that refusal here.
    model._valid_auto_compile_criteria = lambda model_kwargs, generation_config: True
    return {"cache_implementation": "static", "compile_config": CompileConfig(mode="reduce-overhead")}


# ---------------------------------------------------------------- the table

@dataclass
class Row:
    model: str
    path: str
    photo: str
    weights: str
    compiled: str
    vision_tokens: int
    prompt_tokens: int
    load_s: float
    warmup_s: float
    calls: list[Call]
    weights_gb: float
    peak_gb: float


COLUMNS = ["model", "path", "photo", "vision tok", "prompt tok", "weights", "compiled", "load s", "warm-up s",
           "prep ms", "TTFT ms", "decode tok/s", "weights GB", "peak GB"]


def best_and_median(values: list[float], scale: float, best=min) -> str:
    return f"{best(values) * scale:.0f} / {statistics.median(values) * scale:.0f}"


def markdown_row(row: Row) -> str:
    calls = row.calls
    cells = [
        row.model, row.path, row.photo, str(row.vision_tokens), str(row.prompt_tokens), row.weights, row.compiled,
        f"{row.load_s:.1f}", f"{row.warmup_s:.1f}",
        best_and_median([c.prep_s for c in calls], 1000),
        best_and_median([c.ttft_s for c in calls], 1000),
        best_and_median([c.decode_tokens_per_s for c in calls], 1, best=max),
        f"{row.weights_gb:.2f}", f"{row.peak_gb:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    name = found.group(1) if found else platform.processor()
    return f"CPU {name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def header(args) -> list[str]:
    try:
        import bitsandbytes

        bnb = bitsandbytes.__version__
    except ImportError:
        bnb = "not installed"
    shapes = "tiny shapes (harness check only)" if args.tiny else "real shapes"
    return [
        f"Generation benchmark, {datetime.date.today().isoformat()}: {device_name(args.device)}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, bitsandbytes {bnb}; "
        f"{shapes}, random weights, batch 1, {args.new_tokens} new tokens, {args.runs} timed runs "
        "(cells: best / median).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]


class Table:
    """The Markdown table, printed row by row and rewritten to --out after each row, so
    a run cut short by a time limit still shows what it measured."""

    def __init__(self, args) -> None:
        self.out = args.out
        self.lines = header(args)
        self.notes: list[str] = []
        print("\n".join(self.lines), flush=True)
        self.save()

    def add(self, row: Row) -> None:
        self.lines.append(markdown_row(row))
        print(self.lines[-1], flush=True)
        self.save()

    def skipped(self, path: str, reason: str) -> None:
        self.notes.append(f"- skipped {path}: {reason}")

    def failed(self, model: str, paths: str, exc: Exception) -> None:
        traceback.print_exc()
        first_line = (str(exc).strip().splitlines() or [""])[0]
        self.notes.append(f"- failed {model} {paths}: {type(exc).__name__}: {first_line}")
        self.save()

    def finish(self) -> None:
        if self.notes:
            print("\n".join(["", *self.notes]), flush=True)
        self.save()

    def save(self) -> None:
        if self.out:
            self.out.write_text("\n".join(self.lines + (["", *self.notes] if self.notes else [])) + "\n")


# ---------------------------------------------------------------- measuring

def skip_reason(path: str, args) -> str | None:
    recipe = RECIPES[path]
    if recipe.quantization == "nf4":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            return "bitsandbytes is not installed (pip install bitsandbytes)"
    if recipe.static_compile and args.device == "cpu" and not args.paths_named:
        return ("torch.compile takes minutes on a small CPU and says nothing about the GPU; "
                "name the path in --paths to run it anyway")
    return None


@dataclass(frozen=True)
class Load:
    seconds: float
    weights_gb: float
    baseline: int  # memory in use before loading, in bytes
    label: str


def load(folder: str, quantization: str, device: str) -> tuple[LocalEngine, Load]:
    baseline = memory_now(device)
    started = time.perf_counter()
    loaded = load_model(LoadPlan(folder, device, quantization))
    synchronize(device)
    seconds = time.perf_counter() - started
    dtype = str(loaded.plan.dtype).removeprefix("torch.")
    label = f"{quantization} ({dtype})" if quantization != "none" else dtype
    engine = LocalEngine(loaded, max_pixels=Config().max_pixels)
    return engine, Load(seconds, (memory_now(device) - baseline) / 1e9, baseline, label)


def measure_model(name: str, shape: Shape, paths: list[str], processor, photos: dict[str, Path], args, table) -> None:
    device = args.device
    with checkpoint_folder(name, shape, processor, args) as folder:
        free_memory(device)
        for quantization in dict.fromkeys(RECIPES[p].quantization for p in paths):
            # Paths with the same weights share one load; dynamic before static-compile,
            # since the compile path changes how this model generates from then on.
            sharing = sorted((p for p in paths if RECIPES[p].quantization == quantization),
                             key=lambda p: RECIPES[p].static_compile)
            try:
                engine, loaded = load(folder, quantization, device)
            except Exception as exc:  # one broken path must not cost the rest of a GPU lease
                table.failed(name, ", ".join(sharing), exc)
                free_memory(device)
                continue
            log(f"{name}: loaded {loaded.label} in {loaded.seconds:.0f} s")
            for path in sharing:
                try:
                    for row in measure_path(name, path, engine, photos, loaded, args):
                        table.add(row)
                except Exception as exc:
                    table.failed(name, path, exc)
            del engine
            free_memory(device)


def measure_path(name: str, path: str, engine: LocalEngine, photos: dict[str, Path], loaded: Load, args) -> list[Row]:
    device = args.device
    recipe = RECIPES[path]
    if recipe.app_decoder:
        def call(photo: Path) -> Call:
            return run_once_with_app_decoder(engine, photo, args.new_tokens, device)
    else:
        kwargs = generate_kwargs_for(recipe, engine.model)

        def call(photo: Path) -> Call:
            return run_once(engine, photo, args.new_tokens, kwargs, device)
    torch._dynamo.utils.counters.clear()
    # Largest photo first: the static cache is then sized for both photos at once, and
    # the compiled decode step never sees a new cache shape during the timed calls.
    warmup_s = {}
    for photo in sorted(photos, key=lambda p: -PHOTOS[p][0] * PHOTOS[p][1]):
        warmup_s[photo] = call(photos[photo]).seconds
        log(f"{name} {path} {photo}: warm-up {warmup_s[photo]:.1f} s")
    measured = {}
    for photo, file in photos.items():
        ids = engine.prepare_inputs(messages_for(file))["input_ids"]
        reset_peak(device)
        calls = [call(file) for _ in range(args.runs)]
        vision_tokens = int((ids == engine.processor.image_token_id).sum())
        measured[photo] = (vision_tokens, int(ids.shape[-1]), calls, (memory_peak(device) - loaded.baseline) / 1e9)
    if args.profile:
        profile_call(call, photos[min(photos, key=lambda p: PHOTOS[p][0] * PHOTOS[p][1])],
                     args.profile / f"{name}-{path}.txt", device)
    compiled = "-"
    if recipe.static_compile or recipe.app_decoder:  # counted after the timed calls: a recompile there shows too
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        compiled = f"yes, {graphs} graph{'s' if graphs > 1 else ''}" if graphs else "no"
        if graphs and device == "cuda":
            # mode="reduce-overhead" falls back to plain kernel launches, with only a logged
            # warning, when a graph cannot be captured (CPU tensors, mutated inputs...).
            skipped = torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]
            compiled += f", CUDA graphs skipped {skipped}x (see the log)" if skipped else ", CUDA graphs"
    return [
        Row(name, path, photo, loaded.label, compiled, vision_tokens, prompt_tokens, loaded.seconds, warmup_s[photo],
            calls, loaded.weights_gb, peak_gb)
        for photo, (vision_tokens, prompt_tokens, calls, peak_gb) in measured.items()
    ]


def profile_call(call, photo: Path, out: Path, device: str) -> None:
    """One more call under torch.profiler: where the time of a decode goes, by op and
    kernel, most device time first (the evidence issue 6 asks for if a goal is missed)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        call(photo)
    sort_by = "cuda_time_total" if device == "cuda" else "cpu_time_total"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(prof.key_averages().table(sort_by=sort_by, row_limit=40) + "\n")
    log(f"profile of one call written to {out}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- command line

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="4b,8b", help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--paths", default=None,
                        help=f"comma-separated, of {', '.join(RECIPES)} (default: all; compile paths skipped on the CPU)")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per path and photo, after one warm-up")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=None,
                        help="scaled-down shapes that run on a CPU in about a minute (default: on without CUDA)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--checkpoints", type=Path,
                        help="keep the random checkpoints in this folder and reuse them on later runs "
                             "(default: a temporary folder per run); empty it after changing this script")
    parser.add_argument("--profile", type=Path,
                        help="after the timed calls, profile one more call per path (smaller photo) "
                             "and write its op/kernel table to DIR/MODEL-PATH.txt")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but PyTorch sees no CUDA GPU")
    if args.tiny is None:
        args.tiny = args.device == "cpu"
    args.paths_named = args.paths is not None
    args.paths = (args.paths or ",".join(RECIPES)).split(",")
    args.models = args.models.split(",")
    for value, known in [(p, RECIPES) for p in args.paths] + [(m, SHAPES) for m in args.models]:
        if value not in known:
            parser.error(f"unknown {value!r}; choose from {', '.join(known)}")
    if args.runs < 1 or args.new_tokens < 2:
        parser.error("--runs must be at least 1 and --new-tokens at least 2 (a decode rate needs two tokens)")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()  # stderr keeps to the harness's own lines
    table = Table(args)
    runnable = []
    for path in args.paths:
        reason = skip_reason(path, args)
        if reason:
            table.skipped(path, reason)
        else:
            runnable.append(path)
    processor = qwen3_vl_processor(QWEN3_VL_IMAGES)
    shapes = TINY_SHAPES if args.tiny else SHAPES
    with tempfile.TemporaryDirectory(prefix="mmchat-bench-photos-") as folder:
        photos = write_photos(Path(folder))
        for name in args.models:
            try:
                measure_model(name, shapes[name], runnable, processor, photos, args, table)
            except Exception as exc:  # e.g. the 8B checkpoint does not fit: still report the 4B rows
                table.failed(name, "all paths", exc)
                free_memory(args.device)
    table.finish()


if __name__ == "__main__":
    main()
