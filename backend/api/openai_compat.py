"""The OpenAI-compatible API under ``/v1``: what the ``openai`` clients, editors and agents speak.

``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``, streaming or not, in the same
shapes as OpenAI's (chunks, ``[DONE]``, usage with ``stream_options.include_usage``). Errors on these paths
come in OpenAI's error shape (``errors.py``). Generation itself is the chat service's, shared with ``/chat``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from backend.api.chat import client_gone, ground, wait_for_result
from backend.api.deps import ChatServiceDep, ModelServiceDep, RagDep
from backend.schemas.chat import (
    Citation,
    OpenAIAssistantMessage,
    OpenAIChatChoice,
    OpenAIChatCompletion,
    OpenAIChatRequest,
    OpenAICompletion,
    OpenAICompletionChoice,
    OpenAICompletionRequest,
    OpenAIModel,
    OpenAIModelList,
    OpenAIUsage,
    openai_finish,
)
from backend.services.chat_service import DoneEvent, Generation, TokenEvent

router = APIRouter(prefix="/v1", tags=["openai"])

STREAM_DESCRIPTION = "With stream=true: Server-Sent Events of chunks, then `data: [DONE]`."


@router.get("/models", operation_id="openaiListModels", response_model=OpenAIModelList)
def list_models(service: ModelServiceDep) -> OpenAIModelList:
    """The loaded model (the one the other /v1 routes use); empty when none is loaded."""
    current = service.current
    if current is None:
        return OpenAIModelList(data=[])
    return OpenAIModelList(
        data=[OpenAIModel(id=current.metadata.model_id, created=int(current.metadata.loaded_at.timestamp()))]
    )


@router.post(
    "/chat/completions",
    operation_id="openaiChatCompletions",
    response_model=OpenAIChatCompletion,
    responses={200: {"description": STREAM_DESCRIPTION, "content": {"text/event-stream": {}}}},
)
async def chat_completions(
    body: OpenAIChatRequest, service: ChatServiceDep, models: ModelServiceDep, rag: RagDep, request: Request
) -> Any:
    """OpenAI's chat completions; with Orchard's ``collection_id`` (and ``passages``) the answer comes from the
    collection's documents, and the response (the last chunk, when streaming) carries ``citations``."""
    params = body.sampling(body.max_completion_tokens or body.max_tokens)
    messages, citations = body.chat_messages(), None
    if body.collection_id is not None:
        messages, citations = await run_in_threadpool(ground, rag, models, body, messages, params)
    generation = await run_in_threadpool(service.start_chat, messages, params, asyncio.get_running_loop(), body.model)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _stream(generation, completion_id, created, "chat.completion.chunk", include_usage, citations=citations)
    done = await wait_for_result(generation, request)
    if done is None:
        return client_gone()
    return OpenAIChatCompletion(
        id=completion_id,
        created=created,
        model=generation.model_id,
        choices=[
            OpenAIChatChoice(
                message=OpenAIAssistantMessage(content=done.text), finish_reason=openai_finish(done.finish_reason)
            )
        ],
        usage=_usage(done),
        citations=citations,
    )


@router.post(
    "/completions",
    operation_id="openaiCompletions",
    response_model=OpenAICompletion,
    responses={200: {"description": STREAM_DESCRIPTION, "content": {"text/event-stream": {}}}},
)
async def completions(body: OpenAICompletionRequest, service: ChatServiceDep, request: Request) -> Any:
    prompt = body.prompt_text()
    generation = await run_in_threadpool(
        service.start_completion, prompt, body.sampling(body.max_tokens), asyncio.get_running_loop(), body.model
    )
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _stream(
            generation, completion_id, created, "text_completion", include_usage, echo=prompt if body.echo else ""
        )
    done = await wait_for_result(generation, request)
    if done is None:
        return client_gone()
    text = (prompt if body.echo else "") + done.text
    return OpenAICompletion(
        id=completion_id,
        created=created,
        model=generation.model_id,
        choices=[OpenAICompletionChoice(text=text, finish_reason=openai_finish(done.finish_reason))],
        usage=_usage(done),
    )


def _usage(done: DoneEvent) -> OpenAIUsage:
    u = done.usage
    return OpenAIUsage(
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, total_tokens=u.total_tokens
    )


def _stream(
    generation: Generation,
    completion_id: str,
    created: int,
    kind: str,
    include_usage: bool,
    echo: str = "",
    citations: list[Citation] | None = None,
) -> EventSourceResponse:
    chat = kind == "chat.completion.chunk"

    def chunk(choice: dict[str, Any] | None, usage: OpenAIUsage | None = None, last: bool = False) -> bytes:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": kind,
            "created": created,
            "model": generation.model_id,
            "choices": [choice] if choice else [],
        }
        if chat:
            body["system_fingerprint"] = None
        if include_usage:
            body["usage"] = usage.model_dump() if usage else None
        if last and citations is not None:
            body["citations"] = [c.model_dump() for c in citations]
        return format_sse_event(data_str=json.dumps(body))

    def piece(text: str | None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    async def events() -> AsyncIterator[bytes]:
        if chat:
            yield chunk(piece("", role=True))
        elif echo:
            yield chunk(piece(echo))
        async for event in generation.stream():
            if isinstance(event, TokenEvent):
                yield chunk(piece(event.text))
            elif isinstance(event, DoneEvent):
                yield chunk(piece(None, openai_finish(event.finish_reason)), last=True)
                if include_usage:
                    yield chunk(None, _usage(event))
            else:
                error = event.error
                body = {"error": {"message": error.message, "type": "server_error", "param": None, "code": error.code}}
                yield format_sse_event(data_str=json.dumps(body))
        yield format_sse_event(data_str="[DONE]")

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
