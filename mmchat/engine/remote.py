"""The remote engine: any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp's server,
Ollama, OpenAI, another mmchat) answers in place of a model on this machine.

Photos leave as data URLs, fitted to the pixel budget first (a 12 MP phone photo is
a few MB of base64 the server would shrink anyway). Answers stream over SSE. The
request runs on a thread of its own so that a Stop is seen within POLL_SECONDS even
while the server sends nothing; Stop, a closed iterator and any failure shut the
socket down, which is how the server learns to stop generating. Nothing here loads
torch: speech recognition and speech output stay local, the model does not.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from typing import Iterator, Union

import httpx
from ..cancel import CancelToken
from ..config import Config
from ..errors import ModelUnavailableError, UserFacingError
from ..events import Notice
from ..media.video import ClipLimits
from . import Completion, GenerationParams, part_urls
from .remote_prompt import RemotePrompt

log = logging.getLogger(__name__)

STREAM_THREAD = "mmchat-remote-stream"  # one per answer, named so tests and operators can see it
# The longest a Stop goes unnoticed while the server is silent.
POLL_SECONDS = 0.05
# After the socket is shut down the request's thread ends at once; this only bounds a
# thread still inside connect(), which its own connect timeout ends.
JOIN_SLACK_SECONDS = 5.0
# How long loading waits for a server that refuses connections (one started at the same
# time as mmchat, still loading its weights) before it gives up with a message.
SERVER_START_SECONDS = 600.0
SERVER_START_POLL_SECONDS = 2.0
MODELS_LISTED = 10  # names shown in a message about a missing model

class RemoteError(UserFacingError):
    """The model server, or the way to it, failed; the message names the fix."""


class RemoteUnreachable(RemoteError):
    """No connection: refused, no such host, an address that is not http(s)."""


class RemoteTimeout(RemoteError):
    """The server did not connect, or went silent, within --remote-timeout."""


class RemoteRejected(RemoteError):
    """A 4xx: the key, the model name or the request itself was refused."""

    status: int = 400


class RemoteFailed(RemoteError):
    """A 5xx, an error in the stream, or a stream that broke off."""


_END = object()  # put by the request's thread when the response is over


class _Raised:
    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


class RemoteEngine:
    def __init__(self, base_url: str, model: str, *, max_pixels: int, api_key: str = "",
                 timeout: float = 60.0, clip_limits: ClipLimits | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.max_pixels = max_pixels
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Every answer gets a fresh connection: the request's socket is known from its
        # connect (see _Exchange), so a Stop can shut it down even before the answer
        # starts. trust_env=False: the config, not proxy variables, says where requests go.
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), trust_env=False,
                                    limits=httpx.Limits(max_keepalive_connections=0))
        self.prompt = RemotePrompt(max_pixels, clip_limits)  # the messages as the server gets them, and their length

    # --- the server ---
    def list_models(self) -> list[str]:
        """The model names the server offers (GET /models)."""
        try:
            response = self._client.get(f"{self.base_url}/models")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._explain(exc) from exc
        if response.status_code >= 400:
            if response.status_code == 404:
                raise RemoteRejected(self._no_api_message())
            raise self._http_error(response, listing=True)
        try:
            return [str(card["id"]) for card in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise RemoteFailed(f"The server at {self.base_url} answered /models with something that is not an "
                               "OpenAI model list. Fix: check that --base-url points at an OpenAI-compatible "
                               "API (it usually ends in /v1).") from None

    def close(self) -> None:
        self._client.close()

    # --- the prompt ---
    def count_tokens(self, messages: list[dict]) -> int:
        return self.prompt.count_tokens(messages)

    def outgoing(self, messages: list[dict]) -> list[dict]:
        return self.prompt.outgoing(messages)

    # --- the answer ---
    def stream(self, messages: list[dict], params: GenerationParams,
               cancel: CancelToken) -> Iterator[Union[str, Completion, Notice]]:
        """The answer (see Engine.stream). A server that refuses a clip as video (a 4xx to a
        request with video_url parts: one without video input) is sent each clip as a few
        frames from then on, and this answer is asked again so; the page is told once."""
        sent_video = self.prompt.video_parts and bool(part_urls(messages, "video_url"))
        try:
            yield from self._stream(messages, params, cancel)
        except RemoteRejected as refused:
            if not sent_video or refused.status not in (400, 415, 422):
                raise
            if self.prompt.video_parts:  # the first answer to find out says so; one beside it only asks again
                self.prompt.video_parts = False
                log.warning("the model server at %s refused a video clip (%s); clips are sent as frames from now on",
                            self.base_url, refused.message)
                yield Notice(f"The model server at {self.base_url} does not take video clips, so mmchat sends it "
                             "each clip as a few of its frames, as photos, each after its time.")
            yield from self._stream(messages, params, cancel)

    def _stream(self, messages: list[dict], params: GenerationParams,
                cancel: CancelToken) -> Iterator[Union[str, Completion]]:
        started = time.perf_counter()
        body = {
            "model": self.name, "messages": self.outgoing(messages), "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_new_tokens, "temperature": params.temperature, "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        exchange = _Exchange(self, body).start()
        written, reason, usage, first = 0, None, None, None
        try:
            while True:
                try:
                    item = exchange.items.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    if cancel.cancelled:
                        reason = "cancelled"
                        break
                    continue
                if cancel.cancelled:
                    reason = "cancelled"
                    break
                if item is _END:
                    break
                if isinstance(item, _Raised):
                    raise item.exception
                if item == "[DONE]":
                    break
                chunk = self._chunk(item)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if first is None:
                            first = time.perf_counter() - started
                        written += 1
                        yield text
                    if choice.get("finish_reason"):
                        reason = "length" if choice["finish_reason"] == "length" else "stop"
        finally:
            exchange.abort()  # the server stops generating once its connection is gone
        if reason is None:
            raise RemoteFailed(f"The model server at {self.base_url} ended the answer without finishing it (the "
                               "stream closed early). Check the server's log; the question can be asked again.")
        prompt_tokens = usage.get("prompt_tokens") if usage else None
        completion_tokens = usage.get("completion_tokens") if usage else None
        yield Completion(reason, prompt_tokens if isinstance(prompt_tokens, int) else self.count_tokens(messages),
                         completion_tokens if isinstance(completion_tokens, int) else written, first)

    def _chunk(self, data: str) -> dict:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise RemoteFailed(f"The model server at {self.base_url} sent something that is not an OpenAI-compatible "
                               f"stream: {data[:200]!r}. Fix: check that --base-url points at an OpenAI-compatible "
                               "API.") from None
        if not isinstance(chunk, dict):
            chunk = {}
        if "error" in chunk:  # a failure after the stream began (vLLM, mmchat and OpenAI send one)
            error = chunk["error"]
            detail = error.get("message") if isinstance(error, dict) else str(error)
            raise RemoteFailed(f"The model server at {self.base_url} failed while answering: {detail}")
        return chunk

    # --- errors ---
    def _explain(self, exc: BaseException) -> BaseException:
        """A transport failure as a message that names the fix; other exceptions as they are."""
        url, seconds = self.base_url, f"{self.timeout:g}"
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return RemoteUnreachable(f"--base-url {url!r} is not an http(s) address. Fix: pass the server's "
                                     "OpenAI API address, for example http://HOST:8000/v1.")
        if isinstance(exc, RemoteError) or not isinstance(exc, httpx.HTTPError):
            return exc
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteTimeout(f"The model server at {url} did not accept a connection within {seconds} s. "
                                 "Fix: check --base-url and that its host is reachable from here (a firewall?), "
                                 "or raise --remote-timeout.")
        if isinstance(exc, httpx.ConnectError):
            why = "connection refused" if _refused(exc) else str(exc) or type(exc).__name__
            return RemoteUnreachable(f"Cannot reach the model server at {url} ({why}): is it running? Fix: start "
                                     "it (for example `vllm serve MODEL`), or pass its address with --base-url.")
        if isinstance(exc, httpx.TimeoutException):
            return RemoteTimeout(f"The model server at {url} sent nothing for {seconds} s. It may be overloaded "
                                 "or stuck: check its log. Fix: raise --remote-timeout if its answers are slow "
                                 "to start.")
        return RemoteFailed(f"The connection to the model server at {url} broke ({type(exc).__name__}: {exc}). "
                            "Check the server's log; the question can be asked again.")

    def _http_error(self, response: httpx.Response, listing: bool = False) -> RemoteError:
        status, url = response.status_code, self.base_url
        detail = _server_message(response)
        said = f" (HTTP {status}: {detail})" if detail else f" (HTTP {status})"
        if status in (401, 403):
            return RemoteRejected(f"The model server at {url} refused mmchat's API key{said}. Fix: pass the key "
                                  "it expects with --remote-api-key (or MMCHAT_REMOTE_API_KEY).")
        if status == 404 and not listing:
            return RemoteRejected(self._not_found_message(said))
        if status == 413:
            return RemoteRejected(f"The model server at {url} refused the question as too large{said}. Fix: send "
                                  "fewer or smaller photos, lower --max-pixels, or raise the server's size limit.")
        if 400 <= status < 500:
            refused = RemoteRejected(f"The model server at {url} refused the question{said}. If it says the prompt "
                                     "is too long, lower --history-tokens or raise the server's context length "
                                     "(vLLM: --max-model-len).")
            refused.status = status
            return refused
        return RemoteFailed(f"The model server at {url} failed while answering{said}. Check the server's log; "
                            "mmchat keeps working and the question can be asked again.")

    def _not_found_message(self, said: str) -> str:
        try:
            offered = self.list_models()
        except RemoteError:
            return self._no_api_message()
        if self.name in offered:
            return f"The model server at {self.base_url} could not find what mmchat asked for{said}."
        return (f"The model server at {self.base_url} has no model {self.name!r}{said}. It offers: "
                f"{_names(offered)}. Fix: pass one of them with --remote-model.")

    def _no_api_message(self) -> str:
        return (f"There is no OpenAI-compatible API at {self.base_url} (HTTP 404). Fix: --base-url is the API's "
                "address, which usually ends in /v1 (for example http://HOST:8000/v1).")


class _Exchange:
    """One streamed request on a thread of its own; `items` gets each SSE `data:` payload,
    then _END (or a _Raised). `abort()`, from any thread, ends it at once."""

    def __init__(self, engine: RemoteEngine, body: dict) -> None:
        self.engine = engine
        self.body = body
        self.items: queue.Queue = queue.Queue()
        self._sockets: list[socket.socket] = []
        self._aborted = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=STREAM_THREAD, daemon=True)

    def start(self) -> "_Exchange":
        self._thread.start()
        return self

    def _trace(self, event: str, info: dict) -> None:
        # httpcore's trace hands out the connection's stream as soon as it is connected,
        # long before the response exists: the one moment to learn its socket.
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            aborted = self._aborted
        if aborted:
            _shut(sock)

    def abort(self) -> None:
        """Shut the connection down: a blocked read returns, the server sees the client
        leave and stops generating. Waits for the thread, which then ends at once."""
        with self._lock:
            self._aborted = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)
        self._thread.join(self.engine.timeout + JOIN_SLACK_SECONDS)

    def _run(self) -> None:
        engine = self.engine
        try:
            with engine._client.stream("POST", f"{engine.base_url}/chat/completions", json=self.body,
                                       extensions={"trace": self._trace}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise engine._http_error(response)
                for line in response.iter_lines():
                    if self._aborted:
                        break
                    if line.startswith("data:"):
                        self.items.put(line[5:].strip())
        except BaseException as exc:  # handed to the answering thread, raised there
            if not self._aborted:
                self.items.put(_Raised(engine._explain(exc)))
        finally:
            self.items.put(_END)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the other side or by httpx
        pass


def _refused(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _server_message(response: httpx.Response) -> str:
    """The error message in the server's own words (OpenAI's error JSON, FastAPI's detail, or text)."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if data.get("message"):
            return str(data["message"])
        if data.get("detail"):
            return str(data["detail"])
    return json.dumps(data)[:300]


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    more = len(names) - MODELS_LISTED
    return ", ".join(names[:MODELS_LISTED]) + (f" and {more} more" if more > 0 else "")


