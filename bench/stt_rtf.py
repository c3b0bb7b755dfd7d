"""Real-time factor (RTF) of faster-whisper vs openai-whisper: same clips, same model
shape, same machine, one run.

RTF = seconds of compute / seconds of audio; below 1 is faster than real time.

Method. openai-whisper has no offline weights here, so it runs a Whisper of exactly
tiny.en's shape (80 mels, 4+4 layers, width 384, 6 heads, 51864 tokens) with random
weights, while faster-whisper runs the real bundled tiny.en. Random weights decode
text of random length, and decode length dominates Whisper's cost, so the two are
compared on a fixed amount of work instead of on transcribe():

    for every 30 s window of the clip: log-mel features -> encoder ->
    greedy decode of exactly --tokens tokens (end-of-text suppressed, no timestamps)

Both run through their own packages' feature extraction, encoder and decoding loop
(faster-whisper: FeatureExtractor + CTranslate2 generate; openai-whisper:
log_mel_spectrogram + model.decode), on all CPU cores. Compute cost does not depend
on the weights' values, so random weights are a fair stand-in. The last row is the
full adapter (mmchat.stt, faster-whisper, beam 5 + VAD) on the real weights, for
scale; it has no openai-whisper counterpart without real weights.

Each measurement is warmed up once, then run --runs times, the measurements of a clip
taking turns; min and median are shown, with the load average before and after.

    .venv/bin/python bench/stt_rtf.py [--runs 5] [--tokens 64] [clip ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import ctranslate2
import numpy as np
import torch
import whisper
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mmchat.media.audio import SAMPLE_RATE, load_audio  # noqa: E402
from mmchat.stt import weights  # noqa: E402
from mmchat.stt.faster_backend import FasterWhisperSpeechToText  # noqa: E402

WINDOW = 30 * SAMPLE_RATE
TINY_EN = whisper.model.ModelDimensions(
    n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
    n_vocab=51864, n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4,
)


def windows(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i : i + WINDOW] for i in range(0, len(audio), WINDOW)]


def fixed_work_faster(model: WhisperModel, audio: np.ndarray, tokens: int) -> Callable[[], None]:
    vocab = model.hf_tokenizer
    eot = vocab.token_to_id("<|endoftext|>")
    prompt = [vocab.token_to_id("<|startoftranscript|>"), vocab.token_to_id("<|notimestamps|>")]

    def run() -> None:
        for window in windows(audio):
            features = pad_or_trim(model.feature_extractor(window))[None]  # [1, 80, 3000]
            result = model.model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
                [prompt],
                beam_size=1,
                max_length=2 * tokens,  # CTranslate2's Whisper yields max_length // 2 new tokens
                suppress_tokens=[-1, eot],
                suppress_blank=False,
            )
            assert len(result[0].sequences_ids[0]) == tokens, "decode length is not fixed"

    return run


def fixed_work_openai(model: whisper.model.Whisper, audio: np.ndarray, tokens: int) -> Callable[[], None]:
    eot = whisper.tokenizer.get_tokenizer(model.is_multilingual).eot
    options = whisper.DecodingOptions(
        language="en", temperature=0.0, sample_len=tokens, without_timestamps=True,
        suppress_tokens=[eot], suppress_blank=False, fp16=False,
    )

    def run() -> None:
        for window in windows(audio):
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(window)))  # [80, 3000]
            result = model.decode(mel, options)
            assert len(result.tokens) == tokens, "decode length is not fixed"

    return run


def seconds_per_run(measured: list[Callable[[], None]], runs: int) -> list[list[float]]:
    """[measurement][run] seconds; each run goes through all measurements in turn, so a
    change in a shared machine's load reaches them alike rather than the one then running."""
    for run in measured:
        run()  # warm-up: first-call allocations and kernel selection are not steady state
    times: list[list[float]] = [[] for _ in measured]
    for _ in range(runs):
        for i, run in enumerate(measured):
            started = time.perf_counter()
            run()
            times[i].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path, help="audio files (default: jfk.flac, and with a pause)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64, help="tokens decoded per 30 s window")
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    jfk = Path(__file__).resolve().parents[1] / "tests" / "data" / "jfk.flac"
    if args.clips:
        clips = {path.name: load_audio(path, max_seconds=3600) for path in args.clips}
    else:
        speech = load_audio(jfk, max_seconds=60)
        pause = int(7.8 * SAMPLE_RATE)  # between its two sentences
        # Two 30 s windows with a long pause for the VAD to cut. (Not jfk three times:
        # repeated text makes Whisper's loop check fire and retry at higher temperatures.)
        paused = np.concatenate([speech[:pause], np.zeros(20 * SAMPLE_RATE, np.float32), speech[pause:]])
        clips = {"jfk.flac": speech, "jfk.flac + 20 s pause": paused}

    tiny_en = weights.bundled_english_dir()
    faster = {
        compute: WhisperModel(str(tiny_en), device="cpu", compute_type=compute, cpu_threads=threads)
        for compute in ("int8", "float32")
    }
    torch.manual_seed(0)
    reference = whisper.model.Whisper(TINY_EN).eval()
    adapter = FasterWhisperSpeechToText(faster["int8"], name="tiny.en")

    load = os.getloadavg()
    fixed = f"30 s windows: features+encoder+{args.tokens} tokens greedy"
    rows = []
    for clip, audio in clips.items():
        seconds = len(audio) / SAMPLE_RATE
        real, random = "tiny.en (real)", "tiny.en shape, RANDOM"
        measured = [
            ("faster-whisper", real, "int8", fixed, fixed_work_faster(faster["int8"], audio, args.tokens)),
            ("faster-whisper", real, "float32", fixed, fixed_work_faster(faster["float32"], audio, args.tokens)),
            ("openai-whisper", random, "float32", fixed, fixed_work_openai(reference, audio, args.tokens)),
            ("faster-whisper", real, "int8", "full transcribe (beam 5, VAD)", lambda a=audio: adapter.transcribe(a)),
        ]
        timings = seconds_per_run([run for *_, run in measured], args.runs)
        for (backend, weights_used, compute, work, _), times in zip(measured, timings):
            rtf = [t / seconds for t in times]
            clip_name = f"{clip} ({seconds:.0f} s)"
            rows.append((backend, weights_used, compute, clip_name, work, min(rtf), statistics.median(rtf)))

    print(
        f"CPU, {threads} threads; torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}, "
        f"openai-whisper {whisper.__version__}; {args.runs} runs after 1 warm-up; load average "
        f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    header = ("backend", "weights", "compute", "clip", "work", "RTF min", "RTF median")
    table = [header] + [(*row[:5], f"{row[5]:.3f}", f"{row[6]:.3f}") for row in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for i, line in enumerate(table):
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(line, widths)))
        if i == 0:
            print("-+-".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
