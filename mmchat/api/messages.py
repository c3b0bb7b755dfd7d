"""OpenAI chat messages -> what a turn takes: the history, the new question, the system prompt.

Images come inline (`data:` URLs), and so do video clips (`video_url` parts, as vLLM
takes them: data:video/mp4;base64,...; OpenAI's own clients send them as an extra part).
A web address is fetched only from the hosts the operator allows (--allow-image-urls, fetch.py): by default it is refused, as a server
that fetches whatever a client names can be made to reach private addresses. A
`file://` URL or a path would let a client read photos off the server's disk, so it is
always refused. Each refusal is a 400 that says how to send the image instead. Every photo and message is held to the page's
limits (photos per message, text length, pixels, bytes: a photo over --max-upload-mb is a
413), in every message, not only the last, since the model reads them all. Every text,
the system's and earlier answers' too, is cleaned as the page cleans what is typed
(`turn.clean_text`: control characters dropped, line ends made newlines).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from dataclasses import dataclass, field

from ..config import Config
from ..conversation import Conversation, ImagePart, Part, TextPart, Turn, VideoPart
from ..errors import InputError
from ..media.photos import Photo, read_photo
from ..media.video import Clip, ClipLimits, read_clip
from ..turn import UserInput, check_text, clean_text
from ..turn.inputs import known_clip_speech
from .errors import ApiError
from .fetch import allowed_hosts, fetch_image
from .schemas import Message

_DETAILS = ("auto", "low", "high")


@dataclass
class ChatInput:
    history: Conversation
    question: UserInput
    system_prompt: str | None  # None: the request has none, the server's own applies
    # The request's photos and clips, each read and decoded once: their parts name them by
    # memory:// URLs, which hold them only while something holds these.
    photos: list[Photo | Clip] = field(default_factory=list)


def read_messages(messages: list[Message], config: Config) -> ChatInput:
    """Check and convert `messages`; their images are held in memory (`ChatInput.photos`)."""
    photos: list[Photo | Clip] = []
    quiet: set[str] = set()  # clips whose sound is not to be transcribed
    system: list[str] = []
    turns: list[tuple[str, list[Part], int]] = []  # role, parts, index of its first message
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            system.append(_plain_text(message, index))
            continue
        parts = _parts(message, index, config, photos, quiet)
        if turns and turns[-1][0] == message.role:  # two in a row read as one
            turns[-1][1].extend(parts)
        else:
            turns.append((message.role, parts, index))
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "The last message must be the user's question (role 'user').", param="messages")
    for role, parts, index in turns:
        if role == "user":
            _check_user_turn(parts, index, config)
    *earlier, (_, last, _) = turns
    history = Conversation([Turn(role, parts) if role == "user" else
                            Turn("assistant", [TextPart("".join(p.text for p in parts if isinstance(p, TextPart)))])
                            for role, parts, _ in earlier])
    clips = [p for p in last if isinstance(p, VideoPart)]
    question = UserInput(text="\n".join(p.text for p in last if isinstance(p, TextPart)),
                         images=tuple(p.path for p in last if isinstance(p, ImagePart)),
                         videos=tuple(p.path for p in clips), clip_speech=not any(p.path in quiet for p in clips))
    return ChatInput(history, question, "\n\n".join(system) if system else None, photos)


def _plain_text(message: Message, index: int) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return _clean(content or "", f"messages[{index}].content")
    texts = []
    for number, item in enumerate(content):
        if item.get("type") != "text" or not isinstance(item.get("text"), str):
            raise ApiError(400, f"A {message.role} message may hold only text parts.",
                           param=f"messages[{index}].content[{number}]")
        texts.append(_clean(item["text"], f"messages[{index}].content[{number}].text"))
    return "\n".join(texts)


def _clean(text: str, param: str) -> str:
    try:
        return clean_text(text)
    except InputError as exc:
        raise ApiError(400, exc.message, param=param, code="invalid_text") from None


def _parts(message: Message, index: int, config: Config, photos: list[Photo | Clip], quiet: set[str]) -> list[Part]:
    """`message`'s parts; its clips asked to be looked at without their sound go in `quiet`."""
    content = message.content
    if content is None or isinstance(content, str):
        return [TextPart(_clean(content or "", f"messages[{index}].content"))]
    # Counted before any is decoded (seconds each); a turn of two such messages is counted again whole.
    _check_clip_count(sum(isinstance(item, dict) and item.get("type") == "video_url" for item in content), index,
                      config)
    parts: list[Part] = []
    for number, item in enumerate(content):
        where = f"messages[{index}].content[{number}]"
        kind = item.get("type")
        if kind == "text":
            if not isinstance(item.get("text"), str):
                raise ApiError(400, "A text part needs a 'text' string.", param=f"{where}.text")
            parts.append(TextPart(_clean(item["text"], f"{where}.text")))
        elif kind == "image_url":
            if message.role != "user":
                raise ApiError(400, "Only the user's messages may hold images.", param=where)
            photo = _read_image(item.get("image_url"), where, config, f"message{index + 1}-image{number + 1}")
            photos.append(photo)
            parts.append(ImagePart(photo.url))
        elif kind == "video_url":
            if message.role != "user":
                raise ApiError(400, "Only the user's messages may hold video clips.", param=where)
            clip = _read_clip(item.get("video_url"), where, config, f"message{index + 1}-clip{number + 1}")
            photos.append(clip)
            # An earlier turn's clip reads as it did when it was asked about: with the speech heard then.
            heard = _transcribed(item.get("video_url"), where)
            if not heard:
                quiet.add(clip.url)
            parts.append(VideoPart(clip.url, round(clip.frames.duration, 2), known_clip_speech(clip) if heard else ""))
        else:
            raise ApiError(400, f"Unsupported content part type {kind!r}: this server reads 'text', "
                                "'image_url' and 'video_url' parts.", param=f"{where}.type")
    return parts


