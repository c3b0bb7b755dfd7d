"""What the end-of-turn detector costs, and how long after speech it ends a turn.

A stream of spoken questions (espeak-ng, 48 kHz, each followed by 2 s of silence) is
fed to `mmchat.voice.EndpointDetector` in browser-sized chunks as fast as it will
take them. Measured:
- per-chunk cost: wall time of one `feed` call (resampling + Silero VAD + logic);
- real-time factor: total feed time / seconds of audio fed;
- end of speech -> TurnEnded, in stream time (samples fed, so the same on any CPU):
  from where the voice really stopped (known from how the stream was built) and from
  where the VAD saw it stop (`TurnEnded.speech_end`). It is the silence setting plus
  the VAD's own lag; the wall-clock part is the per-chunk cost on top.
- streaming recognition (Whisper tiny.en, bundled): for one long turn with short
  inner pauses, the wall time `StreamingTranscriber.finish` takes at TurnEnded
  against transcribing the whole turn then. Background pieces are let finish as
  they would in real time (their real-time factor is far below 1), so `finish` has
  only the tail left, as in the live page.

    .venv/bin/python bench/endpoint_latency.py [--runs 5] [--chunk-ms 20 100 500]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmchat.config import Config  # noqa: E402
from mmchat.stt import create_speech_to_text  # noqa: E402
from mmchat.voice import EndpointDetector, EndpointSettings, StreamingTranscriber, TurnEnded  # noqa: E402
from mmchat.voice.endpoint import silero_session  # noqa: E402

RATE = 48_000
QUESTIONS = (
    "What color is the shape?",
    "Is the light red or green?",
    "What is written on the sign?",
    "Describe the picture and tell me the colors.",
    "How many people are in the photo?",
)


def speech(text: str, folder: Path) -> np.ndarray:
    raw, wav = folder / "raw.wav", folder / "q.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-b", "32", "-e", "floating-point", "-r", str(RATE), str(wav)], check=True)
    audio, _ = sf.read(wav, dtype="float32")
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def build_stream() -> tuple[np.ndarray, list[int]]:
    """The stream, and where (in 16 kHz samples) each question's voice ends."""
    pieces, ends, length = [np.zeros(RATE, np.float32)], [], RATE
    with tempfile.TemporaryDirectory() as folder:
        for text in QUESTIONS:
            voice = speech(text, Path(folder))
            pieces += [voice, np.zeros(2 * RATE, np.float32)]
            ends.append((length + len(voice)) // 3)
            length += len(voice) + 2 * RATE
    return np.concatenate(pieces), ends


def run_once(stream: np.ndarray, ends: list[int], chunk_ms: int, settings: EndpointSettings):
    chunk = RATE * chunk_ms // 1000
    detector = EndpointDetector(settings)
    costs, turns = [], []
    for offset in range(0, len(stream), chunk):
        begin = time.perf_counter()
        events = detector.feed(stream[offset : offset + chunk], RATE)
        costs.append(time.perf_counter() - begin)
        turns += [e for e in events if isinstance(e, TurnEnded)]
    if len(turns) != len(ends):
        raise SystemExit(f"expected {len(ends)} turns, got {len(turns)}: the detector misheard the stream")
    from_voice = [(t.at - end) / 16 for t, end in zip(turns, ends)]  # ms
    from_vad = [(t.at - t.speech_end) / 16 for t in turns]
    rtf = sum(costs) / (len(stream) / RATE)
    return costs, rtf, from_voice, from_vad


LONG_TURN = (
    "Look at the photo on the left",
    "and tell me what color the car is",
    "and whether the light is red or green",
    "and what is written on the sign.",
)


def streaming_once(turn_audio: np.ndarray, stt, settings: EndpointSettings) -> tuple[float, float, float]:
    """(finish s, whole s, remainder s of audio) for one long turn."""
    detector, stream = EndpointDetector(settings), StreamingTranscriber(stt, language="en")
    chunk = RATE // 10
    for offset in range(0, len(turn_audio), chunk):
        for event in detector.feed(turn_audio[offset : offset + chunk], RATE):
            if isinstance(event, TurnEnded):
                begin = time.perf_counter()
                stream.finish(event)
                finish = time.perf_counter() - begin
                begin = time.perf_counter()
                stt.transcribe(event.audio, language="en")
                return finish, time.perf_counter() - begin, stream.remainder_samples / 16_000
        stream.update(detector)
        stream.wait_settled()  # real time would have given it this long
    raise SystemExit("the long turn did not end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-ms", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--end-of-turn-ms", type=int, default=EndpointSettings().end_of_turn_ms)
    args = parser.parse_args()
    settings = EndpointSettings(end_of_turn_ms=args.end_of_turn_ms)

    stream, ends = build_stream()
    silero_session()  # model load is start-up cost, not per-chunk cost
    run_once(stream[: RATE * 5], ends[:1], 100, settings)  # warm-up (onnxruntime, the resampler)
    print(f"{len(stream) / RATE:.1f} s of audio, {len(ends)} questions, end of turn {settings.end_of_turn_ms} ms, "
          f"{args.runs} runs; min / median over runs\n")
    print("| chunk | per-chunk ms (median) | per-chunk ms (max) | real-time factor | "
          "voice end -> TurnEnded ms | VAD speech end -> TurnEnded ms |")
    print("|---|---|---|---|---|---|")
    for chunk_ms in args.chunk_ms:
        medians, maxima, rtfs, voice_lag, vad_lag = [], [], [], [], []
        for _ in range(args.runs):
            costs, rtf, from_voice, from_vad = run_once(stream, ends, chunk_ms, settings)
            medians.append(statistics.median(costs) * 1e3)
            maxima.append(max(costs) * 1e3)
            rtfs.append(rtf)
            voice_lag, vad_lag = from_voice, from_vad  # stream time: identical every run

        def cell(values, fmt):
            return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"

        print(f"| {chunk_ms} ms | {cell(medians, '{:.3f}')} | {cell(maxima, '{:.2f}')} | {cell(rtfs, '{:.4f}')} | "
              f"{min(voice_lag):.0f}..{max(voice_lag):.0f} (median {statistics.median(voice_lag):.0f}) | "
              f"{min(vad_lag):.0f}..{max(vad_lag):.0f} |")

    stt = create_speech_to_text(Config(speech_language="en", device="cpu"))
    with tempfile.TemporaryDirectory() as folder:
        pause = np.zeros(int(0.35 * RATE), np.float32)
        parts = [speech(text, Path(folder)) for text in LONG_TURN]
    turn = np.concatenate([np.zeros(RATE // 2, np.float32)] + [x for p in parts for x in (p, pause)]
                          + [np.zeros(2 * RATE, np.float32)])
    streaming_once(turn, stt, settings)  # warm-up
    results = [streaming_once(turn, stt, settings) for _ in range(args.runs)]
    finish, whole, remainder = zip(*results)
    print(f"\nStreaming recognition, one {len(turn) / RATE - 2.5:.1f} s turn with 350 ms inner pauses, "
          f"Whisper tiny.en int8 (bundled), {args.runs} runs; min / median\n")
    print("| at TurnEnded | wall s | audio left to transcribe s |")
    print("|---|---|---|")
    print(f"| whole turn at once | {min(whole):.3f} / {statistics.median(whole):.3f} | {len(turn) / RATE - 2.0:.1f} |")
    print(f"| StreamingTranscriber.finish | {min(finish):.3f} / {statistics.median(finish):.3f} | "
          f"{statistics.median(remainder):.1f} |")


if __name__ == "__main__":
    main()
