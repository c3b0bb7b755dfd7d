"""How soon the voice starts, and how fast it speaks, per text-to-speech backend.

A realistic markdown reply is fed token by token through SentenceSplitter +
to_speakable + TextToSpeech.stream, exactly as the turn loop does. Measured:
- first audio: from the first text token to the first audio chunk (its first sample);
  with tokens arriving at once (the speech pipeline's own latency) and at a typical
  streaming rate (what a listener waits, given the model's speed);
- real-time factor: synthesis seconds per second of speech (below 1 is faster than
  speech), from the runs where tokens arrive at once.
Loading (and warming) the voice is reported on its own, as it happens once.

    python bench/tts_latency.py [--runs 5] [--rates 0 30]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmchat.cancel import CancelToken  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.errors import ModelUnavailableError  # noqa: E402
from mmchat.tts import SpeakableSentences, TextToSpeech, create_text_to_speech  # noqa: E402

REPLY = """The photo shows two cats curled up together on a red sofa, with afternoon light coming \
through the window behind them. The one on the **left** is a tabby; the other is black with white paws.

- The tabby seems to be asleep.
- The black cat is looking straight at the camera.

If you want to crop out just one of them, I can explain how. Dr. Lee's guide at \
https://example.com/cats covers it in 3.5 minutes."""

# Word-sized pieces with their leading space, about what an LLM tokenizer emits.
TOKENS = re.findall(r"\s*[\w']+|\s*[^\w\s]|\s+", REPLY)


@dataclass(frozen=True)
class Run:
    first_audio: float  # seconds from the first token to the first chunk
    elapsed: float  # seconds from the first token to the last chunk
    audio: float  # seconds of speech produced


def run_once(tts: TextToSpeech, tokens_per_second: float) -> Run:
    text = SpeakableSentences()
    start = time.perf_counter()

    def sentences():
        for i, token in enumerate(TOKENS):
            if tokens_per_second:
                time.sleep(max(0.0, start + i / tokens_per_second - time.perf_counter()))
            yield from text.feed(token)
        yield from text.flush()

    first_audio = None
    audio = 0.0
    for chunk in tts.stream(sentences(), CancelToken.standalone()):
        if first_audio is None:
            first_audio = time.perf_counter() - start
        audio += chunk.duration
    return Run(first_audio or float("nan"), time.perf_counter() - start, audio)


def bench(name: str, config: Config, runs: int, rates: list[float]) -> list[str]:
    started = time.perf_counter()
    try:
        tts = create_text_to_speech(config)
    except ModelUnavailableError as exc:
        reason = "not installed" if "pip install" in exc.message else exc.message
        return [f"| {name} | {reason} | | | | |"]
    load = time.perf_counter() - started
    run_once(tts, 0)  # one untimed reply: first-call costs are in `load`, not in the table
    rows = []
    for rate in rates:
        results = [run_once(tts, rate) for _ in range(runs)]
        first = [r.first_audio * 1000 for r in results]
        pace = "at once" if not rate else f"{rate:g} tokens/s"
        cells = [f"{min(first):.0f} / {statistics.median(first):.0f} ms"]
        if rate:
            cells.append("")
        else:
            rtf = [r.elapsed / r.audio for r in results]
            cells.append(f"{min(rtf):.3f} / {statistics.median(rtf):.3f}")
        rows.append(f"| {name} | {pace} | {cells[0]} | {cells[1]} | {load:.2f} s | {runs} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rates", type=float, nargs="+", default=[0, 30], help="tokens per second; 0 = all at once")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp())  # no user voices: the bundled voice for Piper
    print(f"Reply: {len(REPLY)} characters, {len(TOKENS)} tokens.\n")
    print("| backend | tokens arrive | first audio (min / median) | real-time factor (min / median) | load + warm-up | runs |")
    print("|---|---|---|---|---|---|")
    for name in ("piper", "coqui"):
        config = Config(device="cpu", data_dir=data_dir, tts_backend=name)
        for row in bench(name, config, args.runs, args.rates):
            print(row, flush=True)


if __name__ == "__main__":
    main()
