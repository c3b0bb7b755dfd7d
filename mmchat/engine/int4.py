"""4-bit weight-only linear layers on PyTorch's own int4 matmul kernels (no extra package).

Why: bitsandbytes NF4 dequantizes in Python-visible steps that transformers will not
compile and CUDA graphs cannot capture, so its decode runs at ~30 tokens/s on an H100
(issue 6). PyTorch ships "tinygemm", an int4 x bf16 matmul for batch-1 decode
(`aten._weight_int4pack_mm` on CUDA, `aten._weight_int4pack_mm_for_cpu` on the CPU), that
torch.compile traces as one op. Weights are quantized here, at load time, from the
checkpoint's 16-bit weights: asymmetric 4-bit per group of `GROUP_SIZE` input columns,
one scale and one offset per group (about 4.25 bits per weight, as NF4 with double
quantization at 4.127).

The dequantized weight of group g is `(q - 8) * scale[g] + zero[g]`: the kernel's
format, with `zero` the value that q = 8 stands for.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

GROUP_SIZE = 128
# The CUDA kernel reads weights in tiles of 16 x INNER_K_TILES input columns: 8 fits
# every Qwen-VL width (multiples of 128); the CPU kernel ignores it.
INNER_K_TILES = 8


def quantize_groups(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (q int32 in 0..15 [out, in], scale [out, groups], zero [out, groups])."""
    out_features, in_features = weight.shape
    groups = weight.float().reshape(out_features, in_features // group_size, group_size)
    high = groups.amax(dim=-1, keepdim=True)
    low = groups.amin(dim=-1, keepdim=True)
    scale = (high - low).clamp(min=1e-6) / 15
    q = ((groups - low) / scale).round().clamp(0, 15).to(torch.int32)
    zero = low + 8 * scale
    return q.reshape(out_features, in_features), scale.squeeze(-1), zero.squeeze(-1)


def dequantize_groups(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int) -> torch.Tensor:
    """The float weight that (q, scale, zero) stand for: the reference the kernels must match."""
    out_features, in_features = q.shape
    grouped = q.reshape(out_features, in_features // group_size, group_size).float()
    return ((grouped - 8) * scale.unsqueeze(-1) + zero.unsqueeze(-1)).reshape(out_features, in_features)


def can_quantize(linear: nn.Linear, group_size: int = GROUP_SIZE) -> bool:
    """Whether the kernels take this layer's shape (the CUDA one needs these multiples)."""
    out_features, in_features = linear.weight.shape
    return in_features % group_size == 0 and in_features % (16 * INNER_K_TILES) == 0 and out_features % 8 == 0


class Int4Linear(nn.Module):
    """A bias-optional linear layer with 4-bit weights, for the device its buffers are on.

    The packed layout differs between the CUDA and CPU kernels, so a layer is packed
    for one device and cannot be moved to the other.
    """

    def __init__(self, linear: nn.Linear, device: torch.device, compute_dtype: torch.dtype,
                 group_size: int = GROUP_SIZE) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.group_size = group_size
        self.compute_dtype = compute_dtype
        self.on_cuda = device.type == "cuda"
        weight = linear.weight.detach().to(device)
        q, scale, zero = quantize_groups(weight, group_size)
        if self.on_cuda:
            # Two 4-bit values per byte, even column in the high nibble: the CUDA op's input.
            packed = torch.ops.aten._convert_weight_to_int4pack((q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8), INNER_K_TILES)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INNER_K_TILES)
        # [groups, out, 2]: scale and zero side by side, the layout both kernels read.
        scales_and_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(compute_dtype)
        self.register_buffer("packed_weight", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(device, compute_dtype), requires_grad=False)

    def _matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """rows [n, in] in compute_dtype -> rows @ weight.T, by this device's kernel."""
        kernel = torch.ops.aten._weight_int4pack_mm if self.on_cuda else torch.ops.aten._weight_int4pack_mm_for_cpu
        return kernel(rows, self.packed_weight, self.group_size, self.scales_and_zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leading = x.shape[:-1]
        out = self._matmul(x.reshape(-1, self.in_features).to(self.compute_dtype))
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*leading, self.out_features).to(x.dtype)

    def dequantized_weight(self) -> torch.Tensor:
        """The weight this layer multiplies by, as floats (slow; for tests and checks)."""
        eye = torch.eye(self.in_features, device=self.packed_weight.device, dtype=self.compute_dtype)
        return self._matmul(eye).T.float()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, int4"


def quantize_to_int4(
    model: nn.Module,
    device: torch.device,
    compute_dtype: torch.dtype,
    keep: list[str],
    progress: Callable[[str, "float | None"], None] = lambda message, fraction: None,
) -> int:
    """Swap every nn.Linear outside `keep` (module names kept in 16-bit) for an Int4Linear on `device`.

    The model may still be on the CPU: each layer's weight goes to `device` alone, is
    quantized there and its 16-bit copy dropped, so the device never holds the 16-bit
    model. Returns how many layers were quantized.
    """
    targets = [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and can_quantize(module)
        and not any(name == k or name.startswith(k + ".") for k in keep)
    ]
    for done, (name, linear) in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int4Linear(linear, device, compute_dtype))
        if done % 16 == 0 or done == len(targets) - 1:
            progress(f"Quantizing to int4: {done + 1}/{len(targets)} layers", (done + 1) / len(targets))
    return len(targets)
