"""A bounded load test of the HTTP API (issue 16, "Load"): many clients asking photo
questions at once, every answer checked against its own question.

The server is the app as a user runs it: `python app.py --model tests/fixtures/shapes-vlm
--device cpu` in a subprocess (page and API on one port, mmchat/server.py), speech off,
on 127.0.0.1 only, with a data folder of its own that is deleted afterwards. Its memory
is its own process's resident set, sampled every `--sample-seconds`, apart from the
clients'.

Each of `--clients` client threads has its own connection and its own random stream of
questions about scenes drawn with tests/fixture_models.draw_test_image, each photo
different (shape, colour, place, count, the drawing's seed), sent as data: URLs:
- "What colour is the shape?" (the colour word) or "What shape is it?" (the shape),
  half of them streamed, half not;
- a follow-up: the client sends its own history (its photo, its question, the answer
  it was given) and asks "What colour was it?" / "What shape was it?" with no photo,
  which only that client's earlier photo answers.
shapes-vlm is right about colour and shape every time (tests/fixtures/shapes-vlm/README.md),
so a wrong answer is a fault: an answer that went to the wrong request or session, or
the model misreading a photo. Each wrong answer is asked again alone after the load,
with nothing else running: answered right then, it is counted a misdelivery (the load
changed it); wrong again, a model error.

No client starts a question after `--seconds`; the run ends when the last answer is in
(each request bounded by REQUEST_TIMEOUT), then the server is stopped. The first
`--warmup` seconds are left out of the memory figures: RSS after warm-up against RSS at
the end, and the slope of a straight line fitted to the samples in between.

    python bench/load.py [--clients 20] [--seconds 300] [--warmup 30] [--concurrency 1]
                         [--runs 1] [--model DIR] [--device cpu|cuda] [--seed 0] [--prefix-cache-mb MB]
                         [--photo-cache-mb MB]

With `--runs` above 1, one row per run and a last row of min / median. The core
(`serve_app`, `run_load`) is what tests/hostile/test_load.py runs for 20 seconds.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import datetime
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fixture_models import draw_test_image  # noqa: E402

SHAPES_VLM = ROOT / "tests" / "fixtures" / "shapes-vlm"
SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
POSITIONS = ("left", "right", "top", "bottom")
QUESTIONS = {"colour": "What colour is the shape?", "shape": "What shape is it?"}
FOLLOW_UPS = {"colour": "What colour was it?", "shape": "What shape was it?"}
# One request may wait behind every other client's answer; a hung server still ends the run.
REQUEST_TIMEOUT = 120.0
START_TIMEOUT = 240.0  # loading the model and building the page on a busy 2-core machine
MAX_TOKENS = 8  # shapes-vlm answers in one word and ends
RECHECKS = 20  # wrong answers asked again alone, at most
MAX_CLIENTS = 256  # API keys the server is started with, one per client


def client_key(number: int) -> str:
    return f"load-client-{number}"


# --- the server ---

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    log_text: str = ""  # the app's whole log, once it has stopped


@contextlib.contextmanager
def serve_app(model: Path = SHAPES_VLM, device: str = "cpu", concurrency: int = 1,
              prefix_cache_mb: float | None = None, photo_cache_mb: float | None = None):
    """`python app.py` on a free loopback port, as a user starts it; stopped on leaving."""
    folder = Path(tempfile.mkdtemp(prefix="mmchat-load-"))
    port = free_port()
    keys = folder / "keys.txt"
    keys.write_text("".join(client_key(n) + "\n" for n in range(MAX_CLIENTS)))
    # Each client has an API key of its own, so the server tells them apart as it would
    # real clients. --max-turns-per-minute is off: every client asks without pause, and
    # this measures the server, not that limit (tested on its own).
    command = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(folder / "data"), "--model", str(model), "--device", device,
               "--stt-backend", "none", "--tts-backend", "none", "--concurrency", str(concurrency),
               "--api-keys-file", str(keys), "--max-turns-per-minute", "0"]
    if prefix_cache_mb is not None:
        command += ["--prefix-cache-mb", str(prefix_cache_mb)]
    if photo_cache_mb is not None:
        command += ["--photo-cache-mb", str(photo_cache_mb)]
    log = folder / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_answering(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        kept = log.read_text(errors="replace")
        shutil.rmtree(folder, ignore_errors=True)
        server.log_text = kept


def _wait_until_answering(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("the app stopped while starting:\n" + server.log.read_text(errors="replace")[-4000:])
        try:
            # /v1/models answers before the model is loaded; a question waits for it.
            headers = {"authorization": "Bearer " + client_key(0)}
            if httpx.get(server.url + "/v1/models", headers=headers, timeout=5).status_code == 200:
                one = Question.draw(random.Random(-1), "colour", stream=False)
                httpx.post(server.url + "/v1/chat/completions", json=one.body(), headers=headers,
                           timeout=START_TIMEOUT)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the app did not answer within %.0f s:\n%s" % (START_TIMEOUT, server.log.read_text()[-4000:]))


def resident_bytes(pid: int) -> int | None:
    """The process's resident set (psutil if installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        pass
    except Exception:  # the process is gone
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# --- the questions ---

