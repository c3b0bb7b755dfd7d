"""Does speech hold up the text? The real turn loop, speech on and off, side by side.

An engine that writes a fixed reply at a fixed token rate answers through
`mmchat.turn.submit`, exactly as the page drives it, with the bundled Piper voice.
The engine behaves like the real one, which generates in its own thread: token i is
ready at `i / rate` seconds after the first, whether or not anyone is reading, so a
consumer that was held up finds the late tokens waiting and gets them in a burst.

Measured on the consumer's side of the turn's event stream, from the moment the
engine wrote its first token:
- first audio: when the first AudioChunk arrives;
- longest text gap: the longest time between two consecutive TextDelta events
  (the goal: speech on adds no gap longer than one token's time, 1 / rate);
- text finished: when the last TextDelta arrives (the engine itself is done at
  (tokens - 1) / rate).

`--worker` adds rows for `mmchat.tts.worker.SpeechWorker` driven directly, without
turn.py: the consumer feeds each token to the worker as it reads it, and the
worker's `emit` notes when audio exists. That is the worker's own behaviour; the
turn-loop rows are the ones that count.

    .venv/bin/python bench/speech_pause.py [--runs 5] [--rate 30] [--worker]
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
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmchat.cancel import CancelToken  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine import Completion, GenerationParams  # noqa: E402
from mmchat.events import AudioChunk, TextDelta, TurnDone  # noqa: E402
from mmchat.model_handle import ModelHandle  # noqa: E402
from mmchat.store.legacy import ConversationStore  # noqa: E402
from mmchat.turn.session import ChatSession  # noqa: E402
from mmchat.tts import TextToSpeech, create_text_to_speech  # noqa: E402
from mmchat.turn import Services, Speech, UserInput, submit  # noqa: E402

REPLY = """The photo shows a quiet harbour at dusk, with a dozen small fishing boats tied up \
along a wooden pier. The water is calm, so the boats and the lamps on the pier are mirrored \
almost perfectly.

- On the left, two men are unloading crates from a blue boat.
- In the middle, a white cat sits on a coil of rope and watches them.
- On the right, the lights of a small café are just coming on.

