"""The OpenAI wire format: request models that refuse what they do not honour, and the error shape.

Every accepted field changes what the engine does; anything else (logprobs, penalties, n > 1, ...)
is an HTTP 400 that names the field, never a silently ignored option.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core import SamplingParams


class RequestError(Exception):
    """A request the server refuses; becomes OpenAI's error JSON."""

    def __init__(self, message: str, param: str | None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def error_body(message: str, param: str | None, code: str | None = None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Strict(BaseModel):
    # strict: "0.5" is not a number and 1 is not a bool, as in OpenAI's own API
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(Strict):
    include_usage: bool = False


class SamplingFields(Strict):
    """The fields both endpoints share; each maps onto SamplingParams or onto how we answer."""

    model: str
    max_tokens: int | None = None  # None: the endpoint's default (OpenAI's differ per endpoint)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # vLLM's extension; -1 disables it
    seed: int | None = None
    stop: str | list[str] | None = None
    ignore_eos: bool = False  # vLLM's extension: fixed-length outputs for load tests
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported")
        return n

    def sampling_params(self, default_max_tokens: int) -> SamplingParams:
        if self.stream_options is not None and not self.stream:
            raise RequestError("stream_options is only allowed when stream is true", "stream_options")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        try:
            return SamplingParams(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, seed=self.seed,
                                  max_tokens=default_max_tokens if self.max_tokens is None else self.max_tokens,
                                  stop=stop, ignore_eos=self.ignore_eos)
        except ValueError as e:  # SamplingParams names the field: "SamplingParams.top_p=2 is invalid: ..."
            field = re.match(r"SamplingParams\.(\w+)=", str(e))
            raise RequestError(str(e).removeprefix("SamplingParams."), field and field.group(1)) from e


class CompletionRequest(SamplingFields):
    prompt: str | list[int]  # text, or token ids


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1)
