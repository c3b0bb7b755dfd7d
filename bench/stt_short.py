"""Recogniser settings for the voice mode's short utterances, side by side in one run.

The voice mode transcribes pieces of 0.5-5 s: StreamingTranscriber's remainder at the
end of a turn, TrailingWordHold's quick look at the last few seconds. This measures
faster-whisper with the bundled tiny.en weights through the app's own adapter
(mmchat.stt.faster_backend, as the app calls it, language "en") for every combination of

- compute type: those of int8 / int8_float32 / float32 that CTranslate2 offers on this CPU;
- cpu_threads: 1, 2, and 0 (CTranslate2's default, 4 threads, what the app uses);
- beam size: 1 (greedy) and 5 (the adapter's default), passed per call;
- faster-whisper's Silero VAD pass on (the app) and off.

Utterances: short questions to a hands-free visual assistant, spoken by espeak-ng in
--voices (voice:words per minute), and slices of tests/data/jfk.flac (real speech, cut
at its pauses). Each gets 0.3 s of silence before and 0.2 s after, the pre- and post-roll
that EndpointDetector keeps around a turn.

Each run takes the utterances in turn and runs every setting on each before the next
(so a change in a shared machine's load reaches all settings alike). Columns: latency
is one transcribe() call: each utterance's min (median) over --runs runs, averaged over
the utterances; "slowest" is the utterance with the highest median; real-time factor is
the same mins (medians) summed, over the seconds of audio; word error rate is scored on
lowercase words without punctuation, from the first run (temperature 0 decoding is
deterministic), for the espeak-ng questions and the jfk slices apart.

openai-whisper has no offline weights here (see bench/stt_rtf.py), so its rows run a
random-weight Whisper of tiny.en's exact shape on a fixed amount of work per utterance:
log-mel features -> encoder -> greedy decode of as many tokens as the utterance's known
text has, with faster-whisper's real tiny.en on the same work beside it. Those rows give
latency only; random weights have no word error rate.

The whole default grid (45 settings, 25 utterances, 3 runs) takes about 45 minutes on
a busy 2-core CPU; the flags narrow it.

    .venv/bin/python bench/stt_short.py [--runs 3] [--compute int8 float32] [--threads 1 2]
                                        [--beams 1 5] [--vad on off] [--no-openai] [--show-heard]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ctranslate2
import jiwer
import numpy as np
from faster_whisper import WhisperModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mmchat.media.audio import SAMPLE_RATE, load_audio  # noqa: E402
from mmchat.stt import weights  # noqa: E402
from mmchat.stt.faster_backend import FasterWhisperSpeechToText  # noqa: E402

JFK = Path(__file__).resolve().parents[1] / "tests" / "data" / "jfk.flac"
# American spelling, as tiny.en writes it ("color", not "colour").
QUESTIONS = [
    "What am I holding?",
    "What color is the shape?",
    "Read the sign.",
    "How many shapes are there?",
    "What changed?",
    "Is the light red or green?",
    "What does the label say?",
    "Which one is bigger?",
    "Describe what you see in front of me.",
    "Where did I put my keys?",
]
# (start s, end s, words) of jfk.flac, cut in its silences (energy below 1% of the
# speech's for at least 0.15 s), so no word is split.
JFK_SLICES = [
    (0.0, 2.2, "And so my fellow Americans"),
    (3.1, 4.4, "ask not"),
    (5.3, 7.6, "what your country can do for you"),
    (3.1, 7.6, "ask not what your country can do for you"),
    (8.0, 11.0, "ask what you can do for your country"),
]
BEFORE, AFTER = 0.3, 0.2  # seconds of silence around each utterance (EndpointDetector's rolls)
COMPUTE_TYPES = ("int8", "int8_float32", "float32")


@dataclass(frozen=True)
class Utterance:
    kind: str  # "espeak" or "jfk"
    text: str
    audio: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def word_error_rate(references: list[str], heard: list[str]) -> float:
    """Word errors over all reference words, the utterances pooled."""
    return jiwer.wer([words(r) for r in references], [words(h) for h in heard])


def padded(speech: np.ndarray) -> np.ndarray:
    quiet = lambda seconds: np.zeros(int(seconds * SAMPLE_RATE), np.float32)  # noqa: E731
    return np.concatenate([quiet(BEFORE), speech.astype(np.float32), quiet(AFTER)])


def spoken(text: str, voice: str, speed: int, folder: Path) -> np.ndarray:
    wav = folder / "say.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
    audio = load_audio(wav, max_seconds=60)
    voiced = np.flatnonzero(np.abs(audio) > 1e-3)  # espeak-ng's own lead-in and tail silences
    return audio[voiced[0] : voiced[-1] + 1]


def utterances(voices: list[tuple[str, int]], limit: int | None) -> list[Utterance]:
    made = []
    with tempfile.TemporaryDirectory() as folder:
        for voice, speed in voices:
            for text in QUESTIONS[:limit]:
                made.append(Utterance(f"espeak {voice} {speed}", text, padded(spoken(text, voice, speed, Path(folder)))))
    jfk = load_audio(JFK, max_seconds=60)
    for start, end, text in JFK_SLICES[:limit]:
        made.append(Utterance("jfk", text, padded(jfk[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])))
    return made


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


@dataclass
class Setting:
    backend: str
    weights: str
    compute: str
    threads: str
    beam: str
    vad: str
    run: Callable[[Utterance], str | None]  # one utterance: what was heard (None: no text to score)
    seconds: list[list[float]]  # [run][utterance]
    heard: list[str | None]


def faster_settings(args, threads_of: dict[int, str]) -> list[Setting]:
    folder = str(weights.bundled_english_dir())
    settings = []
    for compute in args.compute:
        for threads in args.threads:
            model = WhisperModel(folder, device="cpu", compute_type=compute, cpu_threads=threads)
            for vad in args.vad:
                stt = FasterWhisperSpeechToText(model, name="tiny.en", vad=vad == "on")
                for beam in args.beams:
                    def run(u: Utterance, stt=stt, beam=beam) -> str:
                        return stt.transcribe(u.audio, language="en", beam_size=beam).text

                    settings.append(Setting("faster-whisper", "tiny.en", compute, threads_of[threads], str(beam),
                                            vad, run, [], []))
    return settings


def fixed_work_settings(args, threads_of: dict[int, str], said: list[Utterance]) -> list[Setting]:
    """Features, encoder and exactly as many greedy tokens as each utterance's text has."""
    import torch
    import whisper
    from stt_rtf import TINY_EN, fixed_work_faster, fixed_work_openai  # bench/ is on the path when a bench runs

    tokenizer = whisper.tokenizer.get_tokenizer(False)
    tokens = {u.text: len(tokenizer.encode(" " + u.text)) for u in said}
    torch.manual_seed(0)
    reference = whisper.model.Whisper(TINY_EN).eval()
    folder = str(weights.bundled_english_dir())
    work = "fixed work"
    settings = []
    for threads in args.threads:
        torch_threads = threads or os.cpu_count() or 1  # torch has no "default 4"; 0 is all cores

        def openai_run(u: Utterance, t=torch_threads) -> None:
            torch.set_num_threads(t)
            fixed_work_openai(reference, u.audio, tokens[u.text])()

        settings.append(Setting("openai-whisper", "tiny.en shape, RANDOM", "float32", str(torch_threads),
                                f"1 ({work})", "-", openai_run, [], []))
        for compute in [c for c in ("int8", "float32") if c in args.compute]:
            model = WhisperModel(folder, device="cpu", compute_type=compute, cpu_threads=threads)

            def faster_run(u: Utterance, model=model) -> None:
                fixed_work_faster(model, u.audio, tokens[u.text])()

            settings.append(Setting("faster-whisper", "tiny.en", compute, threads_of[threads], f"1 ({work})", "-",
                                    faster_run, [], []))
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    offered = [c for c in COMPUTE_TYPES if c in ctranslate2.get_supported_compute_types("cpu")]
    parser.add_argument("--compute", nargs="+", default=offered, choices=offered)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2, 0],
                        help="cpu_threads; 0 is CTranslate2's default (4)")
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--vad", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--voices", nargs="+", default=["en-us:160", "en-gb:200"],
                        help="espeak-ng voice:words per minute")
    parser.add_argument("--utterances", type=int, default=None,
                        help="only the first N questions and N jfk slices (a quick check)")
    parser.add_argument("--no-openai", action="store_true", help="skip the fixed-work rows")
    parser.add_argument("--show-heard", action="store_true", help="after the table, each setting's misheard utterances")
    args = parser.parse_args()

    voices = [(v.split(":")[0], int(v.split(":")[1])) for v in args.voices]
    said = utterances(voices, args.utterances)
    threads_of = {t: str(t) if t else "0 (default: 4)" for t in args.threads}
    settings = faster_settings(args, threads_of)
    if not args.no_openai:
        settings += fixed_work_settings(args, threads_of, said)

    load = os.getloadavg()
    for setting in settings:
        setting.run(said[0])  # warm-up: first-call allocations are not steady state
    for run in range(args.runs):
        for setting in settings:
            setting.seconds.append([])
        # Every setting in turn on the same utterance: a change in the machine's load (it
        # is shared) then reaches all of them alike, not the few that ran through it.
        for u in said:
            for setting in settings:
                seconds, heard = timed(lambda setting=setting, u=u: setting.run(u))
                setting.seconds[-1].append(seconds)
                if run == 0:
                    setting.heard.append(heard)
    load_after = os.getloadavg()

    audio = sum(u.seconds for u in said)
    lengths = [u.seconds for u in said]
    print(f"{len(said)} utterances ({min(lengths):.1f}-{max(lengths):.1f} s, {audio:.1f} s in all): "
          f"{len(said) - sum(u.kind == 'jfk' for u in said)} espeak-ng questions ({', '.join(args.voices)}), "
          f"{sum(u.kind == 'jfk' for u in said)} jfk.flac slices; {args.runs} runs after 1 warm-up, min / median; "
          f"ctranslate2 {ctranslate2.__version__} on {os.cpu_count()} CPUs; load average "
          f"{load[0]:.2f} before, {load_after[0]:.2f} after\n")
    print("| backend | weights | compute | threads | beam | VAD | latency ms per utterance | slowest ms "
          "| real-time factor | WER espeak | WER jfk |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in settings:
        per_utterance = list(zip(*s.seconds))  # [utterance][run]
        best = [min(times) for times in per_utterance]
        median = [statistics.median(times) for times in per_utterance]
        per_call = [statistics.mean(best), statistics.mean(median)]
        rtf = [sum(best) / audio, sum(median) / audio]
        scores = []
        for kind in ("espeak", "jfk"):
            pairs = [(u.text, h) for u, h in zip(said, s.heard) if u.kind.startswith(kind)]
            scores.append("-" if not pairs or pairs[0][1] is None else f"{word_error_rate(*zip(*pairs)):.1%}")
        print(f"| {s.backend} | {s.weights} | {s.compute} | {s.threads} | {s.beam} | {s.vad} | "
              f"{per_call[0] * 1000:.0f} / {per_call[1] * 1000:.0f} | {max(median) * 1000:.0f} | "
              f"{rtf[0]:.3f} / {rtf[1]:.3f} | {scores[0]} | {scores[1]} |",
              flush=True)
    if args.show_heard:
        for s in settings:
            wrong = [(u, h) for u, h in zip(said, s.heard) if h is not None and words(h) != words(u.text)]
            if wrong:
                print(f"\n{s.compute}, {s.threads} threads, beam {s.beam}, VAD {s.vad}:")
                print("\n".join(f"- {u.kind}: {u.text!r} -> {h!r}" for u, h in wrong))


if __name__ == "__main__":
    main()
