"""Microphone transport for hands-free voice mode: Gradio's streaming microphone against a WebSocket of our own.

Two transports, served side by side by one FastAPI app on a free loopback port (uvicorn
in a thread of this process), both ending in a handler that stamps the wall time when
a chunk arrives:
- ``A gradio``: a minimal gr.Blocks mounted at / with ``gr.Audio(sources=["microphone"],
  streaming=True)`` and ``.stream(..., stream_every=0.1, concurrency_limit=None)``. Its
  page asks for ``getUserMedia({audio: true})``, records WAV (extendable-media-recorder)
  in 0.1 s slices (the frontend forces 0.1 whatever stream_every says), uploads each
  slice and sends a stream message; the handler gets ``(sample_rate, int16 array)``.
- ``B websocket N ms``: a page of our own (``/b``) that asks for echoCancellation,
  noiseSuppression and autoGainControl, feeds the track into an AudioWorklet that cuts
  N ms int16 chunks, and sends them over a WebSocket (``/b/ws``) to the same server.

The microphone: headless Chromium's fake capture device playing a WAV written here
(48 kHz mono 16-bit): silence with 150 ms square-wave bursts, the first at 1.0 s and
then every 1.5 s plus 0..100 ms (so the bursts fall at every phase of a chunk).

The clock: an init script wraps ``navigator.mediaDevices.getUserMedia`` on every page;
when the stream resolves it notes the wall time (``performance.timeOrigin + now()``,
the same clock as the server's ``time.time()``) and the track's settings: that is the
capture start. It also reads a clone of the track with MediaStreamTrackProcessor,
whose frames carry Chromium's own capture timestamps (on the page's performance
clock), and notes the stamp of each burst's first loud sample: when the capture took
it in, whatever the file's alignment. Chromium's fake device mostly starts the file
with the capture (stamps within about 30 ms of capture start + offset, the
calibration table), but on a busy machine it has started it over a second late, so
the stamps are the reference.

Latency: server arrival of the chunk holding a burst's first loud sample, minus
Chromium's capture stamp of that sample; and, as a cross-check, minus (capture start
+ the burst's offset in the file). It holds the chunking wait, the browser's
encoding and sending, the network hop and the server's own dispatch. A burst whose
start the server never gets (lost audio) is timed from its first loud sample that
does arrive, as a voice detector would hear it; one never heard at all is counted
in "bursts heard". "Audio lost": the capture time between the first and the last
burst heard, less the audio the server got between them. Each run opens a fresh
browser context per transport (so the file plays from its start), records for
``--seconds`` and closes it; the transports take turns, run after run, after one
untimed recording each.

B needs a WebSocket library for uvicorn (``wsproto`` or ``websockets``), which the
app's requirements do not bring; without one B is skipped with a note.

    .venv/bin/python bench/voice_transport.py [--runs 5] [--seconds 12] [--b-chunk-ms 20 100]
                                              [--transports A B] [--warm-up-seconds 3] [--out table.md]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network here, and none wanted in a timing

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
# At module level: FastAPI reads the handlers' (string) annotations from these globals.
from fastapi import FastAPI, WebSocket, WebSocketDisconnect  # noqa: E402
from fastapi.responses import HTMLResponse, Response  # noqa: E402

RATE = 48_000
BURST_S = 0.15
FIRST_BURST_S = 1.0
BURST_EVERY_S = 1.5
LOUD = 0.05  # of full scale; the bursts are 0.3, the silence is digital zero
QUIET_BEFORE_ONSET_S = 0.3  # a loud sample after this much quiet starts a burst
SLACK_S = 0.05  # Chromium's capture stamps run up to ~10 ms ahead of the page's clock
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # as tests/test_browser.py finds it
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--autoplay-policy=no-user-gesture-required"]
SETTINGS = ("echoCancellation", "noiseSuppression", "autoGainControl", "sampleRate", "channelCount")


def make_microphone(path: Path, seconds: float) -> list[float]:
    """Write the fake microphone's file; returns each burst's offset in seconds."""
    audio = np.zeros(int(seconds * RATE), np.float32)
    t = np.arange(int(BURST_S * RATE)) / RATE
    burst = 0.3 * np.sign(np.sin(2 * np.pi * 300 * t))
    offsets, i = [], 0
    while True:
        # The golden-ratio step spreads the phases evenly over 0..100 ms, deterministically.
        offset = FIRST_BURST_S + BURST_EVERY_S * i + 0.1 * ((i * 0.6180339887) % 1.0)
        if offset + BURST_S + 0.5 > seconds:
            break
        start = round(offset * RATE)
        audio[start : start + len(burst)] = burst
        offsets.append(start / RATE)
        i += 1
    sf.write(path, audio, RATE, subtype="PCM_16")
    return offsets


# --- the server ----------------------------------------------------------------------

@dataclass
class Chunk:
    arrival: float  # time.time() when the handler saw it
    rate: int
    samples: np.ndarray  # float, mono


@dataclass
class Arrivals:
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_transport: dict[str, list[Chunk]] = field(default_factory=dict)

    def add(self, transport: str, rate: int, samples: np.ndarray, arrival: float) -> None:
        with self.lock:
            self.by_transport.setdefault(transport, []).append(Chunk(arrival, rate, samples))

    def take(self, transport: str, since: float) -> list[Chunk]:
        # A chunk from the run before (its page closed a moment ago) arrives before this
        # run's capture starts, so `since` keeps it out.
        with self.lock:
            chunks = self.by_transport.pop(transport, [])
        return [c for c in chunks if c.arrival >= since]


def _as_mono_float(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data)
    scale = 32768.0 if data.dtype == np.int16 else 2147483648.0 if data.dtype == np.int32 else 1.0
    data = data.astype(np.float32) / scale
    return np.abs(data).max(axis=1) if data.ndim == 2 else data


WORKLET = """
class PcmChunker extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frames = options.processorOptions.frames;
    this.buffer = new Int16Array(this.frames);
    this.filled = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    let read = 0;
    while (read < channel.length) {
      const n = Math.min(channel.length - read, this.frames - this.filled);
      for (let i = 0; i < n; i++) {
        const v = Math.max(-1, Math.min(1, channel[read + i]));
        this.buffer[this.filled + i] = v < 0 ? v * 32768 : v * 32767;
      }
      this.filled += n;
      read += n;
      if (this.filled === this.frames) {
        this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
        this.buffer = new Int16Array(this.frames);
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("pcm-chunker", PcmChunker);
"""

B_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>B</title></head><body>
<button id="start">Start</button>
<script>
document.getElementById("start").onclick = async () => {
  const chunkMs = Number(new URLSearchParams(location.search).get("chunk_ms") || 20);
  const stream = await navigator.mediaDevices.getUserMedia(
    {audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
  // At the capture rate: no resampling in the page (the fake output device runs at 44.1 kHz).
  const context = new AudioContext(
    {latencyHint: "interactive", sampleRate: stream.getAudioTracks()[0].getSettings().sampleRate});
  await context.audioWorklet.addModule("/b/worklet.js");
  const ws = new WebSocket(`ws://${location.host}/b/ws`);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  ws.send(JSON.stringify({rate: context.sampleRate, chunk_ms: chunkMs}));
  const node = new AudioWorkletNode(context, "pcm-chunker",
    {processorOptions: {frames: Math.round(context.sampleRate * chunkMs / 1000)}});
  node.port.onmessage = (e) => { if (ws.readyState === 1) ws.send(e.data); };
  context.createMediaStreamSource(stream).connect(node);
  node.connect(context.destination);  // its output is silence; being pulled keeps it running
  window.bReady = {contextRate: context.sampleRate, baseLatency: context.baseLatency};
};
</script></body></html>"""


def build_server(arrivals: Arrivals, time_limit: float):
    import gradio as gr

    app = FastAPI()

    @app.get("/b")
    def b_page():
        return HTMLResponse(B_PAGE)

    @app.get("/b/worklet.js")
    def b_worklet():
        return Response(WORKLET, media_type="text/javascript")

    @app.websocket("/b/ws")
    async def b_socket(ws: WebSocket):
        await ws.accept()
        hello = json.loads(await ws.receive_text())
        label, rate = f"B websocket {hello['chunk_ms']} ms", int(hello["rate"])
        try:
            while True:
                data = await ws.receive_bytes()
                arrival = time.time()
                arrivals.add(label, rate, _as_mono_float(np.frombuffer(data, np.int16)), arrival)
        except WebSocketDisconnect:
            pass

    def heard(chunk):
        arrival = time.time()
        if chunk is not None:
            rate, data = chunk
            arrivals.add("A gradio", rate, _as_mono_float(data), arrival)

    with gr.Blocks() as demo:
        mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", elem_id="mic", label="Microphone")
        mic.stream(heard, inputs=mic, outputs=None, stream_every=0.1, time_limit=time_limit,
                   concurrency_limit=None)
    demo.queue()
    return gr.mount_gradio_app(app, demo, path="/")


def websocket_library() -> str | None:
    """What uvicorn can serve WebSockets with here: the project's requirements bring neither."""
    return next((name for name in ("websockets", "wsproto") if importlib.util.find_spec(name)), None)


def serve(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                            ws=websocket_library() or "none"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


# --- the browser ---------------------------------------------------------------------

# Runs in every page before its own scripts, so Gradio's getUserMedia call is the wrapped one.
INIT_SCRIPT = """
(() => {
  const wall = () => performance.timeOrigin + performance.now();
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  window.micCalls = [];
  window.micProbe = {firstStamp: null, onsets: []};
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const called = wall();
    const stream = await original(constraints);
    const resolved = wall();
    const track = stream.getAudioTracks()[0];
    window.micCalls.push({constraints, called, resolved, settings: track.getSettings()});
    if (window.micCalls.length === 1) probe(track.clone());
    return stream;
  };
  // Chromium stamps each captured frame (microseconds on the page's performance clock):
  // the stamp of a burst's first loud sample is when the capture saw it.
  async function probe(track) {
    // A deep queue: Gradio's page stalls its main thread for over 100 ms at a time, and the
    // default queue would drop the very frames that hold a burst's start.
    const reader = new MediaStreamTrackProcessor({track, maxBufferSize: 1000}).readable.getReader();
    let quiet = 1e9;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      const now = wall();
      const rate = value.sampleRate, n = value.numberOfFrames;
      const samples = new Float32Array(n);
      value.copyTo(samples, {planeIndex: 0, format: "f32-planar"});
      const stamp = performance.timeOrigin + value.timestamp / 1000;
      if (window.micProbe.firstStamp === null) window.micProbe.firstStamp = stamp;
      value.close();
      for (let i = 0; i < n; i++) {
        if (Math.abs(samples[i]) > %(loud)s) {
          if (quiet >= %(quiet)s * rate) window.micProbe.onsets.push({stamp: stamp + 1000 * i / rate, seen: now});
          quiet = 0;
        } else quiet++;
      }
    }
  }
})();
""" % {"loud": LOUD, "quiet": QUIET_BEFORE_ONSET_S}


def settle(page, quiet_s: float = 1.0, limit_s: float = 20.0) -> None:
    """Wait until the page has fetched nothing new for `quiet_s`.

    Gradio's audio component loads its WAV recorder after it mounts, and a Record click
    before that fails in the page ("ge is not a constructor") with no sound sent; its
    open event stream keeps Playwright's "networkidle" from ever coming.
    """
    count, since, deadline = -1, time.time(), time.time() + limit_s
    while time.time() < deadline:
        now = page.evaluate("() => performance.getEntriesByType('resource').length")
        if now != count:
            count, since = now, time.time()
        elif time.time() - since >= quiet_s:
            return
        page.wait_for_timeout(100)


def start_gradio(page) -> None:
    # Its Record button has no label or test id of its own: its class is the handle.
    record = page.locator("#mic button.record-button")
    record.wait_for(timeout=30_000)
    record.click()


def start_b(page) -> None:
    page.locator("#start").click()
    page.wait_for_function("() => window.bReady", timeout=30_000)


@dataclass
class Run:
    transport: str
    capture_start: float  # wall s
    settings: dict
    chunks: list[Chunk]
    probe: dict
    error: str = ""


def record_once(browser, base: str, transport: str, arrivals: Arrivals, seconds: float) -> Run:
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(INIT_SCRIPT)
        if transport == "A gradio":
            page.goto(base + "/", wait_until="load", timeout=60_000)
            settle(page)
            start_gradio(page)
        else:
            chunk_ms = int(transport.split()[2])
            page.goto(f"{base}/b?chunk_ms={chunk_ms}", wait_until="load", timeout=60_000)
            settle(page)
            start_b(page)
        page.wait_for_function("() => window.micCalls.length > 0", timeout=30_000)
        calls = page.evaluate("() => window.micCalls")
        capture_start = calls[0]["resolved"] / 1000
        page.wait_for_timeout(max(0.0, capture_start + seconds - time.time()) * 1000)
        probe = page.evaluate("() => window.micProbe")
    finally:
        context.close()
    time.sleep(0.2)  # what was in flight when the page closed
    return Run(transport, capture_start, calls[0]["settings"], arrivals.take(transport, capture_start),
               probe, "; ".join(errors))


# --- the figures ---------------------------------------------------------------------

@dataclass
class Result:
    latencies: list[float]  # ms, one per burst heard: arrival - Chromium's capture stamp of its start
    missed: int
    chunk_ms: list[float]
    intervals_ms: list[float]
    lost_ms: float | None  # audio missing between the first and the last burst heard
    calibration_ms: list[float]  # Chromium's capture stamp - (capture start + offset)
    offset_latencies: list[float]  # ms: arrival - (capture start + offset)
    in_page_ms: list[float]  # the page's probe got the frame this long after its stamp
    first_frame_ms: float | None  # first captured frame's stamp - capture start


def onsets(chunks: list[Chunk]) -> list[tuple[float, float]]:
    """(arrival s, position s in the received audio) of each burst start."""
    found, quiet, position = [], 1e9, 0.0
    for chunk in chunks:
        loud = np.flatnonzero(np.abs(chunk.samples) > LOUD)
        if len(loud):
            if quiet + loud[0] / chunk.rate >= QUIET_BEFORE_ONSET_S:
                found.append((chunk.arrival, position + loud[0] / chunk.rate))
            quiet = (len(chunk.samples) - 1 - loud[-1]) / chunk.rate
        else:
            quiet += len(chunk.samples) / chunk.rate
        position += len(chunk.samples) / chunk.rate
    return found


def match(times: list[float], offsets: list[float]) -> dict[int, int]:
    """Burst index -> index into `times` of the first time at or after that burst's start (and before the next)."""
    matched = {}
    for j, t in enumerate(times):
        before = [i for i, offset in enumerate(offsets) if offset <= t + SLACK_S]
        if before and before[-1] not in matched and t - offsets[before[-1]] < BURST_EVERY_S - 0.1:
            matched[before[-1]] = j
    return matched


def analyse(run: Run, offsets: list[float], seconds: float) -> Result:
    chunks = sorted(run.chunks, key=lambda c: c.arrival)
    found = onsets(chunks)
    arrivals = [arrival - run.capture_start for arrival, _ in found]
    # Bursts with time enough to arrive before the page closes.
    stamps = [o["stamp"] / 1000 - run.capture_start for o in run.probe["onsets"]]
    stamps = [t for t in stamps if t + 1.0 < seconds]
    offsets = [o for o in offsets if o + 1.0 < seconds]
    # Each burst the capture stamped -> the first burst start the server saw after that stamp
    # and before the next one's. The stamps, not the file's offsets: on a busy machine the fake
    # device has started the file over a second after getUserMedia resolved.
    heard = {}
    for k, stamp in enumerate(stamps):
        until = stamps[k + 1] if k + 1 < len(stamps) else float("inf")
        j = next((j for j, t in enumerate(arrivals) if stamp - SLACK_S <= t < until - SLACK_S), None)
        if j is not None:
            heard[k] = j
    lost = None
    if len(heard) >= 2:
        first, last = min(heard), max(heard)
        received = found[heard[last]][1] - found[heard[first]][1]
        lost = 1000 * (stamps[last] - stamps[first] - received)
    by_offset = match(arrivals, offsets)
    first_frame = run.probe["firstStamp"]
    return Result(
        latencies=[1000 * (arrivals[j] - stamps[k]) for k, j in heard.items()],
        missed=len(stamps) - len(heard),
        chunk_ms=[1000 * len(c.samples) / c.rate for c in chunks],
        intervals_ms=[1000 * (b.arrival - a.arrival) for a, b in zip(chunks, chunks[1:])],
        lost_ms=lost,
        calibration_ms=[1000 * (stamps[j] - offsets[i]) for i, j in match(stamps, offsets).items()],
        offset_latencies=[1000 * (arrivals[j] - offsets[i]) for i, j in by_offset.items()],
        in_page_ms=[o["seen"] - o["stamp"] for o in run.probe["onsets"]],
        first_frame_ms=None if first_frame is None else first_frame - 1000 * run.capture_start,
    )


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def cell(values: list[float], last=p95, digits: int = 0) -> str:
    """min / median / `last` (p95, or max)."""
    if not values:
        return "-"
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), last(values)))


