"""The HTTP routes, in OpenAI's shape: /v1/models, /v1/completions, /v1/chat/completions, /health.

Build with `create_app(llm)`; the app starts its engine loop on startup and stops it on shutdown.
A client that disconnects aborts its request, which frees its KV blocks at once.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..engine import LLM, Prompt
from .engine_loop import EngineLoop, Event, Stream
from .protocol import ChatRequest, CompletionRequest, RequestError, SamplingFields, error_body


def create_app(llm: LLM, model_name: str | None = None) -> FastAPI:
    name = model_name or llm.path.name
    engine = EngineLoop(llm)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="minfer", lifespan=lifespan)
    app.state.engine = engine
    _error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **asdict(engine.stats)}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "minfer"}]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await _answer(request, engine, name, body, body.prompt, "prompt", 16)  # OpenAI's default: 16

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        try:  # renders the template only; reads the tokenizer bundle, so safe off the engine thread
            prompt = llm.chat_prompt([m.model_dump() for m in body.messages])
        except Exception as e:  # no template, or the template refused these messages
            raise RequestError(f"cannot apply the chat template: {e}", "messages") from e
        return await _answer(request, engine, name, body, prompt, "messages", llm.max_model_len)

    return app


async def _answer(request: Request, engine: EngineLoop, name: str, body: SamplingFields, prompt: Prompt,
                  prompt_field: str, default_max_tokens: int) -> Response:
    if body.model != name:
        raise RequestError(f"the model {body.model!r} does not exist; this server serves {name!r}", "model",
                           status=404, code="model_not_found")
    params = body.sampling_params(default_max_tokens)
    try:
        stream = await engine.submit(prompt, params)
    except ValueError as e:  # the engine's own checks: the prompt, or prompt + max_tokens too big for the KV cache
        raise RequestError(str(e), "max_tokens" if "max_tokens" in str(e) else prompt_field) from e
    chat = prompt_field == "messages"
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": ("chat.completion" if chat else "text_completion") + (".chunk" if body.stream and chat else ""),
            "created": int(time.time()), "model": name}
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_sse(engine, stream, head, chat, usage), media_type="text/event-stream")
    return await _whole(request, engine, stream, head, chat)


def _choice(chat: bool, stream: bool, text: str, finish: str | None, first: bool = False) -> dict:
    choice: dict = {"index": 0, "logprobs": None, "finish_reason": finish}
    if not chat:
        choice["text"] = text
    elif not stream:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["delta"] = ({"role": "assistant"} if first else {}) | ({"content": text} if text or first else {})
    return choice


def _usage(stream: Stream, last: Event) -> dict:
    return {"prompt_tokens": stream.prompt_tokens, "completion_tokens": last.completion_tokens,
            "total_tokens": stream.prompt_tokens + last.completion_tokens}


def _sse_data(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


async def _sse(engine: EngineLoop, stream: Stream, head: dict, chat: bool, include_usage: bool) -> AsyncIterator[str]:
    try:
        first = True
        async for event in stream:
            if event.text or event.finish_reason or first:
                yield _sse_data({**head, "choices": [_choice(chat, True, event.text, event.finish_reason, first)]})
                first = False
        if include_usage:
            yield _sse_data({**head, "choices": [], "usage": _usage(stream, event)})
        yield "data: [DONE]\n\n"
    except Exception as e:  # the engine failed or is shutting down; the client's SDK raises on this
        yield _sse_data(error_body(str(e), None, kind="server_error"))
    finally:  # also runs when the client disconnected and the response was cancelled
        engine.abort(stream.req_id)


async def _whole(request: Request, engine: EngineLoop, stream: Stream, head: dict, chat: bool) -> Response:
    async def collect() -> tuple[str, Event]:
        parts = [event async for event in stream]
        return "".join(e.text for e in parts), parts[-1]

    async def disconnected() -> None:  # the body is read, so the next message is the client leaving
        while (await request.receive())["type"] != "http.disconnect":
            pass

    result, gone = asyncio.ensure_future(collect()), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        result.cancel()  # a no-op when it is done
        engine.abort(stream.req_id)
    if not result.done():  # cancelled above: the client left first
        return Response(status_code=499)  # nginx's "client closed request"; nobody is there to read it
    text, last = result.result()
    return JSONResponse({**head, "choices": [_choice(chat, False, text, last.finish_reason)],
                         "usage": _usage(stream, last)})


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def refused(_: Request, e: RequestError) -> JSONResponse:
        return JSONResponse(error_body(e.message, e.param, e.code), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        """OpenAI answers 400 (FastAPI would say 422) and names the top-level field at fault."""
        err = e.errors()[0]
        loc = [str(x) for x in err["loc"] if x != "body"]
        if err["type"] == "json_invalid":
            return JSONResponse(error_body(f"malformed JSON body: {err['msg']}", None), status_code=400)
        param = loc[0] if loc else None
        message = (f"unknown or unsupported field {param!r}" if err["type"] == "extra_forbidden"
                   else f"{'.'.join(loc) or 'body'}: {err['msg']}")
        return JSONResponse(error_body(message, param), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(e.detail), None), status_code=e.status_code)