def _read_image(value, where: str, config: Config, name: str) -> Photo:
    url, detail = (value, "auto") if isinstance(value, str) else (
        (value.get("url"), value.get("detail") or "auto") if isinstance(value, dict) else (None, "auto"))
    if not isinstance(url, str) or not url:
        raise ApiError(400, "An image_url part needs {'url': 'data:image/...;base64,...'}.", param=f"{where}.image_url")
    if detail not in _DETAILS:
        raise ApiError(400, f"Invalid image detail {detail!r}: use one of {', '.join(_DETAILS)}.",
                       param=f"{where}.image_url.detail")
    lowered = url[:16].lower()
    max_bytes = int(config.max_upload_mb * 1e6)
    param = f"{where}.image_url.url"
    if lowered.startswith(("http://", "https://")):
        allowed = allowed_hosts(config.allow_image_urls)
        if not allowed:
            raise ApiError(400, "This server does not fetch images from web addresses (it would let any client make "
                                "it reach any address, private ones included). Send the image inline as a data "
                                "URL: data:image/jpeg;base64,...", param=param, code="image_url_not_allowed")
        data, mime = fetch_image(url, allowed, max_bytes, param), ""
    elif lowered.startswith("data:"):
        data, mime = _inline(url, max_bytes, param)
    else:
        raise ApiError(400, "Images must be sent inline as data URLs (data:image/jpeg;base64,...); files on the "
                            "server are not read.", param=param, code="image_url_not_allowed")
    extension = (mimetypes.guess_extension(mime) if mime else None) or ".img"
    try:
        return read_photo(data, name=f"{name}{extension}", max_pixels=config.max_image_pixels, max_bytes=max_bytes,
                          model_pixels=config.max_pixels)
    except InputError as exc:
        status = 413 if exc.key == "photo_too_big" else 400
        raise ApiError(status, exc.message, param=param, code="invalid_image") from None


