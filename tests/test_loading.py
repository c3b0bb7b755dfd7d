"""The real loader: quantization plans, NF4 on the CPU, and clear messages when a model is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import engine_for
from fixture_models import fixture_model_path
from mmchat.cancel import CancelToken
from mmchat.config import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, Config
from mmchat.engine import GenerationParams
from mmchat.engine.loading import plan_load, skip_modules_for
from mmchat.errors import ModelUnavailableError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_pick_the_gpu_model_in_nf4_on_cuda_and_the_small_model_on_the_cpu():
    gpu = plan_load(Config(), cuda_available=True)
    assert (gpu.model, gpu.device, gpu.quantization) == (DEFAULT_GPU_MODEL, "cuda", "nf4")
    cpu = plan_load(Config(), cuda_available=False)
    assert (cpu.model, cpu.device, cpu.quantization, cpu.dtype) == (DEFAULT_CPU_MODEL, "cpu", "none", torch.float32)


def test_asking_for_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(ModelUnavailableError, match="--device cpu"):
        plan_load(Config(device="cuda"), cuda_available=False)


@pytest.mark.parametrize("family,vision", [("tiny-qwen3-vl", ["model.visual"]),
                                           ("tiny-idefics3", ["model.vision_model", "model.connector"])])
def test_skip_modules_are_full_names_of_the_vision_side_and_lm_head(family, vision):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(fixture_model_path(family))
    assert sorted(skip_modules_for(config)) == sorted(vision + ["lm_head"])


def _linear_kinds(model):
    import bitsandbytes as bnb

    kinds = {}
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            kinds[name] = "4bit"
        elif isinstance(module, torch.nn.Linear):
            kinds[name] = "16bit"
    return kinds


@pytest.mark.parametrize("family", ["tiny-qwen3-vl", "tiny-idefics3"])
def test_nf4_quantizes_the_language_model_but_not_the_vision_tower_or_lm_head(family, photos):
    engine = engine_for(family, quantization="nf4")
    kinds = _linear_kinds(engine.model)
    language = {n: k for n, k in kinds.items() if ".language_model." in n or ".text_model." in n}
    vision = {n: k for n, k in kinds.items() if any(v in n for v in ("visual", "vision_model", "connector"))}
    assert language and set(language.values()) == {"4bit"}
    assert vision and set(vision.values()) == {"16bit"}
    assert kinds["lm_head"] == "16bit"
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": photos[0].resolve().as_uri()}},
        {"type": "text", "text": "What is it?"}]}]
    *pieces, completion = engine.stream(messages, GenerationParams(max_new_tokens=8, temperature=0), CancelToken.standalone())
    assert "".join(pieces) and completion.completion_tokens > 0


def test_loading_reports_progress_up_to_the_warm_up():
    from mmchat.engine.local import create_local_engine

    seen = []
    create_local_engine(Config(model=str(fixture_model_path("tiny-qwen3-vl")), device="cpu"),
                        lambda message, fraction: seen.append(message))
    assert any(m.startswith("Loading") for m in seen)
    assert seen[-1] == "Warming up the model"


def test_a_model_that_is_not_cached_offline_gets_a_message_that_names_the_fix(tmp_path):
    script = (
        "from mmchat.config import Config\n"
        "from mmchat.engine.local import create_local_engine\n"
        "from mmchat.errors import ModelUnavailableError\n"
        "try:\n"
        "    create_local_engine(Config(model='someone/not-cached-vlm', device='cpu'))\n"
        "except ModelUnavailableError as exc:\n"
        "    print('MESSAGE:', exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr
    message = result.stdout.split("MESSAGE:", 1)[1]
    assert "someone/not-cached-vlm" in message and "Fix:" in message and "--model /path/to/folder" in message


def test_a_folder_without_a_vision_language_model_is_explained(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelUnavailableError):
        engine_for_folder = Config(model=str(tmp_path), device="cpu")
        from mmchat.engine.local import create_local_engine

        create_local_engine(engine_for_folder)
