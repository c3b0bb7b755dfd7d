"""One typed configuration, read once from CLI flags with MMCHAT_* environment defaults.

Every field is written once here, with its help text. `parse_config()` is the only
place that reads the environment; everything else receives a `Config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

DEFAULT_GPU_MODEL = "Qwen/Qwen3-VL-4B-Instruct"
DEFAULT_CPU_MODEL = "HuggingFaceTB/SmolVLM-500M-Instruct"


def _opt(help: str, default: Any = None, *, choices: Sequence[str] | None = None, flag: str | None = None):
    """A config field with its help text (and optional choices / custom flag name)."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


@dataclass(frozen=True)
class Config:
    # --- model / engine ---
    model: str = _opt(
        "Hugging Face model id or local folder of an image-text-to-text model. "
        f"Default: {DEFAULT_GPU_MODEL} on a CUDA GPU, {DEFAULT_CPU_MODEL} on the CPU.",
        "auto",
    )
    device: str = _opt("Where the model runs.", "auto", choices=("auto", "cuda", "cpu"))
    quantization: str = _opt(
        "Weight quantization: nf4 (bitsandbytes 4-bit, default on CUDA), int4 (for NVIDIA "
        "GPUs from Ampere on: PyTorch's int4 kernels and a compiled decoder, a minute or two "
        "of compiling at start-up; it also runs on the CPU, slowly), int8, or none (16-bit "
        "on CUDA, 32-bit on the CPU). 'auto' picks nf4 on CUDA and none on the CPU.",
        "auto",
        choices=("auto", "none", "nf4", "int8", "int4"),
    )
    engine: str = _opt(
        "Where answers come from: 'local' runs --model on this machine; 'remote' asks an "
        "OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, Ollama, OpenAI, another "
        "mmchat) at --base-url, and loads no model here. Speech in and out stay on this machine.",
        "local",
        choices=("local", "remote"),
    )
    base_url: str = _opt(
        "With --engine remote: the server's OpenAI API address, usually ending in /v1 "
        "(vLLM: http://HOST:8000/v1).",
        "",
    )
    remote_api_key: str = _opt(
        "With --engine remote: the key the server expects (sent as Authorization: Bearer KEY); "
        "empty: none. Not --api-key, which is the key of this server's own API.",
        "",
    )
    remote_model: str = _opt(
        "With --engine remote: the model to ask, as the server's /v1/models names it; empty: "
        "the server's only model.",
        "",
    )
    remote_timeout: float = _opt(
        "With --engine remote: seconds to wait for the server to accept a connection, and for "
        "each part of an answer (its first words included), before saying it does not answer.",
        60.0,
    )
    max_pixels: int = _opt(
        "Pixel budget per image: larger photos are downscaled (keeping aspect) before the "
        "vision encoder sees them.",
        1024 * 28 * 28,
    )
    history_tokens: int = _opt(
        "Token budget for the conversation sent to the model; the oldest whole turns are "
        "dropped first (the user is told when a photo leaves the context).",
        8192,
    )
    prefix_cache_mb: float = _opt(
        "Memory for the model's KV cache of recent conversations, kept between turns so a "
        "follow-up only processes what is new (on the GPU when the model is there); the least "
        "recently used conversations go first. 0 turns it off.",
        1024.0,
    )
    photo_cache_mb: float = _opt(
        "Memory for photos as the model's image processor made them, kept so that a photo sent "
        "again (each turn of a conversation sends its photos) is processed once; the least recently "
        "used go first. 0 turns it off.",
        512.0,
    )
    max_new_tokens: int = _opt("Default longest answer, in tokens (adjustable in the UI).", 512)
    temperature: float = _opt("Default sampling temperature; 0 means greedy (adjustable in the UI).", 0.7)
    system_prompt: str = _opt(
        "System prompt given to the model at the start of every conversation.",
        "You are mmchat, a helpful assistant that answers questions about the user's "
        "photos. Be accurate and concise; say so when something is not visible.",
    )

    # --- limits on what a user may send ---
    max_text_chars: int = _opt("Longest message a user may send, in characters.", 8000)
    max_images_per_turn: int = _opt("Most photos in one message.", 4)
    max_videos_per_turn: int = _opt("Most video clips in one message.", 2)
    max_upload_mb: float = _opt("Largest file a user may upload, in megabytes.", 25.0)
    max_image_pixels: int = _opt(
        "Largest photo accepted at all, in pixels (bigger is refused rather than decoded).",
        100_000_000,
    )
    max_audio_seconds: float = _opt("Longest recording accepted, in seconds.", 600.0)
    max_video_mb: float = _opt("Largest video clip a user may upload, in megabytes.", 200.0)
    max_video_seconds: float = _opt(
        "Longest stretch of a clip the model looks at, in seconds: a longer clip is looked at over "
        "its first this many seconds (said in the chat).",
        120.0,
    )
    video_fps: float = _opt(
        "Frames taken from each second of a clip, at fixed times from its start (a clip longer than "
        "--max-video-frames allows is sampled more sparsely).",
        2.0,
    )
    max_video_frames: int = _opt("Most frames the model reads from one clip.", 64)
    camera_clip_seconds: float = _opt(
        "Voice mode: how many of the camera's last seconds a question about motion or change "
        "(\"what just happened?\", \"is it moving?\") is asked about, as a clip. 0: only the last frame.",
        4.0,
    )
    max_video_pixels: int = _opt(
        "Pixel budget of one clip, all its frames together: each frame is shrunk to its share "
        "(and to --max-pixels at most) as it is decoded.",
        8_000_000,
    )
    video_decode_seconds: float = _opt(
        "Longest a clip may take to decode before it is refused as too slow to read, in seconds.", 120.0
    )
    max_turns_per_minute: int = _opt(
        "Most questions one person may send in a minute (new, answered again or edited; "
        "page and HTTP API together). One person is the logged-in user with --auth; "
        "otherwise everyone on the page counts as one, and each API key, or each address "
        "without one, as another. 0: no limit.",
        20,
    )

    # --- speech in ---
    stt_backend: str = _opt(
        "Speech-to-text backend.", "faster-whisper", choices=("faster-whisper", "openai-whisper", "none")
    )
    whisper_model: str = _opt(
        "Whisper model: a size name (tiny.en, base, small, ...) or a local folder. "
        "'auto' uses weights bundled as Python packages (no download): multilingual base, or "
        "the faster English-only tiny.en with --speech-language en (and when the base packages "
        "are not installed). With --stt-backend openai-whisper, 'auto' is base, or tiny.en for "
        "--speech-language en, downloaded once.",
        "auto",
    )
    speech_language: str = _opt(
        "Language of the speech (e.g. en, zh) or 'auto' to detect it.", "auto"
    )
    edit_transcript: bool = _opt(
        "Put the transcript in the message box for editing instead of sending it at once.", False
    )
    end_of_turn_ms: int = _opt(
        "Voice mode: "
        "silence after speech, in milliseconds, that ends the person's turn "
        "(shorter answers sooner but may cut off a pause for thought).",
        600,
    )
    voice_sensitivity: float = _opt(
        "Voice mode: "
        "the speech probability (0..1) the voice activity detector counts as "
        "speech; lower hears quieter voices, higher ignores more background noise.",
        0.5,
    )
    min_speech_ms: int = _opt(
        "Voice mode: "
        "less speech than this, in milliseconds, is a click, cough or breath "
        "and makes no turn.",
        250,
    )
    max_turn_seconds: float = _opt(
        "Voice mode: "
        "a turn that runs this long, in seconds, ends even while the person is "
        "still speaking.",
        30.0,
    )

    # --- speech out ---
    tts_backend: str = _opt(
        "Text-to-speech backend: 'piper' (Piper voices, several languages), 'hibari' (a faster "
        "English-only voice; --voice auto is its bundled voice 'heart', or name one of emma, fenrir, "
        "fable, kore, downloaded once; other languages are read by an installed Piper voice), "
        "'coqui' (needs the optional coqui-tts package) or 'none'.",
        "hibari",
        choices=("piper", "hibari", "coqui", "none"),
    )
    voice: str = _opt(
        "Voice: 'auto' (the backend's bundled voice: hibari's 'heart', or Piper's en_US-joe-medium; "
        "an answer in another language is read by an installed Piper voice of that language), a "
        "hibari voice name (heart, emma, fenrir, fable, kore), or a Piper .onnx path or voice name.",
        "auto",
    )
    speech_rate: float = _opt("Speaking rate: 1.0 normal, 1.5 faster, 0.75 slower.", 1.0)
    speak_answers: bool = _opt("Speak answers aloud by default.", False)

    # --- server ---
    host: str = _opt("Address to serve on (0.0.0.0 to reach it from other machines).", "127.0.0.1")
    port: int = _opt("Port to serve on.", 7860)
    share: bool = _opt("Create a public Gradio share link.", False)
    data_dir: Path = _opt("Where conversations are saved.", Path.home() / ".mmchat")
    concurrency: int = _opt(
        "How many answers are generated at once (others wait in a queue).", 1
    )
    auth: bool = _opt(
        "Ask people to log in, each to their own conversations, photos, recordings and exports "
        "(and the HTTP API to a user's API key). Add users with: python -m mmchat.users add NAME. "
        "Without it, everyone who can reach the page shares one history.",
        False,
    )
    session_hours: float = _opt(
        "With --auth: hours a log-in lasts, however active; then the person logs in again.", 168.0
    )
    session_idle_hours: float = _opt(
        "With --auth: hours without a request after which a log-in ends.", 24.0
    )

    # --- HTTP API (OpenAI-compatible, under /v1 on the page's port) ---
    api_key: str = _opt(
        "Key that HTTP API clients must send (Authorization: Bearer KEY); empty: none needed. "
        "Serving beyond this machine (--host 0.0.0.0) without a key logs a warning.",
        "",
    )
    api_keys_file: str = _opt(
        "File of accepted HTTP API keys, one a line (# starts a comment); adds to --api-key.", ""
    )
    served_model_name: str = _opt(
        "Model name the HTTP API reports in /v1/models and answers; empty: the --model value.", ""
    )
    strict_model_names: bool = _opt(
        "Refuse HTTP API requests that name another model with a 404 (as vLLM does); by default "
        "any name is answered by the served model, so code written for other models just works.",
        False,
    )
    allow_image_urls: str = _opt(
        "Web hosts the HTTP API may fetch image URLs from, comma-separated (example.com, "
        "*.example.com for its subdomains, * for any); empty: images must be sent inline as data: "
        "URLs. Addresses in private, loopback or link-local networks are refused whatever the "
        "list says; a fetch may take 10 s and --max-upload-mb at most, and redirects are not followed.",
        "",
    )


