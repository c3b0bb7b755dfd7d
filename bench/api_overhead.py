"""What the HTTP API costs: time to first token through /v1 against a direct engine call, and throughput under load (issue 14).

The model: the trained tests/fixtures/shapes-vlm (or ``--model``), loaded through the
app's own loader and warmed up as the app does (`create_local_engine`), served by the
app's own FastAPI app (`mmchat.server.build_app`, the API without the page) under
uvicorn on a free loopback port, in a thread of this process.

The question: a drawn 96x96 shape photo (the training code's own `draw_scene`) and
"What colour is the shape?", at temperature 0 with a fixed `--max-tokens`. shapes-vlm
answers in one word and ends, so a total would time one token; the model's
end-of-answer tokens are therefore ignored (as vLLM's serving benchmark does with
`ignore_eos`) and every answer is exactly `--max-tokens` tokens, the first of them the
colour (checked, for shapes-vlm). `--stop-at-end` keeps the model's own end instead.

Part 1, overhead: the same prompt three ways, interleaved run after run so that a busy
machine slows them alike, after one untimed warm-up round:
- ``engine.stream``: the engine called directly with the messages the turn layer
  builds (system prompt, the photo as a file, the question);
- ``turn.submit``: through the turn layer, as the page drives it (its checks, a new
  session, the admission line);
- ``HTTP API``: a streamed POST /v1/chat/completions (httpx, kept-alive connection,
  the photo as a data URL), timed at the client.
Each way gets the photo in a new file (the API writes one per request), so none of
them finds it in the photo caches and all prefill the same part of the prompt.
Time to first token: from the call (the request) to the first text piece (the engine's
streamer lets a word out once it is complete, here with the second token, the same for
every way); total: to the end of the stream.

Part 2, throughput: 1, 4 and 16 client threads, each sending `--requests` streamed
requests back to back, against a server whose admission line (`--concurrency`) lets 1
and then 4 answers run at once. Requests/s and tokens/s over the wall-clock time of the
whole row; latency percentiles over all its requests; each row starts with the
engine's prefix cache emptied (see `throughput`); errors counted (a non-200, an
error event, a stream without [DONE] or usage, a wrong length or answer) and each
printed. Every client thread is in this process too, so it shares the interpreter
(and its lock) with the server: the figures include that, as they include the
tiny model's speed; on a CPU they are mostly overhead.

    python bench/api_overhead.py [--runs 20] [--requests 8] [--max-tokens 32] [--model DIR]
                                 [--device cpu|cuda] [--stop-at-end] [--quick] [--out tables.md]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import io
import json
import math
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch
import transformers
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "scripts"))  # a folder of tools, not a package
from train_fixture_vlm import Scene, draw_scene  # noqa: E402
from generation import device_name  # noqa: E402  (bench/ is on the path when a bench runs)
from mmchat.cancel import CancelToken  # noqa: E402
from mmchat.config import Config  # noqa: E402
from mmchat.engine import Completion, GenerationParams  # noqa: E402
from mmchat.engine.local import LocalEngine, create_local_engine  # noqa: E402
from mmchat.events import InputRejected, TextDelta, TurnDone  # noqa: E402
from mmchat.model_handle import ModelHandle  # noqa: E402
from mmchat.server import build_app  # noqa: E402
from mmchat.store import MemoryStore  # noqa: E402
from mmchat.turn.session import ChatSession  # noqa: E402
from mmchat.turn import Services, UserInput, submit  # noqa: E402

SHAPES_VLM = ROOT / "tests" / "fixtures" / "shapes-vlm"
QUESTION = "What colour is the shape?"
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
WAYS = ("engine.stream", "turn.submit", "HTTP API")
CLIENTS = (1, 4, 16)
ADMISSIONS = (1, 4)
# Bounds, so that a hung server ends the run instead of holding it: one request, and
# one row of part 2 (no client starts a request after it).
REQUEST_TIMEOUT = 120.0
ROW_SECONDS = 600.0
API_THREADS = ("mmchat-api-turn", "mmchat-generate")


@dataclass(frozen=True)
class Timed:
    first: float | None  # seconds from the call to the first text piece; None: no text
    total: float  # seconds from the call to the end of the stream
    prompt_tokens: int
    tokens: int  # written by the model
    text: str


class Failed(Exception):
    """An answer the API got wrong (not a timing): counted and printed."""


# --- the question ---

def photo_png(colour: str, seed: int) -> bytes:
    image = draw_scene(Scene("circle", colour, "left"), random.Random(seed))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def request_body(model: str, png: bytes, max_tokens: int) -> dict:
    return {"model": model, "temperature": 0, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png)}},
                                                       {"type": "text", "text": QUESTION}]}]}


def load_engine(args) -> LocalEngine:
    engine = create_local_engine(Config(model=str(args.model), device=args.device, quantization="none"))
    if not args.stop_at_end:
        # Ignoring the end-of-answer tokens makes every answer max_tokens long: generate()
        # reads them from the generation config, the engine's finish reason from _eos.
        engine.model.generation_config.eos_token_id = None
        engine._eos = set()
    return engine


# --- the server ---

@contextlib.contextmanager
def serving(services: Services):
    """The app's API on a loopback port chosen by the OS (its URL), stopped on leaving."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(services), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bench-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60  # a busy 2-core machine can be slow to start it
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def app_services(engine: LocalEngine, data_dir: Path, admission: int) -> Services:
    config = Config(model=str(engine.name), data_dir=data_dir, temperature=0.0,
                    stt_backend="none", tts_backend="none", concurrency=admission,
                    max_turns_per_minute=0)  # many requests a minute from one client are the point here
    return Services(config=config, engine=ModelHandle.ready(engine))


