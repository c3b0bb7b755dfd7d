"""Build tiny random-weight vision-language models that load like real hub checkpoints.

Nothing can be downloaded here, yet the app's loader (AutoProcessor +
AutoModelForImageTextToText, chat template, NF4) has to be exercised for real.
So this module writes, from scratch and deterministically, two tiny models of the
families the app ships with:

- ``tiny-qwen3-vl``: Qwen3-VL (the GPU default, Qwen/Qwen3-VL-4B-Instruct).
- ``tiny-idefics3``: Idefics3 / SmolVLM (the CPU default, SmolVLM-500M-Instruct).

Each folder holds a byte-level BPE tokenizer trained here on English and Chinese
text, the family's real special tokens, real processor classes, a chat template
written for this project that renders like the family's own, and safetensors
weights of about 1 MB. The Qwen3-VL pieces are public functions because
``train_fixture_vlm.py`` builds its trained model from them.

Usage: python scripts/make_fixture_models.py OUT_DIR   (builds every fixture)
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    GPT2Tokenizer,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

SEED = 0

# The tokenizer's training text. Mixed English and Chinese so both scripts get
# merged tokens (byte-level BPE can encode any text, but without merges Chinese
# would cost three tokens per character).
BASE_CORPUS = [
    "What is in this picture? Describe the image in one short sentence.",
    "A street crossing, the pedestrian light is red. A dog sleeps on the sofa.",
    "Which of these two photos was taken at night? The second one, the sky is dark.",
    "Read the text on the sign. It says OPEN from 9 to 5.",
    "The cat is on the left and the cup is on the right of the table.",
    "There are three apples, two bananas and one orange in the bowl.",
    "Hello! How can I help you today? Thank you, goodbye.",
    "red green blue yellow black white orange purple circle square triangle star",
    "one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9",
    "这张图片里有什么？请用一句话描述这张图片。",
    "一个十字路口，行人信号灯是红色的。一只狗在沙发上睡觉。",
    "这两张照片中哪一张是在晚上拍的？第二张，天空很暗。",
    "请读出牌子上的文字。上面写着营业时间九点到五点。",
    "猫在桌子的左边，杯子在右边。碗里有三个苹果。",
    "你好！今天我能帮你什么？谢谢，再见。",
    "红色 绿色 蓝色 黄色 黑色 白色 圆形 正方形 三角形 星形 一 二 三 四",
]


@dataclass(frozen=True)
class Qwen3VLSpec:
    """The dimensions of a tiny Qwen3-VL. Image pixels bound the number of vision tokens."""

    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    vision_hidden: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate: int = 64
    patch_size: int = 8
    # Images are resized to between these pixel counts, in steps of patch_size * 2.
    min_pixels: int = 32 * 32
    max_pixels: int = 64 * 64
    # Std of the random init. Large for the untrained fixture: at the usual 0.02
    # it greedily repeats one whitespace token, which looks like an empty answer.
    init_std: float = 0.3


def train_byte_level_bpe(corpus: list[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE on `corpus`; the 256 byte symbols keep any text encodable."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    # The serialized form is the public way to read the learned merges.
    trained = json.loads(bpe.to_str())["model"]
    return trained["vocab"], [tuple(pair) for pair in trained["merges"]]


def with_tokens_appended(vocab: dict[str, int], tokens: list[str]) -> dict[str, int]:
    """`vocab` plus `tokens` at the next ids, in order, so special ids sit where the family puts them."""
    return {**vocab, **{token: len(vocab) + i for i, token in enumerate(tokens)}}


# ---------------------------------------------------------------- Qwen3-VL

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Added but not special in the real tokenizer, so they survive skip_special_tokens.
QWEN_PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]

# Renders like Qwen3-VL-Instruct's template: ChatML turns, each image as
# <|vision_start|><|image_pad|><|vision_end|> in place, no default system prompt.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' %}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def qwen3_vl_tokenizer(extra_corpus: list[str] = (), vocab_size: int = 1000) -> Qwen2Tokenizer:
    """A Qwen2Tokenizer (the class Qwen3-VL uses) over a BPE trained on the corpus."""
    vocab, merges = train_byte_level_bpe(BASE_CORPUS + list(extra_corpus), vocab_size)
    tokenizer = Qwen2Tokenizer(
        vocab=with_tokens_appended(vocab, QWEN_SPECIAL_TOKENS + QWEN_PLAIN_ADDED_TOKENS),
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS})
    tokenizer.add_tokens(QWEN_PLAIN_ADDED_TOKENS)
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    return tokenizer


def qwen3_vl_processor(spec: Qwen3VLSpec, extra_corpus: list[str] = (), vocab_size: int = 1000) -> Qwen3VLProcessor:
    tokenizer = qwen3_vl_tokenizer(extra_corpus, vocab_size)
    pixels = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    common = dict(patch_size=spec.patch_size, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels, **common),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size={"shortest_edge": spec.min_pixels, "longest_edge": 8 * spec.max_pixels}, **common),
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )


def qwen3_vl_model(processor: Qwen3VLProcessor, spec: Qwen3VLSpec) -> Qwen3VLForConditionalGeneration:
    """A randomly initialised (seeded) Qwen3-VL whose token ids match `processor`'s tokenizer."""
    tokenizer = processor.tokenizer
    head_dim = spec.text_hidden // spec.text_heads
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=spec.text_hidden,
            intermediate_size=spec.text_intermediate,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.text_heads,
            num_key_value_heads=spec.text_kv_heads,
            head_dim=head_dim,
            max_position_embeddings=4096,
            initializer_range=spec.init_std,
            # Real Qwen3-VL splits head_dim/2 rotary frequencies into T/H/W sections
            # ([24, 20, 20] for head_dim 128); same proportions here.
            rope_parameters=dict(
                rope_type="default",
                rope_theta=5_000_000.0,
                mrope_section=[head_dim // 4, head_dim // 8, head_dim // 8],
                mrope_interleaved=True,
            ),
            pad_token_id=ids("<|endoftext|>"),
            bos_token_id=ids("<|endoftext|>"),
            eos_token_id=ids("<|im_end|>"),
        ),
        vision_config=dict(
            depth=spec.vision_depth,
            hidden_size=spec.vision_hidden,
            intermediate_size=spec.vision_intermediate,
            num_heads=spec.vision_heads,
            patch_size=spec.patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=spec.text_hidden,
            initializer_range=spec.init_std,
            num_position_embeddings=256,
            deepstack_visual_indexes=list(range(spec.vision_depth)),
        ),
        image_token_id=processor.image_token_id,
        video_token_id=processor.video_token_id,
        vision_start_token_id=processor.vision_start_token_id,
        vision_end_token_id=processor.vision_end_token_id,
        # Qwen3-VL-4B ties lm_head to the input embeddings; keep that so the NF4
        # path sees the same tied-head layout as the real default model.
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        do_sample=False,
    )
    return model