def create_remote_engine(config: Config, progress=lambda message, fraction: None,
                         wait_for_server: float = SERVER_START_SECONDS) -> RemoteEngine:
    """Check the server and the model before the first question: GET /models must list
    --remote-model (or offer exactly one model when it is empty). A server that refuses
    connections is waited for up to `wait_for_server` seconds, as one started beside
    mmchat is still loading its weights."""
    if not config.base_url:
        raise ModelUnavailableError("--engine remote needs the model server's address. Fix: pass --base-url, for "
                                    "example http://HOST:8000/v1 (vLLM's default port).")
    engine = RemoteEngine(config.base_url, config.remote_model, max_pixels=config.max_pixels,
                          api_key=config.remote_api_key, timeout=config.remote_timeout,
                          clip_limits=ClipLimits.of(config))
    progress(f"Connecting to the model server at {engine.base_url}", None)
    deadline = time.monotonic() + wait_for_server
    while True:
        try:
            offered = engine.list_models()
            break
        except RemoteUnreachable as exc:
            if time.monotonic() >= deadline or not _refused(exc.__cause__ or exc):
                engine.close()
                raise ModelUnavailableError(exc.message) from exc
            progress(f"Waiting for the model server at {engine.base_url} to start (connection refused; check "
                     "--base-url if it never does)", None)
            time.sleep(SERVER_START_POLL_SECONDS)
        except RemoteError as exc:
            engine.close()
            raise ModelUnavailableError(exc.message) from exc
    if config.remote_model and config.remote_model not in offered:
        engine.close()
        raise ModelUnavailableError(f"The model server at {engine.base_url} has no model {config.remote_model!r}; "
                                    f"it offers: {_names(offered)}. Fix: pass one of them with --remote-model.")
    if not config.remote_model:
        if len(offered) != 1:
            engine.close()
            which = "no models" if not offered else f"several models ({_names(offered)})"
            raise ModelUnavailableError(f"The model server at {engine.base_url} offers {which}. Fix: choose the "
                                        "one to ask with --remote-model.")
        engine.name = offered[0]
    progress(f"Connected to {engine.name} at {engine.base_url}", 1.0)
    return engine
