"""Voices side by side in one run: Piper's bundled voice against hibari's bundled voice.

For each voice, loaded through the app's own factory (mmchat.tts.create_text_to_speech):
- real-time factor: synthesis seconds per second of speech, over SENTENCES spoken one
  by one through `TextToSpeech.stream` (below 1 is faster than speech);
- first audio: from the first token of REPLY (whose first sentence is 118 characters,
  its first clause 58) to the first audio chunk, the tokens fed at --rate a second to a
  SpeechWorker, the turn loop's own speech thread: once as before the first-clause cut
  (first_clause_chars=None: the first sentence is cut at its last clause only once 80
  characters of it are seen), once with the worker's default first-clause cut (its first
  clause as soon as it is written, if at least 40 characters); and with all tokens at once;
- round-trip word error rate: SENTENCES synthesized, transcribed back by the app's
  Whisper adapter with the bundled tiny.en weights (mmchat.stt.create_speech_to_text),
  scored with jiwer on lowercase words without punctuation, from the first run's audio.
Loading (and warming up) each voice is reported on its own, as it happens once.
Each timing is run --runs times after one untimed warm-up; min and median are shown.

    .venv/bin/python bench/tts_voices.py [--runs 5] [--rate 30]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import jiwer
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmchat.cancel import CancelToken  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.errors import ModelUnavailableError  # noqa: E402
from mmchat.events import AudioChunk  # noqa: E402
from mmchat.tts import TextToSpeech, create_text_to_speech  # noqa: E402
from mmchat.tts.worker import SpeechWorker  # noqa: E402

VOICES = ("piper", "hibari")

# bench/tts_latency.py's reply and tokens, so the two benches' first-audio figures compare.
from tts_latency import REPLY, TOKENS  # noqa: E402  (bench/ is on the path when a bench runs)

# What the app's answers sound like: descriptions of photos, a little text read out.
# American spelling, as Whisper tiny.en writes it ("color", not "colour").
SENTENCES = [
    "The photo shows two cats curled up together on a red sofa.",
    "A street crossing, the pedestrian light is red.",
    "The sign above the door says the bakery opens at seven in the morning.",
    "There are three people on the beach, and one of them is holding a yellow kite.",
    "The label on the bottle reads olive oil, extra virgin, one liter.",
    "In the background you can see snow on the mountains and a small wooden cabin.",
    "The second photo was taken at night, so the colors look darker and warmer.",
    "If you want to crop out just one of them, I can explain how.",
    "A wrought iron balcony hangs above a narrow cobblestone alley.",
    "The thermometer on the wall shows minus 12 degrees.",  # read "twelve", heard "12"
    "Next to the espresso machine there is a jar of cinnamon and a whisk.",
    "The handwritten note says: meet me at the library on Thursday afternoon.",
    "Two cyclists in bright jackets are waiting behind the tram.",
    "The chart compares quarterly revenue for the northern and southern regions.",
]


def synthesis_rtf(tts: TextToSpeech) -> tuple[float, list[AudioChunk]]:
    started = time.perf_counter()
    chunks = list(tts.stream(SENTENCES, CancelToken.standalone()))
    elapsed = time.perf_counter() - started
    return elapsed / sum(chunk.duration for chunk in chunks), chunks


def first_audio(tts: TextToSpeech, rate: float, first_clause: bool) -> float:
    """Seconds from the first token fed to the first audio chunk emitted by the worker."""
    heard = threading.Event()
    at: list[float] = []

    def emit(chunk: AudioChunk) -> None:
        if not at:
            at.append(time.perf_counter())
            heard.set()

    options = {} if first_clause else {"first_clause_chars": None}
    worker = SpeechWorker(tts, CancelToken.standalone(), emit, **options)
    start = time.perf_counter()
    try:
        for i, token in enumerate(TOKENS):
            if rate:
                # Sleep in the wait, not before it, so a chunk that comes early is noticed at once.
                if heard.wait(max(0.0, start + i / rate - time.perf_counter())):
                    break
            worker.feed(token)
        worker.finish()
        if not heard.wait(60):
            raise RuntimeError("no audio within a minute")
    finally:
        worker.close()  # the rest of the reply is not needed
    if worker.error is not None:
        raise worker.error
    return at[0] - start


def words(text: str) -> str:
    text = re.sub(r"[-–—]", " ", text.lower())
    return " ".join(re.sub(r"[^\w\s']", "", text).split())


def round_trip_wer(chunks: list[AudioChunk], whisper) -> tuple[float, list[str]]:
    from mmchat.media.audio import SAMPLE_RATE

    heard = []
    for chunk in chunks:
        # Whisper hears 16 kHz; half a second of quiet on each side, as around any played sentence.
        samples = np.interp(
            np.arange(int(chunk.duration * SAMPLE_RATE)) / SAMPLE_RATE,
            np.arange(len(chunk.samples)) / chunk.sample_rate,
            chunk.samples,
        ).astype(np.float32)
        quiet = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
        heard.append(whisper.transcribe(np.concatenate([quiet, samples, quiet]), language="en").text.strip())
    reference = [words(chunk.text) for chunk in chunks]
    return jiwer.wer(reference, [words(text) for text in heard]), heard


def cell(values: list[float], scale: float = 1000.0, digits: int = 0, unit: str = " ms") -> str:
    return f"{min(values) * scale:.{digits}f} / {statistics.median(values) * scale:.{digits}f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=30.0, help="tokens per second for the first-audio columns")
    parser.add_argument("--show-heard", action="store_true", help="print what Whisper heard for each voice")
    args = parser.parse_args()

    from mmchat.stt import create_speech_to_text

    whisper = create_speech_to_text(Config(device="cpu", stt_backend="faster-whisper", speech_language="en"))
    data_dir = Path(tempfile.mkdtemp())  # no user voices: each backend's bundled voice
    first_sentence = REPLY.split(". ")[0] + "."
    print(f"{len(SENTENCES)} sentences ({sum(map(len, SENTENCES))} characters) for the real-time factor and WER; "
          f"reply of {len(TOKENS)} tokens, first sentence {len(first_sentence)} characters, "
          f"tokens at {args.rate:g}/s; {args.runs} runs, min / median; load average at the start "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.\n")
    print(f"| voice | real-time factor | first audio, text at once | first audio at {args.rate:g} tokens/s, "
          "before (clause cut at 80 characters) | first audio at the same rate, first clause | round-trip WER "
          "| load + warm-up |")
    print("|---|---|---|---|---|---|---|")
    heard_by_voice = {}
    for name in VOICES:
        started = time.perf_counter()
        try:
            tts = create_text_to_speech(Config(device="cpu", data_dir=data_dir, tts_backend=name))
        except ModelUnavailableError as exc:
            print(f"| {name} | {exc.message} | | | | | |", flush=True)
            continue
        load = time.perf_counter() - started
        synthesis_rtf(tts)  # untimed: first-call costs belong to `load`
        first_audio(tts, 0, True)
        runs = [synthesis_rtf(tts) for _ in range(args.runs)]
        error_rate, heard_by_voice[name] = round_trip_wer(runs[0][1], whisper)
        at_once = [first_audio(tts, 0, True) for _ in range(args.runs)]
        whole = [first_audio(tts, args.rate, False) for _ in range(args.runs)]
        clause = [first_audio(tts, args.rate, True) for _ in range(args.runs)]
        print(f"| {name} | {cell([r for r, _ in runs], 1, 3, '')} | {cell(at_once)} | {cell(whole)} | "
              f"{cell(clause)} | {error_rate:.1%} | {load:.2f} s |", flush=True)
    if args.show_heard:
        for name, heard in heard_by_voice.items():
            print(f"\n{name} heard:")
            for said, text in zip(SENTENCES, heard):
                print(f"- {said!r} -> {text!r}")


if __name__ == "__main__":
    main()