# --- one answer, three ways ---

def direct(engine: LocalEngine, photo: Path, config: Config, params: GenerationParams) -> Timed:
    messages = [{"role": "system", "content": config.system_prompt},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": photo.resolve().as_uri()}},
                                             {"type": "text", "text": QUESTION}]}]
    started, first, pieces = time.perf_counter(), None, []
    for item in engine.stream(messages, params, CancelToken.standalone()):
        if isinstance(item, Completion):
            completion = item
        elif item:
            first = first or time.perf_counter()
            pieces.append(item)
    total = time.perf_counter() - started
    return Timed(first and first - started, total, completion.prompt_tokens, completion.completion_tokens,
                 "".join(pieces))


def through_turn(services: Services, photo: Path, params: GenerationParams) -> Timed:
    session = ChatSession(MemoryStore())  # a new one each time, as the API makes for a request
    started, first, done = time.perf_counter(), None, None
    for event in submit(session, UserInput(QUESTION, (str(photo),)), services, params):
        if isinstance(event, TextDelta):
            first = first or time.perf_counter()
        elif isinstance(event, InputRejected):
            raise Failed(f"turn refused: {event.message}")
        elif isinstance(event, TurnDone):
            done = event
    total = time.perf_counter() - started
    if done is None or done.completion is None or done.status != "complete":
        raise Failed(f"turn did not complete: {done}")
    return Timed(first and first - started, total, done.completion.prompt_tokens,
                 done.completion.completion_tokens, done.text)


def through_api(client: httpx.Client, url: str, body: dict) -> Timed:
    """One streamed completion, timed at the client; raises Failed for anything a client would reject."""
    started, first, pieces, usage, finishes, done = time.perf_counter(), None, [], None, [], False
    with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise Failed(f"HTTP {response.status_code}: {response.read().decode(errors='replace')[:300]}")
        for line in response.iter_lines():
            if not line.startswith("data: "):  # blank separators and ": waiting ..." comments
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunk = json.loads(line[len("data: "):])
            if "error" in chunk:
                raise Failed(f"error event: {chunk['error']}")
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    first = first or time.perf_counter()
                    pieces.append(choice["delta"]["content"])
                if choice.get("finish_reason"):
                    finishes.append(choice["finish_reason"])
            usage = chunk.get("usage") or usage
    total = time.perf_counter() - started
    if not done or usage is None or len(finishes) != 1:
        raise Failed(f"malformed stream: [DONE] {done}, usage {usage}, finish reasons {finishes}")
    return Timed(first and first - started, total, usage["prompt_tokens"], usage["completion_tokens"],
                 "".join(pieces))


def check(timed: Timed, args, colour: str) -> None:
    if timed.first is None:
        raise Failed("no text in the answer")
    if not args.stop_at_end and timed.tokens != args.max_tokens:
        raise Failed(f"{timed.tokens} tokens written, not {args.max_tokens}")
    if args.model.resolve() == SHAPES_VLM.resolve() and not timed.text.startswith(colour):
        raise Failed(f"answered {timed.text[:40]!r} about a {colour} shape")


# --- part 1 ---

