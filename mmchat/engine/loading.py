"""Find, download (with progress) and load a vision-language model with transformers.

Any image-text-to-text model id or local folder works: the processor and chat template
come from the model itself. On CUDA the default is bitsandbytes NF4 with the vision
tower, the projector and lm_head left in 16-bit (quantizing them costs accuracy and
saves little memory). "int4" quantizes the same layers with PyTorch's own int4 kernels
(`int4.py`) instead, for the compiled decoder (`compiled_decode.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, Config
from ..errors import ModelUnavailableError
from .int4 import quantize_to_int4

log = logging.getLogger(__name__)

# Progress callback: (what is happening, fraction done or None when unknown).
Progress = Callable[[str, "float | None"], None]

# Last component of the module names that make up the vision side of the families we
# know (Qwen-VL: visual; Idefics3/SmolVLM: vision_model + connector; LLaVA-likes:
# vision_tower + multi_modal_projector; Gemma 3, Mistral 3, InternVL, ...).
VISION_MODULE_NAMES = (
    "visual", "vision_tower", "vision_model", "vision_encoder", "vision_embed_tokens",
    "connector", "multi_modal_projector", "mm_projector", "image_newline",
)

# Files a model folder needs; skips other formats (.bin, .gguf, onnx) a repo may also carry.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.py"]


@dataclass(frozen=True)
class LoadPlan:
    """What will be loaded, and how: decided from the config and the machine."""

    model: str
    device: str  # "cuda" or "cpu"
    quantization: str  # "none", "nf4", "int8" or "int4"

    @property
    def dtype(self) -> torch.dtype:
        if self.device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # 16-bit matmuls are slow on most CPUs


def plan_load(config: Config, cuda_available: bool | None = None) -> LoadPlan:
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if config.device == "cuda" and not cuda:
        raise ModelUnavailableError(
            "--device cuda was asked for, but PyTorch sees no CUDA GPU. Install the CUDA build "
            "of torch, or run with --device cpu."
        )
    device = config.device if config.device != "auto" else ("cuda" if cuda else "cpu")
    model = config.model
    if model == "auto":
        model = DEFAULT_GPU_MODEL if device == "cuda" else DEFAULT_CPU_MODEL
    quantization = config.quantization
    if quantization == "auto":
        quantization = "nf4" if device == "cuda" else "none"
    return LoadPlan(model, device, quantization)


def find_model_files(model: str, progress: Progress) -> Path:
    """A local folder with the model's files: the folder given, or the Hub cache (downloading)."""
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    if Path(model).expanduser().exists() or model.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"--model {model}: that is not a folder with a model in it.")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
    )
    from tqdm.auto import tqdm

    class _FilesProgress(tqdm):  # reports the Hub's "files fetched" bar to our callback
        def update(self, n=1):
            result = super().update(n)
            if self.total:
                progress(f"Downloading {model}: {self.n}/{self.total} files", self.n / self.total)
            return result

    progress(f"Looking for {model} (downloading it the first time)", None)
    try:
        folder = snapshot_download(model, allow_patterns=MODEL_FILE_PATTERNS, tqdm_class=_FilesProgress)
    except GatedRepoError:
        raise ModelUnavailableError(
            f"{model} needs you to accept its licence on the Hugging Face Hub and to log in "
            "(`hf auth login`) before it can be downloaded."
        ) from None
    except RepositoryNotFoundError:
        raise ModelUnavailableError(
            f"No model called {model} exists on the Hugging Face Hub. Check the --model value."
        ) from None
    except (LocalEntryNotFoundError, OSError) as exc:
        log.info("snapshot_download(%s) failed: %r", model, exc)
        raise ModelUnavailableError(
            f"The model {model} is not on this machine and could not be downloaded. Fix: connect to the internet once so it can be cached, or "
            f"download it elsewhere (`hf download {model}`) and pass its folder with "
            "--model /path/to/folder."
        ) from None
    return Path(folder)


def skip_modules_for(config) -> list[str]:
    """Full names of the modules to keep in 16-bit: the vision side and lm_head.

    transformers 5 matches these names from the start of a module's full name (or as a
    suffix), so a bare "visual" would not match "model.visual.blocks.0"; the names are
    read off the model's structure, built on the meta device (no memory, no weights).
    """
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config)
    names = [
        name for name, _ in skeleton.named_modules()
        if name.rsplit(".", 1)[-1] in VISION_MODULE_NAMES
    ]
    # Keep only the outermost match: everything under it is skipped with it.
    outer = [n for n in names if not any(n.startswith(other + ".") for other in names)]
    output = skeleton.get_output_embeddings()
    for name, module in skeleton.named_modules():
        if output is not None and module is output:
            outer.append(name)
    return outer


def quantization_config_for(plan: LoadPlan, skip_modules: list[str]):
    from transformers import BitsAndBytesConfig

    if plan.quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=plan.dtype,
            llm_int8_skip_modules=skip_modules,
        )
    if plan.quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_modules)
    return None


@dataclass
class LoadedModel:
    model: object  # a transformers PreTrainedModel
    processor: object  # its AutoProcessor
    plan: LoadPlan
    folder: Path


def load_model(plan: LoadPlan, progress: Progress = lambda message, fraction: None) -> LoadedModel:
    """Load the model and processor that `plan` names; failures become ModelUnavailableError."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    if plan.quantization == "int4" and plan.device == "cuda" and torch.cuda.get_device_capability() < (8, 0):
        raise ModelUnavailableError(  # PyTorch's int4 CUDA kernel needs compute capability 8.0
            "--quantization int4 needs an NVIDIA GPU of the Ampere generation or newer "
            "(RTX 30xx, A100, H100...); this one is older. Use --quantization nf4."
        )
    folder = find_model_files(plan.model, progress)
    progress(f"Loading {plan.model} ({plan.quantization}, {plan.device})", None)
    try:
        processor = AutoProcessor.from_pretrained(folder)
        model_config = AutoConfig.from_pretrained(folder)
        quantization = None
        if plan.quantization in ("nf4", "int8"):
            import bitsandbytes  # noqa: F401  (fail here, with a clear message, if missing)

            quantization = quantization_config_for(plan, skip_modules_for(model_config))
        # int4 reads the 16-bit weights into CPU memory and quantizes them layer by layer
        # on the way to the GPU, so the GPU never holds the 16-bit model.
        on_load_device = plan.device == "cuda" and plan.quantization != "int4"
        model = AutoModelForImageTextToText.from_pretrained(
            folder,
            dtype=plan.dtype,
            device_map={"": 0} if on_load_device else {"": "cpu"},
            quantization_config=quantization,
        )
        if plan.quantization == "int4":
            layers = quantize_to_int4(model, torch.device(plan.device), plan.dtype, skip_modules_for(model_config), progress)
            log.info("int4: %d linear layers quantized, the rest kept in %s", layers, plan.dtype)
            model.to(plan.device)
    except ImportError as exc:
        raise ModelUnavailableError(
            f"Loading {plan.model} with {plan.quantization} needs a package that is missing: {exc}. "
            "Fix: pip install -r requirements.txt, or choose --quantization none."
        ) from None
    except (KeyError, ValueError) as exc:
        if "Unrecognized" in str(exc) or isinstance(exc, KeyError):
            raise ModelUnavailableError(
                f"{plan.model} is not an image-text-to-text model that transformers can load "
                f"({exc}). Pick a vision-language model, e.g. {DEFAULT_GPU_MODEL}."
            ) from None
        raise
    model.eval()
    log.info("loaded %s from %s", plan, folder)
    return LoadedModel(model, processor, plan, folder)