The sky is orange near the horizon and deep blue above it, which suggests the photo was \
taken a few minutes after sunset. If you like, I can guess where it was taken, or describe \
any part of it in more detail."""

# Word-sized pieces with their leading space, about what an LLM tokenizer emits.
TOKENS = re.findall(r"\s*[\w']+|\s*[^\w\s]|\s+", REPLY)


class PacedEngine:
    """Writes `TOKENS` at `rate` tokens a second, on the clock, as a threaded engine does."""

    name = "paced"

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.first_token: float | None = None  # perf_counter() when token 0 was written

    def count_tokens(self, messages: list[dict]) -> int:
        return sum(len(str(m.get("content", ""))) for m in messages) // 4

    def stream(self, messages, params, cancel: CancelToken) -> Iterator[str | Completion]:
        start = time.perf_counter()
        self.first_token = start
        written = 0
        for i, token in enumerate(TOKENS):
            if cancel.cancelled:
                break
            time.sleep(max(0.0, start + i / self.rate - time.perf_counter()))
            written += 1
            yield token
        yield Completion("cancelled" if cancel.cancelled else "stop", 0, written, 0.0)


@dataclass(frozen=True)
class Run:
    first_audio: float | None  # seconds after the first token; None: no audio
    longest_gap: float  # seconds between two TextDelta events
    text_done: float  # seconds after the first token, when the last TextDelta arrived
    audio_seconds: float  # of speech produced


def _summary(times: list[float], first: float, audio: list[tuple[float, float]]) -> Run:
    gaps = [b - a for a, b in zip(times, times[1:])]
    return Run(
        first_audio=(audio[0][0] - first) if audio else None,
        longest_gap=max(gaps),
        text_done=times[-1] - first,
        audio_seconds=sum(duration for _, duration in audio),
    )


def run_turn(voice: TextToSpeech, rate: float, speak: bool, data_dir: Path) -> Run:
    """One answer through `submit`, timed at the consumer."""
    engine = PacedEngine(rate)
    config = Config(device="cpu", data_dir=data_dir, stt_backend="none", tts_backend="piper")
    services = Services(config=config, engine=ModelHandle.ready(engine), tts=lambda speech: voice)
    session = ChatSession(ConversationStore(data_dir))
    text_times: list[float] = []
    audio: list[tuple[float, float]] = []
    done = None
    for event in submit(session, UserInput("What is in the photo?"), services, GenerationParams(),
                        Speech() if speak else None):
        now = time.perf_counter()
        if isinstance(event, TextDelta):
            text_times.append(now)
        elif isinstance(event, AudioChunk):
            audio.append((now, event.duration))
        elif isinstance(event, TurnDone):
            done = event
    if done is None or done.status != "complete" or done.text != REPLY:
        raise RuntimeError(f"the turn did not complete as written: {done}")
    return _summary(text_times, engine.first_token, audio)


def run_worker(voice: TextToSpeech, rate: float, speak: bool) -> Run:
    """The same reply fed straight to a SpeechWorker by a consumer loop, no turn.py."""
    from mmchat.tts.worker import SpeechWorker

    engine = PacedEngine(rate)
    cancel = CancelToken.standalone()
    audio: list[tuple[float, float]] = []
    worker = SpeechWorker(voice, cancel, lambda chunk: audio.append((time.perf_counter(), chunk.duration))) \
        if speak else None
    text_times: list[float] = []
    try:
        for piece in engine.stream([], GenerationParams(), cancel):
            if isinstance(piece, str):
                text_times.append(time.perf_counter())
                if worker:
                    worker.feed(piece)
        if worker:
            worker.finish()
            if not worker.join(timeout=120):
                raise RuntimeError("the speech worker did not finish")
            if worker.error:
                raise RuntimeError("the speech worker failed") from worker.error
    finally:
        if worker:
            worker.close()
    return _summary(text_times, engine.first_token, audio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=30.0, help="tokens per second the engine writes")
    parser.add_argument("--worker", action="store_true", help="also drive SpeechWorker directly (no turn.py)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp())  # no user voices: the bundled Piper voice
    started = time.perf_counter()
    voice = create_text_to_speech(Config(device="cpu", data_dir=data_dir / "voice"))
    load = time.perf_counter() - started

    ways = [("turn loop", lambda speak: run_turn(voice, args.rate, speak, data_dir))]
    if args.worker:
        ways.append(("worker alone", lambda speak: run_worker(voice, args.rate, speak)))
    for _, run in ways:
        run(True)  # untimed: first-call costs (espeak, ONNX, imports) are not steady state

    print(f"Reply: {len(REPLY)} characters, {len(TOKENS)} tokens at {args.rate:g} tokens/s: one token every "
          f"{1000 / args.rate:.0f} ms, the engine done at {(len(TOKENS) - 1) / args.rate:.2f} s. "
          f"Piper voice loaded and warmed in {load:.2f} s. {args.runs} runs each after one warm-up, "
          "min / median; times from the engine's first token.\n")
    print("| path | speech | first token -> first audio | longest text gap | text finished | speech produced |")
    print("|---|---|---|---|---|---|")
    for name, run in ways:
        for speak in (False, True):
            results = [run(speak) for _ in range(args.runs)]
            firsts = [r.first_audio for r in results if r.first_audio is not None]
            print(
                f"| {name} | {'on' if speak else 'off'} | {_ms(firsts) if firsts else '-'} | "
                f"{_ms([r.longest_gap for r in results])} | {_seconds([r.text_done for r in results])} | "
                f"{statistics.median([r.audio_seconds for r in results]):.1f} s |",
                flush=True,
            )


def _ms(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f} / {statistics.median(values) * 1000:.0f} ms"


def _seconds(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} s"


if __name__ == "__main__":
    main()
