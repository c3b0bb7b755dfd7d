"""int4 weights: the quantizer, the PyTorch kernels it packs for, and the app's loader."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fixture_models import shapes_vlm_path
from mmchat.config import Config
from mmchat.engine.int4 import GROUP_SIZE, Int4Linear, dequantize_groups, quantize_groups
from mmchat.engine.loading import load_model, plan_load


def _linear(out_features=96, in_features=256, bias=True, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        linear.weight[3, 5] = 4.0  # one outlier: its group gets a coarser scale than the rest
    return linear


def test_each_weight_is_within_half_a_step_of_its_group():
    weight = _linear().weight.detach()
    q, scale, zero = quantize_groups(weight, GROUP_SIZE)
    assert q.min() >= 0 and q.max() <= 15
    restored = dequantize_groups(q, scale, zero, GROUP_SIZE)
    step = scale.repeat_interleave(GROUP_SIZE, dim=1)
    assert ((restored - weight).abs() <= step / 2 + 1e-6).all()
    # The outlier's group is coarse, the others are not: scales are per group.
    assert scale[3, 0] > 4 * scale[3, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_cpu_kernel_multiplies_by_the_dequantized_weight(dtype):
    linear = _linear()
    layer = Int4Linear(linear, torch.device("cpu"), dtype)
    q, scale, zero = quantize_groups(linear.weight.detach(), GROUP_SIZE)
    reference_weight = dequantize_groups(q, scale, zero, GROUP_SIZE)
    x = torch.randn(2, 7, 256)
    expected = x @ reference_weight.T + linear.bias.detach()
    tolerance = 1e-4 if dtype == torch.float32 else 0.1
    torch.testing.assert_close(layer(x), expected, atol=tolerance, rtol=0.02)
    torch.testing.assert_close(layer.dequantized_weight(), reference_weight, atol=tolerance, rtol=0.02)
    # ... and that is near the original layer: 16 levels per group give errors of a few
    # percent (a wrong group order or nibble order gives ~100%).
    with torch.no_grad():
        assert (layer(x) - linear(x)).abs().mean() < 0.1 * linear(x).abs().mean()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cuda_kernel_multiplies_by_the_dequantized_weight():
    linear = _linear(out_features=256, in_features=512)
    layer = Int4Linear(linear, torch.device("cuda"), torch.bfloat16)
    q, scale, zero = quantize_groups(linear.weight.detach(), GROUP_SIZE)
    reference_weight = dequantize_groups(q, scale, zero, GROUP_SIZE).cuda()
    x = torch.randn(3, 512, device="cuda", dtype=torch.bfloat16)
    expected = x.float() @ reference_weight.T + linear.bias.detach().cuda()
    torch.testing.assert_close(layer(x).float(), expected, atol=0.15, rtol=0.02)


def test_the_loader_quantizes_the_language_model_and_keeps_vision_and_lm_head():
    loaded = load_model(plan_load(Config(model=str(shapes_vlm_path()), device="cpu", quantization="int4")))
    model = loaded.model
    int4 = {name for name, module in model.named_modules() if isinstance(module, Int4Linear)}
    plain = {name for name, module in model.named_modules() if type(module) is nn.Linear}
    layers = model.config.text_config.num_hidden_layers
    # q, k, v, o and the three MLP projections of every decoder layer.
    assert len(int4) == 7 * layers
    assert all(name.startswith("model.language_model.layers.") for name in int4)
    assert plain and all(name.startswith("model.visual.") or name == "lm_head" for name in plain)
    assert isinstance(model.lm_head, nn.Linear)


def test_int4_on_a_gpu_older_than_ampere_is_refused_before_loading(monkeypatch):
    from mmchat.engine.loading import LoadPlan
    from mmchat.errors import ModelUnavailableError

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a Turing card
    # A model name that would need a download: the refusal must come before any of that.
    with pytest.raises(ModelUnavailableError, match="Ampere.*--quantization nf4"):
        load_model(LoadPlan("someone/not-downloaded", "cuda", "int4"))