def _png_data_url(shape: str, colour: str, position: str, count: int, seed: int) -> str:
    buffer = io.BytesIO()
    draw_test_image(shape, colour, position, count, seed=seed).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass(frozen=True)
class Question:
    """One request and the answer it must get. `history` is the client's own earlier
    exchange (photo, question, the answer it was given) for a follow-up."""

    kind: str  # colour, shape, follow-up colour, follow-up shape
    messages: tuple
    expected: str
    stream: bool
    shape: str  # the photo's, for a follow-up about it
    colour: str

    @classmethod
    def draw(cls, rng: random.Random, about: str, stream: bool) -> "Question":
        shape, colour = rng.choice(SHAPES), rng.choice(COLOURS)
        url = _png_data_url(shape, colour, rng.choice(POSITIONS), rng.randint(1, 3), rng.randrange(10**6))
        message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                               {"type": "text", "text": QUESTIONS[about]}]}
        return cls(about, (message,), colour if about == "colour" else shape, stream, shape, colour)

    def follow_up(self, answer: str, about: str, stream: bool) -> "Question":
        """The next question of the same conversation, with this one and its answer as history."""
        messages = self.messages + ({"role": "assistant", "content": answer},
                                    {"role": "user", "content": FOLLOW_UPS[about]})
        expected = self.colour if about == "colour" else self.shape
        return Question(f"follow-up {about}", messages, expected, stream, self.shape, self.colour)

    def body(self) -> dict:
        body = {"model": "shapes-vlm", "temperature": 0, "max_tokens": MAX_TOKENS, "stream": self.stream,
                "messages": list(self.messages)}
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return body


def normalise(answer: str) -> str:
    return answer.strip().strip(".!").strip().lower()