def tables(results: dict[str, list[Result]], settings: dict[str, dict], notes: list[str]) -> str:
    lines = ["| transport | chunk ms (median) | chunk interval seen ms (median / p95) "
             "| latency ms min / median / p95 | latency from capture start + offset ms min / median / p95 "
             "| bursts heard | audio lost between bursts ms (max) | " + " | ".join(SETTINGS) + " |",
             "|---" * (7 + len(SETTINGS)) + "|"]
    for transport, runs in results.items():
        chunk = [v for r in runs for v in r.chunk_ms]
        interval = [v for r in runs for v in r.intervals_ms]
        heard = sum(len(r.latencies) for r in runs)
        lost = [r.lost_ms for r in runs if r.lost_ms is not None]
        lines.append(" | ".join([
            f"| {transport}",
            f"{statistics.median(chunk):.0f}" if chunk else "-",
            f"{statistics.median(interval):.0f} / {p95(interval):.0f}" if interval else "-",
            cell([v for r in runs for v in r.latencies]),
            cell([v for r in runs for v in r.offset_latencies]),
            f"{heard}/{heard + sum(r.missed for r in runs)}",
            f"{round(max(lost))}" if lost else "-",  # round(): no "-0" for a rounding error
            *(str(settings.get(transport, {}).get(k, "-")).lower() for k in SETTINGS)]) + " |")
    lines += ["", "Calibration: Chromium's own capture timestamps of the same bursts (a MediaStreamTrackProcessor "
              "on a clone of the track), all runs:", "",
              "| transport | capture stamp - (capture start + offset) ms min / median / max "
              "| first frame stamp - capture start ms min / median / max "
              "| page gets frame after stamp ms min / median / max |",
              "|---|---|---|---|"]
    for transport, runs in results.items():
        lines.append(" | ".join([
            f"| {transport}",
            cell([v for r in runs for v in r.calibration_ms], max, 1),
            cell([r.first_frame_ms for r in runs if r.first_frame_ms is not None], max, 1),
            cell([v for r in runs for v in r.in_page_ms], max, 1)]) + " |")
    lines += ["", "Per run, bursts heard and audio lost between the first and the last burst heard (ms):", ""]
    for transport, runs in results.items():
        per_run = ", ".join(f"{len(r.latencies)}/{len(r.latencies) + r.missed}"
                            + ("" if r.lost_ms is None else f" {round(r.lost_ms)}") for r in runs)
        lines.append(f"- {transport}: {per_run}")
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=12.0, help="recording time per run")
    parser.add_argument("--b-chunk-ms", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--transports", nargs="+", choices=["A", "B"], default=["A", "B"])
    parser.add_argument("--warm-up-seconds", type=float, default=3.0, help="one untimed recording per transport")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    import gradio as gr

    transports = (["A gradio"] if "A" in args.transports else []) + (
        [f"B websocket {ms} ms" for ms in args.b_chunk_ms] if "B" in args.transports else [])
    notes: list[str] = []
    if "B" in args.transports and websocket_library() is None:
        transports = [t for t in transports if not t.startswith("B")]
        notes.append("B skipped: uvicorn has no WebSocket library here (`pip install wsproto` or `websockets`).")
    if not transports:
        raise SystemExit(notes[0])
    arrivals = Arrivals()
    base, server = serve(build_server(arrivals, time_limit=args.seconds + 30))
    results: dict[str, list[Result]] = {t: [] for t in transports}
    settings: dict[str, dict] = {}
    load = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        wav = Path(folder) / "mic.wav"
        offsets = make_microphone(wav, args.seconds + 2)
        # %noloop: after the file, silence, not the first burst again
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=FLAGS + [f"--use-file-for-fake-audio-capture={wav}%noloop"])
        try:
            if args.warm_up_seconds > 0:
                for transport in transports:  # page caches, the server's first imports and threads
                    record_once(browser, base, transport, arrivals, args.warm_up_seconds)
            for run_index in range(args.runs):
                # Turns rotate so that no transport always follows the same one.
                turn = run_index % len(transports)
                for transport in transports[turn:] + transports[:turn]:
                    load.append(os.getloadavg()[0])
                    run = record_once(browser, base, transport, arrivals, args.seconds)
                    if run.error:
                        notes.append(f"{transport}, run {run_index + 1}: page error: {run.error}")
                    settings[transport] = run.settings
                    results[transport].append(analyse(run, offsets, args.seconds))
        finally:
            browser.close()
            server.should_exit = True

    bursts = len([o for o in offsets if o + 1.0 < args.seconds])
    header = (f"{datetime.date.today()}, {platform.machine()} {os.cpu_count()} cores, 1-minute load "
              f"{min(load):.1f}..{max(load):.1f} during the runs; Chromium fake microphone ({RATE} Hz mono file, "
              f"{bursts} bursts per run), Gradio {gr.__version__}, uvicorn with {websocket_library()}; "
              f"{args.runs} runs of {args.seconds:g} s per transport; latency over every burst of every run\n\n")
    text = header + tables(results, settings, notes)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