def _env_name(name: str) -> str:
    return "MMCHAT_" + name.upper()


def _flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a yes/no value: {text!r}")


def _field_type(f: dataclasses.Field) -> type:
    # `from __future__ import annotations` turns annotations into strings.
    return {"str": str, "int": int, "float": float, "bool": bool, "Path": Path}[str(f.type)]


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The CLI; each default comes from MMCHAT_<NAME> when set, else from Config."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="mmchat: chat about photos with a local vision-language model, by text or voice.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(Config):
        kind = _field_type(f)
        env = _env_name(f.name)
        default = f.default
        if env in environ:
            try:
                default = _parse_bool(environ[env]) if kind is bool else kind(environ[env])
            except ValueError as exc:
                parser.error(f"{env}={environ[env]!r}: {exc}")
        help_text = f"{f.metadata['help']} [env: {env}]"
        if kind is bool:
            parser.add_argument(
                _flag_name(f), dest=f.name, default=default, help=help_text,
                action=argparse.BooleanOptionalAction,
            )
        else:
            parser.add_argument(
                _flag_name(f), dest=f.name, default=default, type=kind, help=help_text,
                choices=f.metadata.get("choices"),
            )
    return parser


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    args = build_parser(environ).parse_args(argv)
    config = Config(**vars(args))
    for f in dataclasses.fields(Config):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:  # env values bypass argparse choices
            raise SystemExit(f"{_env_name(f.name)} must be one of {', '.join(choices)}")
    return config
