"""Voice mode: from the end of the person's speech to the first audio of the answer.

A conversation of --turns spoken questions about camera frames, through the app's own
voice loop (mmchat.voice.loop.VoiceLoop: Silero VAD end of turn, streaming Whisper
tiny.en, the camera frame as a photo, the turn layer, the speech worker), with the
trained shapes-vlm answering and each voice in --voices speaking. A feeder thread plays
the microphone in real time, as the page streams it (48 kHz, 20 ms chunks, silence
between questions, never stopping); each question is asked once the last answer's audio
is all out, as a person would.

Per turn, seconds from the end of the speech (as the server received it):
- end of turn: the question was declared ended (the end-of-turn silence, default 600 ms,
  plus any hold after a trailing "and"/"um");
- transcript: its words are known;
- first token, first audio: of the answer.
p50 and p95 over the counted turns (a first, uncounted question warms everything up),
and the 10th turn's own figures.

Barge-in (--barge-ins): a long answer (the tiny Qwen3-VL fixture, told never to stop)
is being spoken when another voice says something; seconds from that speech's first
sound entering the microphone to the page being told to stop its audio, to the model's
generation having ended (its thread gone), and to the whole answer having ended (speech
worker stopped too: its TurnDone).

    .venv/bin/python bench/voice_latency.py [--turns 20] [--voices piper,hibari] [--barge-ins 10]
"""

from __future__ import annotations

import argparse
import queue
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixture_models import draw_test_image, shapes_vlm_path  # noqa: E402
from speech import espeak  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine import GenerationParams  # noqa: E402
from mmchat.engine.local import create_local_engine  # noqa: E402
from mmchat.events import AudioChunk, TurnDone  # noqa: E402
from mmchat.model_handle import ModelHandle  # noqa: E402
from mmchat.store.legacy import ConversationStore  # noqa: E402
from mmchat.turn.session import ChatSession  # noqa: E402
from mmchat.stt import create_speech_to_text  # noqa: E402
from mmchat.tts import create_text_to_speech  # noqa: E402
from mmchat.turn import Services, Speech  # noqa: E402
from mmchat.voice.loop import VoiceLoop  # noqa: E402

MIC_RATE = 48_000
CHUNK = MIC_RATE // 50  # 20 ms, as the page's script sends them
# Questions shapes-vlm answers in a word, in tiny.en's spelling.
QUESTIONS = ["What color is the shape?", "How many shapes are there?", "What shape is it?",
             "What is written in the image?"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]
STAGES = ("end of turn", "transcript", "first token", "first audio")


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

        self.onsets: queue.Queue[float] = queue.Queue()  # when a said clip's first sound was played
        self.barge_ins: queue.Queue[float] = queue.Queue()  # when a chunk told the page to stop talking

    def say(self, audio: np.ndarray, onset: int | None = None) -> None:
        """Queue `audio`; with `onset` (its first sound, in samples), note when that is played."""
        self.waiting.put((audio, onset))

    def _run(self) -> None:
        pending = np.zeros(0, np.float32)
        onset = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not len(pending):
                try:
                    pending, onset = self.waiting.get_nowait()
                except queue.Empty:
                    pending, onset = np.zeros(CHUNK, np.float32), None
            chunk, pending = pending[:CHUNK], pending[CHUNK:]
            if onset is not None and onset < len(chunk):
                # The chunk is "recorded" over the CHUNK before it is handed over (now).
                self.onsets.put(time.monotonic() - (len(chunk) - onset) / MIC_RATE)
            onset = None if onset is None or onset < len(chunk) else onset - len(chunk)
            heard = self.loop.hear(MIC_RATE, chunk)
            if heard.barged_in:
                self.barge_ins.put(time.monotonic())
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
    said = {text: espeak(text, folder, rate=MIC_RATE) for text in QUESTIONS}
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


def run_barge_ins(count: int, voice: str, stt, folder: Path) -> list[tuple[float, float, float]]:
    """(to the page told to stop, to generation ended, to the answer ended) per barge-in,
    seconds from the first sound."""
    from fixture_models import fixture_model_path

    engine = create_local_engine(Config(model=str(fixture_model_path("tiny-qwen3-vl")), device="cpu",
                                        quantization="none"))
    engine.model.generation_config.eos_token_id = None  # an answer that goes on until stopped
    config = Config(device="cpu", data_dir=folder / "barge", tts_backend=voice, speech_language="en")
    tts = create_text_to_speech(config)
    services = Services(config, ModelHandle.ready(engine, "model"), ModelHandle.ready(stt, "speech recognizer"),
                        lambda speech: tts)
    loop = VoiceLoop(ChatSession(ConversationStore(config.data_dir)), services)
    microphone = Microphone(loop)
    question = espeak(QUESTIONS[0], folder, rate=MIC_RATE)
    interruption = espeak("Wait, what is this one?", folder, rate=MIC_RATE)  # trimmed: its sound starts at once
    lead = MIC_RATE // 4
    results = []
    try:
        for _ in range(count):
            microphone.say(np.concatenate([np.zeros(lead, np.float32), question]))
            number, _, _ = microphone.heard.get(timeout=60)
            events: list = []
            speaking = threading.Event()

            def answer() -> None:
                for event in loop.answer(number, GenerationParams(max_new_tokens=2000, temperature=1.0), Speech()):
                    events.append((time.monotonic(), event))
                    if isinstance(event, AudioChunk):
                        speaking.set()

            thread = threading.Thread(target=answer, name="bench-answer")
            thread.start()
            if not speaking.wait(60):
                raise RuntimeError("the answer was never spoken")
            time.sleep(1.0)  # well into the spoken answer
            generating = next((t for t in threading.enumerate() if t.name == "mmchat-generate"), None)
            microphone.say(np.concatenate([np.zeros(lead, np.float32), interruption]), onset=lead)
            onset = microphone.onsets.get(timeout=30)
            told = microphone.barge_ins.get(timeout=30)
            if generating is not None:
                generating.join(30)
            generated = time.monotonic()
            thread.join(30)
            ended = next(at for at, event in events if isinstance(event, TurnDone))
            results.append((told - onset, generated - onset, ended - onset))
            # The interruption is a question too: answer it briefly and let the line go quiet.
            number, _, _ = microphone.heard.get(timeout=60)
            for _event in loop.answer(number, GenerationParams(max_new_tokens=4, temperature=0.0), None):
                pass
            time.sleep(1.0)
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
    parser.add_argument("--barge-ins", type=int, default=10, help="interruptions of a long spoken answer (0: none)")
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
        if args.barge_ins:
            voice = args.voices.split(",")[0]
            stops = run_barge_ins(args.barge_ins, voice, stt, Path(folder))
            print(f"\nBarge-in, {len(stops)} times ({voice} speaking a long answer of the tiny Qwen3-VL fixture); "
                  "seconds from the first sound of the interruption, min / p50 / p95:\n")
            print("| page told to stop its audio | generation ended | answer ended (TurnDone) |\n|---|---|---|")
            cells = []
            for index in (0, 1, 2):
                values = [stop[index] for stop in stops]
                cells.append(f"{min(values):.2f} / {percentile(values, 0.5):.2f} / {percentile(values, 0.95):.2f}")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
