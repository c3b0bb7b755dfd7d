"""The tiny fixture models load and run like the real hub models they stand in for."""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

from fixture_models import fixture_model_path

# What the real checkpoints of each family load as, and the modules NF4 must leave alone.
FAMILIES = {
    "tiny-qwen3-vl": {
        "classes": ("Qwen3VLProcessor", "Qwen2Tokenizer", "Qwen2VLImageProcessor", "Qwen3VLForConditionalGeneration"),
        "keep_unquantized": ["model.visual", "lm_head"],
    },
    "tiny-idefics3": {
        "classes": ("Idefics3Processor", "GPT2Tokenizer", "Idefics3ImageProcessor", "Idefics3ForConditionalGeneration"),
        "keep_unquantized": ["model.vision_model", "model.connector", "lm_head"],
    },
}

RED = Image.new("RGB", (64, 48), "red")
BLUE = Image.new("RGB", (40, 80), "blue")

TWO_TURNS = [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "user", "content": [{"type": "image", "image": RED}, {"type": "text", "text": "What is this?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A red card."}]},
    {"role": "user", "content": [{"type": "text", "text": "And this?"}, {"type": "image", "image": BLUE}]},
]

RENDERED = {
    "tiny-qwen3-vl": (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n"
        "<|im_start|>assistant\nA red card.<|im_end|>\n"
        "<|im_start|>user\nAnd this?<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "tiny-idefics3": (
        "<|im_start|>System: Be brief.<end_of_utterance>\n"
        "User:<image>What is this?<end_of_utterance>\n"
        "Assistant: A red card.<end_of_utterance>\n"
        "User: And this?<image><end_of_utterance>\n"
        "Assistant:"
    ),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def loaded(request):
    folder = fixture_model_path(request.param)
    return request.param, AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder)


def _inputs(processor):
    return processor.apply_chat_template(
        TWO_TURNS, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def test_loads_as_the_real_family_classes(loaded):
    name, processor, model = loaded
    found = (type(processor), type(processor.tokenizer), type(processor.image_processor), type(model))
    assert tuple(cls.__name__ for cls in found) == FAMILIES[name]["classes"]


def test_chat_template_renders_like_the_family(loaded):
    name, processor, _ = loaded
    assert processor.apply_chat_template(TWO_TURNS, add_generation_prompt=True, tokenize=False) == RENDERED[name]


def test_each_image_expands_to_its_vision_tokens(loaded):
    name, processor, _ = loaded
    inputs = _inputs(processor)
    ids = inputs["input_ids"][0].tolist()
    tokenizer = processor.tokenizer
    if name == "tiny-qwen3-vl":
        # One <|image_pad|> per merged 2x2 patch group, per image.
        per_image = (inputs["image_grid_thw"].prod(dim=-1) // 4).tolist()
        assert ids.count(tokenizer.convert_tokens_to_ids("<|vision_start|>")) == 2
        assert ids.count(processor.image_token_id) == sum(per_image)
        assert len(per_image) == 2 and all(n > 0 for n in per_image)
    else:
        # The landscape photo splits into 2x2 tiles, the portrait one into 2 rows x 1
        # column; each adds a global view, and every tile is worth image_seq_len tokens.
        tiles = inputs["pixel_attention_mask"].flatten(2).any(-1).sum().item()
        assert tiles == (2 * 2 + 1) + (2 * 1 + 1)
        assert ids.count(tokenizer.convert_tokens_to_ids("<global-img>")) == 2
        assert ids.count(tokenizer.convert_tokens_to_ids("<row_2_col_2>")) == 1
        assert ids.count(tokenizer.convert_tokens_to_ids("<row_2_col_1>")) == 2
        assert ids.count(processor.image_token_id) == tiles * processor.image_seq_len


def test_generate_yields_new_tokens(loaded):
    _, processor, model = loaded
    inputs = _inputs(processor)
    output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[-1] :]
    assert len(new_tokens) > 0
    assert processor.decode(new_tokens, skip_special_tokens=True).strip()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_nf4_on_cpu_keeps_vision_and_lm_head_unquantized(name):
    keep = FAMILIES[name]["keep_unquantized"]
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=keep,
    )
    folder = fixture_model_path(name)
    model = AutoModelForImageTextToText.from_pretrained(folder, quantization_config=quantization, device_map="cpu")
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized, "the language model should be 4-bit"
    assert not [n for n in quantized if any(n == k or n.startswith(k + ".") for k in keep)]

    processor = AutoProcessor.from_pretrained(folder)
    inputs = _inputs(processor)
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[-1] > inputs["input_ids"].shape[-1]
