"""Voice mode: from the end of the person's speech to the first audio of the answer.

A conversation of --turns spoken questions about camera frames, through the app's own
voice loop (mmchat.voice.loop.VoiceLoop: Silero VAD end of turn, streaming Whisper
tiny.en, the camera frame as a photo, the turn layer, the speech worker), with the
trained shapes-vlm answering and each voice in --voices speaking. A feeder thread plays
the microphone in real time, as the page streams it (48 kHz, 100 ms chunks, silence
between questions, never stopping); each question is asked once the last answer's audio
is all out, as a person would.

Per turn, seconds from the end of the speech (as the server received it):
- end of turn: the question was declared ended (the end-of-turn silence, default 600 ms,
  plus any hold after a trailing "and"/"um");
- transcript: its words are known;
- first token, first audio: of the answer.
p50 and p95 over the counted turns (a first, uncounted question warms everything up),
and the 10th turn's own figures.

    .venv/bin/python bench/voice_latency.py [--turns 20] [--voices piper,hibari]
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixture_models import draw_test_image, shapes_vlm_path  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine import GenerationParams  # noqa: E402
from mmchat.engine.local import create_local_engine  # noqa: E402
from mmchat.events import AudioChunk, TurnDone  # noqa: E402
from mmchat.model_handle import ModelHandle  # noqa: E402
from mmchat.session import ChatSession, ConversationStore  # noqa: E402
from mmchat.stt import create_speech_to_text  # noqa: E402
from mmchat.tts import create_text_to_speech  # noqa: E402
from mmchat.turn import Services, Speech  # noqa: E402
from mmchat.voice.loop import VoiceLoop  # noqa: E402

MIC_RATE = 48_000
CHUNK = MIC_RATE // 10
# Questions shapes-vlm answers in a word, in tiny.en's spelling.
QUESTIONS = ["What color is the shape?", "How many shapes are there?", "What shape is it?",
             "What is written in the image?"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]
STAGES = ("end of turn", "transcript", "first token", "first audio")


def spoken(text: str, folder: Path) -> np.ndarray:
    raw, wav = folder / "raw.wav", folder / "said.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-b", "32", "-e", "floating-point", "-r", str(MIC_RATE), str(wav)], check=True)
    return sf.read(wav, dtype="float32")[0]


class Microphone:
    """Plays queued audio into the loop in real time, and silence when there is none."""

    def __init__(self, loop: VoiceLoop) -> None:
        self.loop = loop
        self.waiting: queue.Queue[np.ndarray] = queue.Queue()
        # (turn number, its end of speech, when it was declared ended), all time.monotonic()
        self.heard: queue.Queue[tuple[int, float, float]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-microphone", daemon=True)
        self._thread.start()

    def say(self, audio: np.ndarray) -> None:
        self.waiting.put(audio)

    def _run(self) -> None:
        pending = np.zeros(0, np.float32)
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not len(pending):
                try:
                    pending = self.waiting.get_nowait()
                except queue.Empty:
                    pending = np.zeros(CHUNK, np.float32)
            chunk, pending = pending[:CHUNK], pending[CHUNK:]
            heard = self.loop.hear(MIC_RATE, chunk)
            if heard.turn is not None:
                self.heard.put((heard.turn, heard.speech_ended_at, time.monotonic()))
            next_at += CHUNK / MIC_RATE
            time.sleep(max(next_at - time.monotonic(), 0.0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def run_voice(voice: str, turns: int, engine, stt, folder: Path, seed: int) -> list[dict[str, float]]:
    config = Config(model=str(shapes_vlm_path()), device="cpu", data_dir=folder / voice, tts_backend=voice,
                    speech_language="en", max_new_tokens=8, temperature=0.0)
    tts = create_text_to_speech(config)
    services = Services(config, ModelHandle.ready(engine, "model"), ModelHandle.ready(stt, "speech recognizer"),
                        lambda speech: tts)
    loop = VoiceLoop(ChatSession(ConversationStore(config.data_dir)), services)
    microphone = Microphone(loop)
    rng = random.Random(seed)
    said = {text: spoken(text, folder) for text in QUESTIONS}
    results = []
    try:
        for turn in range(turns + 1):  # the first one warms up
            frame = draw_test_image(rng.choice(SHAPES), rng.choice(COLOURS), count=rng.randint(1, 3))
            loop.see(np.asarray(frame.convert("RGB").resize((240, 240))))
            microphone.say(np.concatenate([np.zeros(MIC_RATE // 4, np.float32), said[rng.choice(QUESTIONS)]]))
            number, speech_end, declared = microphone.heard.get(timeout=60)
            spoken_for = 0.0
            done = None
            for event in loop.answer(number, GenerationParams(max_new_tokens=8, temperature=0.0), Speech()):
                if isinstance(event, AudioChunk):
                    spoken_for += event.duration
                elif isinstance(event, TurnDone):
                    done = event
            if done is None or done.status != "complete":
                raise RuntimeError(f"turn {turn} did not complete: {done}")
            if turn:
                timings = done.timings
                results.append({"end of turn": declared - speech_end, "transcript": timings["transcript"],
                                "first token": timings["first_token"],
                                "first audio": timings.get("first_audio", float("nan"))})
            time.sleep(spoken_for)  # the person listens to the answer before the next question
    finally:
        microphone.close()
        loop.close()
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(round(q * (len(ordered) - 1))), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20, help="counted questions per voice (after one warm-up)")
    parser.add_argument("--voices", default="piper,hibari", help="comma-separated TTS backends")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    engine = create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))
    stt = create_speech_to_text(Config(device="cpu", stt_backend="faster-whisper", speech_language="en"))
    print(f"{args.turns} turns per voice, shapes-vlm (fp32, CPU), Whisper tiny.en, end of turn "
          f"{Config().end_of_turn_ms} ms; seconds from the end of speech, p50 / p95, and the 10th turn\n")
    print("| voice | " + " | ".join(STAGES) + " | 10th turn: first audio |")
    print("|---|" + "---|" * (len(STAGES) + 1))
    with tempfile.TemporaryDirectory() as folder:
        for voice in args.voices.split(","):
            results = run_voice(voice, args.turns, engine, stt, Path(folder), args.seed)
            cells = [f"{percentile([r[s] for r in results], 0.5):.2f} / {percentile([r[s] for r in results], 0.95):.2f}"
                     for s in STAGES]
            tenth = f"{results[9]['first audio']:.2f}" if len(results) >= 10 else "–"
            print(f"| {voice} | " + " | ".join(cells) + f" | {tenth} |", flush=True)


if __name__ == "__main__":
    main()