def overhead(engine: LocalEngine, folder: Path, args) -> dict[str, list[Timed]]:
    services = app_services(engine, folder / "data", 1)
    params = GenerationParams(max_new_tokens=args.max_tokens, temperature=0.0)
    png = photo_png("red", 0)
    timings: dict[str, list[Timed]] = {way: [] for way in WAYS}
    with serving(services) as url, httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        body = request_body(served_name(client, url), png, args.max_tokens)
        for run in range(args.runs + 1):  # run 0 warms every way up and is not counted
            for way in WAYS:
                photo = folder / f"run{run}-{way.split('.')[0]}.png"
                if way == "engine.stream":
                    photo.write_bytes(png)  # a new file: no photo cache has seen it
                    timed = direct(engine, photo, services.config, params)
                elif way == "turn.submit":
                    photo.write_bytes(png)
                    timed = through_turn(services, photo, params)
                else:
                    timed = through_api(client, url, body)
                check(timed, args, "red")
                if run:
                    timings[way].append(timed)
                    log(f"run {run} {way}: first {timed.first * 1000:.1f} ms, total {timed.total * 1000:.1f} ms")
    return timings


def served_name(client: httpx.Client, url: str) -> str:
    response = client.get(url + "/v1/models")
    response.raise_for_status()
    return response.json()["data"][0]["id"]


def overhead_table(timings: dict[str, list[Timed]]) -> list[str]:
    lines = ["| way | prompt tokens | tokens | first token ms | total ms | first token vs direct | total vs direct |",
             "|---|---|---|---|---|---|---|"]
    base = timings["engine.stream"]
    for way in WAYS:
        runs = timings[way]
        lines.append(f"| {way} | {runs[0].prompt_tokens} | {runs[0].tokens} | {ms([t.first for t in runs])} | "
                     f"{ms([t.total for t in runs])} | {ratio([t.first for t in runs], [t.first for t in base])} | "
                     f"{ratio([t.total for t in runs], [t.total for t in base])} |")
    api = timings["HTTP API"]
    added_first = statistics.median(t.first for t in api) - statistics.median(t.first for t in base)
    added_total = statistics.median(t.total for t in api) - statistics.median(t.total for t in base)
    lines += ["", f"The API adds {added_first * 1000:.1f} ms to the first token and {added_total * 1000:.1f} ms "
                  "to the whole answer (medians)."]
    return lines


# --- part 2 ---

@dataclass
class Row:
    admission: int
    clients: int
    done: list[Timed] = field(default_factory=list)
    per_client: dict[int, list[float]] = field(default_factory=dict)  # client -> its totals
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    rss_mb: float = 0.0


def client_loop(index: int, url: str, body: dict, colour: str, args, start: threading.Barrier,
                deadline: list[float], row: Row, lock: threading.Lock) -> None:
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        start.wait()
        for _ in range(args.requests):
            if time.monotonic() > deadline[0]:
                with lock:
                    row.errors.append(f"client {index}: the row's {ROW_SECONDS:.0f} s ran out")
                return
            try:
                timed = through_api(client, url, body)
                check(timed, args, colour)
            except Exception as exc:  # counted, printed, and the client goes on
                with lock:
                    row.errors.append(f"client {index}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                row.done.append(timed)
                row.per_client.setdefault(index, []).append(timed.total)


def load_row(url: str, model: str, admission: int, clients: int, args) -> Row:
    row, lock = Row(admission, clients), threading.Lock()
    bodies = [(request_body(model, photo_png(COLOURS[i % len(COLOURS)], i), args.max_tokens),
               COLOURS[i % len(COLOURS)]) for i in range(clients)]  # each client its own photo
    start = threading.Barrier(clients + 1)
    deadline = [float("inf")]  # set once everyone is ready
    threads = [threading.Thread(target=client_loop, args=(i, url, body, colour, args, start, deadline, row, lock),
                                name=f"bench-client-{i}", daemon=True) for i, (body, colour) in enumerate(bodies)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    deadline[0] = time.monotonic() + ROW_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline[0] + REQUEST_TIMEOUT - time.monotonic()))
    row.wall = time.perf_counter() - began
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        row.errors.append(f"clients still running at the end: {', '.join(stuck)}")
    row.rss_mb = rss_mb()
    return row


def throughput(engine: LocalEngine, folder: Path, args) -> list[Row]:
    rows = []
    for admission in ADMISSIONS:
        services = app_services(engine, folder / f"data-{admission}", admission)
        with serving(services) as url:
            with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
                model = served_name(client, url)
                through_api(client, url, request_body(model, photo_png("red", 0), args.max_tokens))  # warm-up
            for clients in CLIENTS:
                if engine.prefix is not None:
                    # Each request's photo is a new file, so each answer adds a prefix-cache entry
                    # that no later prompt continues past the photo, and every lookup scans them
                    # all: left alone, a row would pay for the rows before it.
                    engine.prefix.clear()
                row = load_row(url, model, admission, clients, args)
                for error in row.errors:
                    log(f"ERROR (admission {admission}, {clients} clients): {error}")
                log(f"admission {admission}, {clients} clients: {len(row.done)} answers, {len(row.errors)} errors, "
                    f"{row.wall:.2f} s")
                rows.append(row)
    return rows