def build_qwen3_vl(out_dir: Path) -> None:
    spec = Qwen3VLSpec()
    processor = qwen3_vl_processor(spec)
    save(qwen3_vl_model(processor, spec), processor, out_dir)


# ---------------------------------------------------------------- Idefics3

IDEFICS3_FIRST_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
IDEFICS3_IMAGE_TOKENS = (
    ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
)

# Renders like SmolVLM-Instruct's template: "<|im_start|>User:<image>Question?<end_of_utterance>\n
# Assistant: answer<end_of_utterance>\n"; a space after "Role:" only when text comes first.
IDEFICS3_CHAT_TEMPLATE = (
    "{{- '<|im_start|>' }}"
    "{%- for message in messages %}"
    "{{- message['role'] | capitalize }}"
    "{%- if message['content'] is string %}{{- ': ' + message['content'] }}"
    "{%- else %}"
    "{{- ':' if message['content'][0]['type'] == 'image' else ': ' }}"
    "{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<image>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<end_of_utterance>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}"
)

IDEFICS3_VISION_IMAGE_SIZE = 32
IDEFICS3_VISION_PATCH = 8
IDEFICS3_SCALE_FACTOR = 2


def idefics3_tokenizer(vocab_size: int = 1000) -> GPT2Tokenizer:
    """A GPT2Tokenizer (SmolVLM's class) with SmolLM's first ids and SmolVLM's image tokens."""
    vocab, merges = train_byte_level_bpe(BASE_CORPUS, vocab_size)
    # SmolLM reserves ids 0-2 for its control tokens; the BPE ids come behind them.
    vocab = with_tokens_appended(with_tokens_appended({}, IDEFICS3_FIRST_TOKENS), sorted(vocab, key=vocab.get))
    tokenizer = GPT2Tokenizer(
        vocab=with_tokens_appended(vocab, IDEFICS3_IMAGE_TOKENS),
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        model_max_length=8192,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": IDEFICS3_FIRST_TOKENS + IDEFICS3_IMAGE_TOKENS})
    tokenizer.chat_template = IDEFICS3_CHAT_TEMPLATE
    return tokenizer


def build_idefics3(out_dir: Path) -> None:
    tokenizer = idefics3_tokenizer()
    tile = IDEFICS3_VISION_IMAGE_SIZE
    image_seq_len = (tile // IDEFICS3_VISION_PATCH) ** 2 // IDEFICS3_SCALE_FACTOR**2
    processor = Idefics3Processor(
        # Long edge two tiles wide, so a photo is split into a 2x2 grid plus the
        # global view: the <row_R_col_C> path runs, not only the single-tile one.
        image_processor=Idefics3ImageProcessor(
            size={"longest_edge": 2 * tile},
            max_image_size={"longest_edge": tile},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Idefics3Config(
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            pad_token_id=ids("<|im_end|>"),
            bos_token_id=ids("<|im_start|>"),
            eos_token_id=ids("<end_of_utterance>"),
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=tile,
            patch_size=IDEFICS3_VISION_PATCH,
        ),
        image_token_id=ids("<image>"),
        scale_factor=IDEFICS3_SCALE_FACTOR,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids("<|im_start|>"),
        pad_token_id=ids("<|im_end|>"),
        eos_token_id=ids("<end_of_utterance>"),
        do_sample=False,
    )
    save(model, processor, out_dir)


# ---------------------------------------------------------------- common

def save(model, processor, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


BUILDERS = {"tiny-qwen3-vl": build_qwen3_vl, "tiny-idefics3": build_idefics3}


def build_fixture(name: str, out_dir: Path) -> Path:
    """Write fixture `name` into `out_dir` (created if needed) and return `out_dir`."""
    BUILDERS[name](Path(out_dir))
    return Path(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="each fixture goes to OUT_DIR/<name>")
    args = parser.parse_args()
    for name in BUILDERS:
        print(build_fixture(name, args.out_dir / name))


if __name__ == "__main__":
    main()
