"""Voice mode: from the end of the person's speech to the first audio of the answer.

A conversation of --turns spoken questions about camera frames, through the app's own
voice socket (mmchat.voice.websocket, served by uvicorn on loopback in this process,
as `python app.py` serves it: Silero VAD end of turn, streaming Whisper tiny.en, the
camera frame as a photo, the turn layer, the speech worker), with the trained
shapes-vlm answering and each voice in --voices speaking. A WebSocket client plays the
page: it sends the microphone in real time, as the page's script does (48 kHz, 20 ms
chunks, silence between questions, never stopping) and a camera frame (JPEG) before
each question, and gets the answer on the same socket (its words, audio and timings);
each question is asked once the last answer's audio has all been played, as a person
would.

Per turn, seconds from the end of the speech (its last sound, as the client sent it):
- end of turn: the socket said the question ended (the end-of-turn silence, default
  600 ms, plus any hold after a trailing "and"/"um");
- transcript, first token, first audio: the turn's own timings (from the end of the
  speech as the server received it, the same clock give or take a chunk);
- first audio received: the answer's first audio reached the client.
p50 and p95 over the counted turns (a first, uncounted question warms everything up),
and the 10th turn's own figures.

Barge-in (--barge-ins): a long answer (the tiny Qwen3-VL fixture, told never to stop)
is being spoken when another voice says something; seconds from that speech's first
sound entering the microphone to the page being told to stop its audio (the socket's
barge_in), to the model's generation having ended (its thread gone), and to the whole
answer having ended (speech worker stopped too: its done).

    .venv/bin/python bench/voice_latency.py [--turns 20] [--voices piper,hibari] [--barge-ins 10]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import random
import struct
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
from test_api_support import LiveServer  # noqa: E402
from ws_client import WebSocketClient  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine import GenerationParams  # noqa: E402
from mmchat.engine.local import create_local_engine  # noqa: E402
from mmchat.model_handle import ModelHandle  # noqa: E402
from mmchat.store.legacy import ConversationStore  # noqa: E402
from mmchat.turn.session import ChatSession  # noqa: E402
from mmchat.stt import create_speech_to_text  # noqa: E402
from mmchat.tts import create_text_to_speech  # noqa: E402
from mmchat.turn import Services, Speech  # noqa: E402
from mmchat.voice.loop import VoiceLoop  # noqa: E402
from mmchat.voice.websocket import ANSWER_AUDIO, AUDIO, FRAME, VoiceLoops  # noqa: E402

MIC_RATE = 48_000
CHUNK = MIC_RATE // 50  # 20 ms, as the page's script sends them
# Questions shapes-vlm answers in a word, in tiny.en's spelling.
QUESTIONS = ["What color is the shape?", "How many shapes are there?", "What shape is it?",
             "What is written in the image?"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]
STAGES = ("end of turn", "transcript", "first token", "first audio", "first audio received")


class Page:
    """The page's side of the voice socket: the microphone played in real time (silence when
    nothing is said), and every message received, time-stamped (time.monotonic())."""

    def __init__(self, url: str) -> None:
        self.client = WebSocketClient(url, timeout=300)
        self.client.send_text(json.dumps({"type": "hello", "sample_rate": MIC_RATE}))
        self.waiting: queue.Queue[tuple[np.ndarray, dict[str, int]]] = queue.Queue()
        self.marks: queue.Queue[tuple[str, float]] = queue.Queue()  # when a marked sample was "recorded"
        self.received: queue.Queue[tuple[float, object]] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._speak, name="bench-microphone", daemon=True),
                         threading.Thread(target=self._read, name="bench-page", daemon=True)]
        for thread in self._threads:
            thread.start()

    def say(self, audio: np.ndarray, **marks: int) -> None:
        """Queue `audio`; for each mark (a sample index), note when that sample is played."""
        self.waiting.put((audio, marks))

    def frame(self, picture) -> None:
        jpeg = io.BytesIO()
        picture.convert("RGB").resize((240, 240)).save(jpeg, format="JPEG", quality=85)
        self.client.send_bytes(bytes([FRAME]) + jpeg.getvalue())

    def mark(self, name: str) -> float:
        got, at = self.marks.get(timeout=60)
        assert got == name, (got, name)
        return at

    def until(self, kind: str, turn: int | None = None, timeout: float = 120) -> list[tuple[float, object]]:
        """Messages received up to the first of `kind` (of `turn`), that one included."""
        seen = []
        while True:
            at, message = self.received.get(timeout=timeout)
            seen.append((at, message))
            if isinstance(message, dict) and message["type"] == kind and turn in (None, message.get("turn")):
                return seen

    def _speak(self) -> None:
        pending, marks, sent, next_at = np.zeros(0, np.float32), {}, 0, time.monotonic()
        while not self._stop.is_set():
            if not len(pending):
                try:
                    (pending, marks), sent = self.waiting.get_nowait(), 0
                except queue.Empty:
                    pending, marks, sent = np.zeros(CHUNK, np.float32), {}, 0
            chunk, pending = pending[:CHUNK], pending[CHUNK:]
            self.client.send_bytes(bytes([AUDIO]) + (np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes())
            now = time.monotonic()
            for name, index in marks.items():
                if sent <= index < sent + len(chunk):  # "recorded" over the chunk before it is sent (now)
                    self.marks.put((name, now - (sent + len(chunk) - index) / MIC_RATE))
            sent += len(chunk)
            next_at += CHUNK / MIC_RATE
            time.sleep(max(next_at - time.monotonic(), 0.0))

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.client.receive()
            except Exception:  # noqa: BLE001 - closed
                return
            at = time.monotonic()
            if isinstance(message, bytes):
                assert message[0] == ANSWER_AUDIO
                turn, rate = struct.unpack_from("<II", message, 1)
                self.received.put((at, ("audio", turn, (len(message) - 9) / 2 / rate)))
            else:
                self.received.put((at, json.loads(message)))

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._threads[0].join(5)
        self.client.close()


def _audio(messages) -> list[tuple[float, tuple]]:
    return [(at, m) for at, m in messages if isinstance(m, tuple)]


def _voice_mode(config: Config, services: Services, params: GenerationParams, speech):
    """Every session's voice mode, with one session's open; (VoiceLoops, its token, its loop)."""
    loops = VoiceLoops(lambda session: VoiceLoop(session, services))
    session = ChatSession(ConversationStore(config.data_dir))
    token = loops.open(session)
    loop = loops.get(session)
    loop.answer_with = (params, speech)
    return loops, token, loop


def run_voice(voice: str, turns: int, engine, stt, folder: Path, seed: int) -> list[dict[str, float]]:
    config = Config(model=str(shapes_vlm_path()), device="cpu", data_dir=folder / voice, tts_backend=voice,
                    speech_language="en", max_new_tokens=8, temperature=0.0)
    tts = create_text_to_speech(config)
    services = Services(config, ModelHandle.ready(engine, "model"), ModelHandle.ready(stt, "speech recognizer"),
                        lambda speech: tts)
    loops, token, loop = _voice_mode(config, services, GenerationParams(max_new_tokens=8, temperature=0.0), Speech())
    rng = random.Random(seed)
    said = {text: espeak(text, folder, rate=MIC_RATE) for text in QUESTIONS}
    results = []
    with LiveServer(services, None, loops) as server, Page(f"ws://127.0.0.1:{server.port}/voice/{token}") as page:
        for turn in range(turns + 1):  # the first one warms up
            page.frame(draw_test_image(rng.choice(SHAPES), rng.choice(COLOURS), count=rng.randint(1, 3)))
            question = np.concatenate([np.zeros(MIC_RATE // 4, np.float32), said[rng.choice(QUESTIONS)]])
            page.say(question, end=len(question) - 1)
            messages = page.until("done")
            speech_end = page.mark("end")
            done = messages[-1][1]
            if done["status"] != "complete":
                raise RuntimeError(f"turn {turn} did not complete: {done}")
            heard_at = next(at for at, m in messages if isinstance(m, dict) and m["type"] == "heard")
            audio = _audio(messages)
            if turn:
                timings = done["timings"]
                results.append({"end of turn": heard_at - speech_end, "transcript": timings["transcript"],
                                "first token": timings["first_token"],
                                "first audio": timings.get("first_audio", float("nan")),
                                "first audio received": audio[0][0] - speech_end if audio else float("nan")})
            time.sleep(sum(m[2] for _, m in audio))  # the person listens to the answer before the next question
    loops.close(loop.session)
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
    long = (GenerationParams(max_new_tokens=2000, temperature=1.0), Speech())
    loops, token, loop = _voice_mode(config, services, *long)
    question = espeak(QUESTIONS[0], folder, rate=MIC_RATE)
    interruption = espeak("Wait, what is this one?", folder, rate=MIC_RATE)  # trimmed: its sound starts at once
    lead = np.zeros(MIC_RATE // 4, np.float32)
    results = []
    with LiveServer(services, None, loops) as server, Page(f"ws://127.0.0.1:{server.port}/voice/{token}") as page:
        for _ in range(count):
            page.say(np.concatenate([lead, question]))
            number = page.until("heard")[-1][1]["turn"]
            page.until("text", number)  # answering
            while not _audio(page.until("text", number)):
                pass  # until it is spoken
            time.sleep(1.0)  # well into the spoken answer
            generating = next((t for t in threading.enumerate() if t.name == "mmchat-generate"), None)
            page.say(np.concatenate([lead, interruption]), onset=len(lead))
            onset = page.mark("onset")
            told = page.until("barge_in")[-1][0]
            loop.answer_with = (GenerationParams(max_new_tokens=4, temperature=0.0), None)  # for the interruption
            if generating is not None:
                generating.join(30)
            generated = time.monotonic()
            ended = page.until("done", number)[-1][0]
            results.append((told - onset, generated - onset, ended - onset))
            page.until("done", number + 1)  # the interruption is a question too, answered briefly
            loop.answer_with = long
            time.sleep(1.0)
    loops.close(loop.session)
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
          f"{Config().end_of_turn_ms} ms, over the voice socket; seconds from the end of speech, p50 / p95, "
          f"and the 10th turn; load average {_load()} at the start\n")
    print("| voice | " + " | ".join(STAGES) + " | 10th turn: first audio received |")
    print("|---|" + "---|" * (len(STAGES) + 1))
    with tempfile.TemporaryDirectory() as folder:
        for voice in args.voices.split(","):
            results = run_voice(voice, args.turns, engine, stt, Path(folder), args.seed)
            cells = [f"{percentile([r[s] for r in results], 0.5):.2f} / {percentile([r[s] for r in results], 0.95):.2f}"
                     for s in STAGES]
            tenth = f"{results[9]['first audio received']:.2f}" if len(results) >= 10 else "–"
            print(f"| {voice} | " + " | ".join(cells) + f" | {tenth} |", flush=True)
        if args.barge_ins:
            voice = args.voices.split(",")[0]
            stops = run_barge_ins(args.barge_ins, voice, stt, Path(folder))
            print(f"\nBarge-in, {len(stops)} times ({voice} speaking a long answer of the tiny Qwen3-VL fixture); "
                  "seconds from the first sound of the interruption, min / p50 / p95:\n")
            print("| page told to stop its audio | generation ended | answer ended (done) |\n|---|---|---|")
            cells = []
            for index in (0, 1, 2):
                values = [stop[index] for stop in stops]
                cells.append(f"{min(values):.2f} / {percentile(values, 0.5):.2f} / {percentile(values, 0.95):.2f}")
            print("| " + " | ".join(cells) + " |")
    print(f"\nLoad average {_load()} at the end")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
