"""The OpenAI-compatible routes under /v1: thin layers over the turn and the speech adapters.

Chat answers go through `turn.submit` (the page's checks, its one admission line, its
cancel token), never to the engine directly. Each route reads its own body with a size
limit, so a huge upload is refused before it fills memory, and every refusal is a 4xx
in OpenAI's error shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..cancel import CancelToken
from ..engine import GenerationParams
from ..turn import Services
from . import audio
from .auth import KeyCheck, load_keys
from .bridge import ThreadedIterator, run_in_thread
from .chat import ApiTurn
from .errors import ApiError, validation_message
from .messages import read_messages
from .replies import Reply
from .schemas import ChatCompletionRequest, SpeechRequest
from .sse import EventStream, disconnect_watch


TURN_THREAD = "mmchat-api-turn"  # one per chat request, named so tests and operators can see them
TRANSCRIPTIONS = ("json", "text", "srt", "verbose_json", "vtt")
_STARTED = int(time.time())


def api_router(services: Services) -> APIRouter:
    config = services.config
    keys = load_keys(config)
    router = APIRouter(prefix="/v1", dependencies=[Depends(KeyCheck(keys))])
    # A chat request holds up to a message's worth of photos as base64 (4/3 of their
    # bytes), twice over for photos earlier in the conversation, plus its text.
    chat_limit = int(2 * config.max_images_per_turn * config.max_upload_mb * 1e6 * 4 / 3) + 4 * 2**20
    upload_limit = int(config.max_upload_mb * 1e6)

    @router.get("/models")
    async def list_models():
        return {"object": "list", "data": [_model_card(served_model_name(services))]}

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str):
        served = served_model_name(services)
        if model_id != served:
            raise ApiError(404, f"The model {model_id!r} does not exist; this server serves {served!r}.",
                           param="model", code="model_not_found")
        return _model_card(served)

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        body = _parse(ChatCompletionRequest, await _read_body(request, chat_limit))
        model = _check_model(body.model, services)
        _check_engine(services)
        params = _params(body, services)
        # The request's photos are held in memory as they came in: nothing is written to disk.
        chat = await run_in_threadpool(read_messages, body.messages, config)
        asker = _sender(request, bool(keys))
        chat = dataclasses.replace(chat, question=dataclasses.replace(chat.question, sender=asker))
        turn = ApiTurn(services, chat, params, body.stops)
        run = ThreadedIterator(turn.items, TURN_THREAD, on_cancel=turn.cancel).start()
        reply = Reply(model, bool(body.stream_options and body.stream_options.include_usage))
        try:
            async with disconnect_watch(request.receive, run.cancel):
                if not body.stream:
                    return await reply.whole(run)
                # The status goes out with the first item: a refusal before it is still a 4xx.
                first = await _first(run)
        except BaseException:  # refused, or the server is stopping: nothing may go on running
            run.cancel()
            raise
        return EventStream(reply.stream(first, run), on_disconnect=run.cancel)

    @router.post("/audio/transcriptions")
    async def transcriptions(request: Request):
        data, fields = await _recording_form(request, upload_limit)
        response_format = fields.get("response_format") or "json"
        if response_format not in TRANSCRIPTIONS:
            raise ApiError(400, f"Invalid response_format {response_format!r}: use one of {', '.join(TRANSCRIPTIONS)}.",
                           param="response_format")
        language = (fields.get("language") or "").strip().lower() or None
        cancel = CancelToken.standalone()
        async with disconnect_watch(request.receive, cancel.cancel):
            transcript = await run_in_thread(lambda: audio.transcribe(services, data, language, cancel),
                                             "mmchat-api-transcribe", cancel.cancel)
        if transcript is None:  # the client left; nobody reads this
            return Response(status_code=499)
        return _transcription_response(transcript, response_format)

    @router.post("/audio/speech")
    async def speech(request: Request):
        body = _parse(SpeechRequest, await _read_body(request, 2**20))
        cancel = CancelToken.standalone()

        def work() -> bytes:
            samples, rate = audio.synthesize(services, body.input, body.voice, body.speed, cancel)
            return audio.encode(samples, rate, body.response_format)

        async with disconnect_watch(request.receive, cancel.cancel):
            data = await run_in_thread(work, "mmchat-api-speech", cancel.cancel)
        return Response(data, media_type=audio.MEDIA_TYPES[body.response_format])

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown(request: Request):
        raise ApiError(404, f"No such endpoint: {request.method} {request.url.path}. This server offers "
                            "/v1/models, /v1/chat/completions, /v1/audio/transcriptions and /v1/audio/speech.")

    return router


# --- the pieces ---

async def _recording_form(request: Request, upload_limit: int) -> tuple[bytes, dict[str, str]]:
    """A transcription request's recording and its other fields (multipart/form-data)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > upload_limit + 2**20:
        raise _too_large(upload_limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "Send the recording as multipart/form-data with a 'file' field.")
    async with request.form(max_files=1, max_fields=20) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "Missing required parameter: file.", param="file")
        data = await upload.read(upload_limit + 1)
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if len(data) > upload_limit:
        raise _too_large(upload_limit)
    return data, fields