class RequestFailed(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def ask(client: httpx.Client, url: str, question: Question) -> str:
    """The answer's text; RequestFailed (with the kind of failure) for anything but a whole answer."""
    try:
        if not question.stream:
            response = client.post(url + "/v1/chat/completions", json=question.body())
            if response.status_code != 200:
                raise RequestFailed(f"http {response.status_code}", response.text[:300])
            reply = response.json()
            if reply["choices"][0]["finish_reason"] not in ("stop", "length"):
                raise RequestFailed("unfinished", json.dumps(reply)[:300])
            return reply["choices"][0]["message"]["content"]
        pieces, done, usage = [], False, False
        with client.stream("POST", url + "/v1/chat/completions", json=question.body()) as response:
            if response.status_code != 200:
                raise RequestFailed(f"http {response.status_code}", response.read().decode(errors="replace")[:300])
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    raise RequestFailed("error event", data[:300])
                usage = usage or bool(event.get("usage"))
                for choice in event.get("choices", ()):
                    pieces.append(choice.get("delta", {}).get("content") or "")
        if not done:
            raise RequestFailed("stream without [DONE]")
        if not usage:
            raise RequestFailed("stream without usage")
        return "".join(pieces)
    except httpx.TimeoutException as exc:
        raise RequestFailed("timeout", repr(exc)) from None
    except httpx.HTTPError as exc:
        raise RequestFailed("connection", repr(exc)) from None
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RequestFailed("malformed reply", repr(exc)) from None


# --- the load ---

@dataclass
class Wrong:
    client: int
    question: Question
    answer: str


@dataclass
class LoadResult:
    clients: int
    seconds: float  # wall clock from the first question to the last answer
    latencies: list[float] = field(default_factory=list)  # every right or wrong answer's
    answers_by_client: collections.Counter = field(default_factory=collections.Counter)
    answers_by_kind: collections.Counter = field(default_factory=collections.Counter)  # (kind, streamed)
    errors: collections.Counter = field(default_factory=collections.Counter)
    error_examples: list[str] = field(default_factory=list)
    wrong: list[Wrong] = field(default_factory=list)
    misdelivered: int = 0
    model_errors: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    warmup: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def answers(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]

    def rss_after_warmup(self) -> int | None:
        later = [b for t, b in self.rss if t >= self.warmup]
        return later[0] if later else None

    def rss_at_end(self) -> int | None:
        return self.rss[-1][1] if self.rss else None

    def rss_every(self, seconds: float) -> list[tuple[float, int]]:
        """The first sample at or after each multiple of `seconds`, and the last."""
        picked, next_at = [], 0.0
        for t, b in self.rss:
            if t >= next_at:
                picked.append((t, b))
                next_at = (t // seconds + 1) * seconds
        if self.rss and picked[-1] != self.rss[-1]:
            picked.append(self.rss[-1])
        return picked

    def rss_slope(self) -> float | None:
        """Bytes per minute, least squares over the samples after warm-up."""
        points = [(t, b) for t, b in self.rss if t >= self.warmup]
        if len(points) < 3:
            return None
        mean_t = statistics.fmean(t for t, _ in points)
        mean_b = statistics.fmean(b for _, b in points)
        spread = sum((t - mean_t) ** 2 for t, _ in points)
        return 60 * sum((t - mean_t) * (b - mean_b) for t, b in points) / spread if spread else None


def _client(number: int, url: str, stop_at: float, seed: int, result: LoadResult, lock: threading.Lock) -> None:
    rng = random.Random(seed * 1000 + number)
    with httpx.Client(timeout=REQUEST_TIMEOUT, headers={"authorization": "Bearer " + client_key(number)}) as client:
        while time.monotonic() < stop_at:
            about = rng.choice(("colour", "shape"))
            question = Question.draw(rng, about, stream=rng.random() < 0.5)
            answer = _ask_and_check(client, url, number, question, result, lock)
            if answer is not None and rng.random() < 0.3 and time.monotonic() < stop_at:
                # A follow-up about the same photo, from this client's own history.
                other = "shape" if about == "colour" else "colour"
                _ask_and_check(client, url, number, question.follow_up(answer, other, rng.random() < 0.5),
                               result, lock)


def _ask_and_check(client: httpx.Client, url: str, number: int, question: Question, result: LoadResult,
                   lock: threading.Lock) -> str | None:
    """The answer if it is the right one; counts it (or the failure) in `result`."""
    started = time.monotonic()
    try:
        answer = ask(client, url, question)
    except RequestFailed as exc:
        with lock:
            result.errors[exc.kind] += 1
            if len(result.error_examples) < 10:
                result.error_examples.append(f"client {number}, {question.kind}: {exc}")
        return None
    elapsed = time.monotonic() - started
    right = normalise(answer) == question.expected
    with lock:
        result.latencies.append(elapsed)
        result.answers_by_client[number] += 1
        result.answers_by_kind[question.kind, question.stream] += 1
        if not right:
            result.wrong.append(Wrong(number, question, answer))
    return answer if right else None


def run_load(server: Server, clients: int, seconds: float, *, warmup: float = 30.0, seed: int = 0,
             sample_seconds: float = 2.0) -> LoadResult:
    """`clients` threads asking for `seconds`; returns once every answer is in."""
    result = LoadResult(clients, 0.0, warmup=warmup)
    lock = threading.Lock()
    started = time.monotonic()
    stop_at = started + seconds
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            rss = resident_bytes(server.process.pid)
            if rss is not None:
                result.rss.append((time.monotonic() - started, rss))
            sampling.wait(sample_seconds)

    sampler = threading.Thread(target=sample, name="load-rss", daemon=True)
    sampler.start()
    threads = [threading.Thread(target=_client, args=(n, server.url, stop_at, seed, result, lock),
                                name=f"load-client-{n}", daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 4 * REQUEST_TIMEOUT)
    result.seconds = time.monotonic() - started
    sampling.set()
    sampler.join(10)
    rss = resident_bytes(server.process.pid)
    if rss is not None:
        result.rss.append((result.seconds, rss))
    if any(thread.is_alive() for thread in threads):
        result.errors["client still waiting at the end"] += sum(thread.is_alive() for thread in threads)
    _recheck(server, result)
    return result


def _recheck(server: Server, result: LoadResult) -> None:
    """Ask each wrong answer's question again with nothing else running."""
    with httpx.Client(timeout=REQUEST_TIMEOUT, headers={"authorization": "Bearer " + client_key(0)}) as client:
        for wrong in result.wrong[:RECHECKS]:
            try:
                again = ask(client, server.url, wrong.question)
            except RequestFailed:
                continue
            if normalise(again) == wrong.question.expected:
                result.misdelivered += 1
            else:
                result.model_errors += 1


# --- the table ---

COLUMNS = ("run", "clients", "s", "requests", "answers", "errors", "wrong (misdelivered / model)",
           "answers/s", "latency s p50 / p90 / p99 / max", "clients answered",
           "RSS MB after warm-up / end", "RSS slope MB/min")


def row(number: str, r: LoadResult) -> list[str]:
    mb = lambda b: "-" if b is None else f"{b / 1e6:.0f}"  # noqa: E731
    slope = r.rss_slope()
    errors = ", ".join(f"{kind} {n}" for kind, n in sorted(r.errors.items())) or "0"
    return [number, str(r.clients), f"{r.seconds:.0f}", str(r.requests), str(r.answers), errors,
            f"{len(r.wrong)} ({r.misdelivered} / {r.model_errors})", f"{r.answers / r.seconds:.2f}",
            " / ".join(f"{r.percentile(p):.2f}" for p in (50, 90, 99, 100)),
            f"{len(r.answers_by_client)}/{r.clients}", f"{mb(r.rss_after_warmup())} / {mb(r.rss_at_end())}",
            "-" if slope is None else f"{slope / 1e6:+.1f}"]


def summary_row(results: list[LoadResult]) -> list[str]:
    def both(values: list[float], digits: int = 2) -> str:
        return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f}"

    return ["min / median", "", "", "", both([r.answers for r in results], 0),
            both([sum(r.errors.values()) for r in results], 0), both([len(r.wrong) for r in results], 0),
            both([r.answers / r.seconds for r in results]),
            "p50 " + both([r.percentile(50) for r in results]) + ", p99 " + both([r.percentile(99) for r in results]),
            "", "", ""]


def table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def machine_line(args) -> str:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{datetime.date.today()}, {os.cpu_count()} CPUs, load average at the end {load}; model "
            f"{Path(args.model).name} on {args.device}, server --concurrency {args.concurrency}, "
            f"--prefix-cache-mb {'default' if args.prefix_cache_mb is None else args.prefix_cache_mb}, "
            f"--photo-cache-mb {'default' if args.photo_cache_mb is None else args.photo_cache_mb}, "
            f"{args.clients} clients for {args.seconds:.0f} s, warm-up {args.warmup:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long clients keep asking")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the memory figures")
    parser.add_argument("--concurrency", type=int, default=1, help="the server's --concurrency (answers at once)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--model", type=Path, default=SHAPES_VLM)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix-cache-mb", type=float, default=None,
                        help="the server's --prefix-cache-mb (default: the app's), which memory grows into")
    parser.add_argument("--photo-cache-mb", type=float, default=None,
                        help="the server's --photo-cache-mb (default: the app's, 512): every question here "
                             "brings a new photo, so memory grows into this bound before it is flat")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be 1 to {MAX_CLIENTS}")
    results = []
    with serve_app(args.model, args.device, args.concurrency, args.prefix_cache_mb, args.photo_cache_mb) as server:
        for run in range(args.runs):
            result = run_load(server, args.clients, args.seconds, warmup=args.warmup, seed=args.seed + run)
            results.append(result)
            print(table([row(str(run + 1), result)]).splitlines()[-1] if run else table([row("1", result)]),
                  flush=True)
            print("  server RSS MB by time:", ", ".join(f"{t:.0f} s {b / 1e6:.0f}" for t, b in result.rss_every(30)))
            for example in result.error_examples:
                print("  error:", example)
            for wrong in result.wrong[:10]:
                print(f"  wrong: client {wrong.client}, {wrong.question.kind}: expected "
                      f"{wrong.question.expected!r}, got {wrong.answer!r}")
    if len(results) > 1:
        print(table([summary_row(results)]).splitlines()[-1])
    print()
    print(machine_line(args))
    traceback = "Traceback" in server.log_text
    if traceback:
        print("The server logged a traceback.")
    failed = any(r.errors or r.wrong for r in results) or traceback
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
