"""What the API accepts, as OpenAI's clients send it.

Arguments this server has no use for (`user`, `metadata`, penalties...) are accepted
and ignored, so existing client code runs unchanged; a value that asks for something
it can't do (n > 1, tools, JSON mode, a role or a content type it doesn't know) is a
400 that says so, rather than an answer that silently ignores the request.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP_SEQUENCES = 4  # as OpenAI
MAX_SPEECH_CHARS = 4096  # as OpenAI's /v1/audio/speech


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Lenient):
    include_usage: bool = False


class ResponseFormat(_Lenient):
    type: Literal["text"] = "text"


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    # Parts are checked one by one in messages.py, for messages that name the part.
    content: Union[str, list[dict[str, Any]], None] = None

    @field_validator("role", mode="before")
    @classmethod
    def _known_role(cls, role):
        if role in ("tool", "function"):
            raise ValueError("tool and function messages are not supported by this server")
        return role


class ChatCompletionRequest(_Lenient):
    model: str = ""
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, ge=0, le=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=-2**63, le=2**64 - 1)  # what torch.manual_seed takes; beyond: a 400
    n: Optional[Literal[1]] = None
    response_format: Optional[ResponseFormat] = None
    tools: Optional[list[Any]] = None
    logprobs: Optional[Literal[False]] = None
    frequency_penalty: Optional[float] = Field(None, ge=-2, le=2)
    presence_penalty: Optional[float] = Field(None, ge=-2, le=2)

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools):
        if tools:
            raise ValueError("tools (function calling) are not supported by this server")
        return tools

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        if any(not s for s in stops):
            raise ValueError("a stop sequence must not be empty")
        return stops

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])


class SpeechRequest(_Lenient):
    model: str = "tts-1"
    input: str = Field(min_length=1, max_length=MAX_SPEECH_CHARS)
    voice: str = "alloy"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    stream_format: Literal["audio"] = "audio"

    @field_validator("input")
    @classmethod
    def _words(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("the text to speak is empty")
        return text


TranscriptionFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