def _transcription_response(transcript, response_format: str):
    if response_format == "json":
        return {"text": transcript.text.strip()}
    if response_format == "verbose_json":
        return audio.as_verbose_json(transcript)
    if response_format == "text":
        return PlainTextResponse(transcript.text.strip() + "\n")
    if response_format == "srt":
        return PlainTextResponse(audio.as_srt(transcript))
    return PlainTextResponse(audio.as_vtt(transcript), media_type="text/vtt")


def served_model_name(services: Services) -> str:
    """The name clients see: --served-model-name, else the model the engine loaded (or will)."""
    config = services.config
    if config.served_model_name:
        return config.served_model_name
    handle = services.engine
    if handle.loaded(0) and handle.status.error is None:
        return handle.wait().name
    if config.engine == "remote":  # before the server has answered: what it will be asked for
        return config.remote_model or "remote"
    if config.model != "auto":
        return config.model
    try:
        from ..engine.loading import plan_load

        return plan_load(config).model
    except Exception:  # the loader will say what is wrong; the name is only a label
        return config.model


def _sender(request: Request, keys_checked: bool) -> str:
    """Who asks, for --max-turns-per-minute (rate_limit.py): with --auth the key's user (the
    same person as on the page), else the API key when the server checks keys (each key a
    client), else the client's address (an unchecked key could be made up anew each time)."""
    user = getattr(request.state, "mmchat_user", None)
    if user:
        return user
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if keys_checked and scheme.lower() == "bearer" and key.strip():
        return "api key " + hashlib.sha256(key.strip().encode()).hexdigest()[:16]
    return "api client " + (request.client.host if request.client else "unknown")


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": _STARTED, "owned_by": "mmchat"}


def _check_model(requested: str, services: Services) -> str:
    served = served_model_name(services)
    if services.config.strict_model_names and requested != served:
        raise ApiError(404, f"The model {requested!r} does not exist; this server serves {served!r}.",
                       param="model", code="model_not_found")
    return served


def _check_engine(services: Services) -> None:
    error = services.engine.status.error
    if error is not None:
        raise ApiError(503, error, code="model_unavailable")


def _params(body: ChatCompletionRequest, services: Services) -> GenerationParams:
    config = services.config
    longest = body.max_completion_tokens or body.max_tokens or config.max_new_tokens
    if longest > config.history_tokens:
        which = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise ApiError(400, f"{which} is {longest:,}; this server writes at most {config.history_tokens:,} tokens "
                            "in one answer.", param=which)
    temperature = config.temperature if body.temperature is None else body.temperature
    top_p = GenerationParams.top_p if body.top_p is None else body.top_p
    if top_p == 0:  # only the likeliest token may be drawn: greedy
        temperature = 0.0
    return GenerationParams(max_new_tokens=longest, temperature=temperature, top_p=top_p or 1.0, seed=body.seed)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request is larger than this server accepts ({limit / 1e6:.0f} MB).")


def _parse(model: type[BaseModel], body: bytes):
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        message, param = validation_message(exc.errors(include_url=False))
        raise ApiError(400, message, param=param) from None


async def _first(run: ThreadedIterator) -> list:
    """The run's first item (nothing if it ended without any); raises its refusal."""
    async for item in run:
        return [item]
    return []