def throughput_table(rows: list[Row]) -> list[str]:
    lines = ["| admission | clients | requests | errors | requests/s | tokens/s | first token p50 / p95 ms | "
             "total p50 / p95 ms | slowest / fastest client | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        firsts = [t.first for t in row.done if t.first is not None]
        totals = [t.total for t in row.done]
        means = [statistics.mean(v) for v in row.per_client.values()]
        spread = f"{max(means) / min(means):.2f}" if means else "-"
        lines.append(
            f"| {row.admission} | {row.clients} | {len(row.done) + len(row.errors)} | {len(row.errors)} | "
            f"{len(row.done) / row.wall:.1f} | {sum(t.tokens for t in row.done) / row.wall:.0f} | "
            f"{percentiles(firsts)} | {percentiles(totals)} | {spread} | {row.rss_mb:.0f} |")
    return lines


# --- figures ---

def ms(values: list[float]) -> str:
    return f"{min(values) * 1000:.1f} / {statistics.median(values) * 1000:.1f}"


def ratio(values: list[float], base: list[float]) -> str:
    return f"{min(values) / min(base):.2f} / {statistics.median(values) / statistics.median(base):.2f}"


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of them at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1]


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50) * 1000:.0f} / {percentile(values, 95) * 1000:.0f}"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def leftovers(folder: Path, engine: LocalEngine) -> str:
    """What the API left behind once every request had ended: threads, request folders, cached KV."""
    deadline = time.monotonic() + 10  # a stream's turn thread may still be tidying up
    while time.monotonic() < deadline and any(t.name in API_THREADS for t in threading.enumerate()):
        time.sleep(0.05)
    threads = sum(t.name in API_THREADS for t in threading.enumerate())
    folders = len(list(folder.glob("mmchat-api-*")))
    line = f"Left behind after the last request: {threads} API threads, {folders} request folders."
    if engine.prefix is not None:  # every answer stores its KV there, reusable or not
        line += (f" The engine's prefix cache: {len(engine.prefix)} entries, {engine.prefix.nbytes / 2**20:.1f} MB, "
                 f"{engine.prefix.hits} prompts continued from it.")
    return line


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each way in part 1")
    parser.add_argument("--requests", type=int, default=8, help="requests each client sends in part 2")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", type=Path, default=SHAPES_VLM, help="a model folder (default: shapes-vlm)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--stop-at-end", action="store_true", help="let the model end its answers itself")
    parser.add_argument("--quick", action="store_true", help="tiny counts, for the smoke test")
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.requests, args.max_tokens = 1, 1, 4
    if min(args.runs, args.requests, args.max_tokens) < 1:
        parser.error("--runs, --requests and --max-tokens must be at least 1")
    transformers.utils.logging.disable_progress_bar()
    folder = Path(tempfile.mkdtemp(prefix="mmchat-bench-api-"))
    # The API's request folders go under ours, so what it leaves behind can be counted.
    tempfile.tempdir = str(folder)
    try:
        started = time.perf_counter()
        engine = load_engine(args)
        loaded = time.perf_counter() - started
        timings = overhead(engine, folder, args)
        rows = throughput(engine, folder, args)
        left = leftovers(folder, engine)
    finally:
        tempfile.tempdir = None
        shutil.rmtree(folder, ignore_errors=True)
    ending = "the model's own end" if args.stop_at_end else f"exactly {args.max_tokens} tokens (end tokens ignored)"
    lines = [
        f"API overhead benchmark, {datetime.date.today().isoformat()}: {device_name(args.device)}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}; model {args.model.name} "
        f"(loaded and warmed in {loaded:.1f} s), fp32; one 96x96 photo and a question, temperature 0, "
        f"answers of {ending}.",
        "",
        f"Part 1: the same prompt three ways, interleaved, after a warm-up; timed runs of each: {args.runs}; "
        "cells min / median (ratios: min / min, median / median).",
        "",
        *overhead_table(timings),
        "",
        f"Part 2: each client sends {args.requests} streamed request(s) back to back, each with its own photo; "
        "admission: answers generated at once (--concurrency); slowest / fastest client: their mean totals. "
        "Client threads share this process with the server.",
        "",
        *throughput_table(rows),
        "",
        left,
    ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    errors = sum(len(row.errors) for row in rows)
    if errors:
        sys.exit(f"{errors} requests failed (printed above)")


if __name__ == "__main__":
    main()