def _transcribed(value, where: str) -> bool:
    """A video_url part's "transcribe" (mmchat's own field; true when left out): whether the
    speech in the clip's sound is transcribed for the model."""
    flag = value.get("transcribe", True) if isinstance(value, dict) else True
    if not isinstance(flag, bool):
        raise ApiError(400, "A video_url part's 'transcribe' must be true or false.",
                       param=f"{where}.video_url.transcribe")
    return flag


def _read_clip(value, where: str, config: Config, name: str) -> Clip:
    """A `video_url` part (as vLLM takes it): a clip inline as a data URL, read and decoded once."""
    url = value if isinstance(value, str) else value.get("url") if isinstance(value, dict) else None
    param = f"{where}.video_url.url"
    if not isinstance(url, str) or not url:
        raise ApiError(400, "A video_url part needs {'url': 'data:video/mp4;base64,...'}.", param=f"{where}.video_url")
    if not url[:16].lower().startswith("data:"):
        raise ApiError(400, "Video clips must be sent inline as data URLs (data:video/mp4;base64,...); web "
                            "addresses and files on the server are not read.", param=param,
                       code="video_url_not_allowed")
    max_bytes = int(config.max_video_mb * 1e6)
    data, mime = _inline(url, max_bytes, param, "video")
    extension = ".gif" if mime == "image/gif" else (mimetypes.guess_extension(mime) if mime else None) or ".mp4"
    try:
        return read_clip(data, name=f"{name}{extension}", limits=ClipLimits.of(config), max_bytes=max_bytes)
    except InputError as exc:
        status = 413 if exc.key == "clip_too_big" else 400
        raise ApiError(status, exc.message, param=param, code="invalid_video") from None


def _inline(url: str, max_bytes: int, param: str, kind: str = "image") -> tuple[bytes, str]:
    """A data URL's bytes and MIME type; `kind`: "image" or "video" (a clip: video/*, or an animated GIF)."""
    header, comma, payload = url.partition(",")
    mime = header[5:].split(";")[0].strip().lower()
    allowed = ("image/",) if kind == "image" else ("video/", "image/gif")
    what, example, code = ("An image", "data:image/png", "invalid_image") if kind == "image" else (
        "A video clip", "data:video/mp4", "invalid_video")
    if not comma or not header.lower().endswith(";base64") or (mime and not mime.startswith(allowed)):
        raise ApiError(400, f"{what} data URL must look like {example};base64,<base64 bytes>.",
                       param=param, code=code)
    if len(payload) * 3 // 4 > max_bytes + 3:  # refused before decoding
        raise ApiError(413, f"{what} is {len(payload) * 3 / 4e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.",
                       param=param, code=code)
    try:
        return base64.b64decode("".join(payload.split()), validate=True), mime
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what} data URL holds text that is not valid base64.",
                       param=param, code=code) from None


def _check_clip_count(clips: int, index: int, config: Config) -> None:
    if clips > config.max_videos_per_turn:
        raise ApiError(400, f"A message holds {clips} video clips; at most {config.max_videos_per_turn} fit in one "
                            "message.", param=f"messages[{index}].content", code="too_many_videos")


def _check_user_turn(parts: list[Part], index: int, config: Config) -> None:
    images = sum(isinstance(p, ImagePart) for p in parts)
    if images > config.max_images_per_turn:
        raise ApiError(400, f"A message holds {images} images; at most {config.max_images_per_turn} fit in one "
                            "message.", param=f"messages[{index}].content", code="too_many_images")
    _check_clip_count(sum(isinstance(p, VideoPart) for p in parts), index, config)
    try:
        check_text("\n".join(p.text for p in parts if isinstance(p, TextPart)), config)
    except InputError as exc:
        raise ApiError(400, exc.message, param=f"messages[{index}].content", code="text_too_long") from None
