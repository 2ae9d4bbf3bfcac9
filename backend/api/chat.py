"""``POST /chat``: talk to the loaded model, the reply streamed as Server-Sent Events (or whole, on request).

Events: ``token`` (``{"text": ...}``) for each piece of the reply, then ``done`` (a :class:`ChatResponse` with
the finish reason and usage), or ``error`` (``{"error": {...}}``) if generation failed after it started.
Closing the connection stops the generation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from backend.api.deps import ChatServiceDep, ModelServiceDep, RagDep
from backend.schemas.chat import ChatMessage, ChatRequest, ChatResponse, Citation, Grounding, SamplingParams
from backend.services.chat_service import DoneEvent, Generation, TokenEvent
from backend.services.model_service import ModelService
from backend.services.rag_pipeline import RagService

router = APIRouter(tags=["chat"])

SSE_DESCRIPTION = "With stream=true (the default): Server-Sent Events `token`, then `done` or `error`."


def client_gone() -> Response:
    """The answer to a client that closed the connection first (nobody reads it; nginx's 499, not a body that
    would fail the route's response model)."""
    return Response(status_code=499)


async def wait_for_result(generation: Generation, request: Request) -> DoneEvent | None:
    """The whole reply; None (and the generation cancelled) if the client goes away first."""
    task = asyncio.ensure_future(generation.result())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if await request.is_disconnected():
                generation.cancel()
                return None
    finally:
        if not task.done():
            task.cancel()


@router.post(
    "/chat",
    operation_id="chat",
    response_model=ChatResponse,
    responses={200: {"description": SSE_DESCRIPTION, "content": {"text/event-stream": {}}}},
)
async def chat(
    body: ChatRequest, service: ChatServiceDep, models: ModelServiceDep, rag: RagDep, request: Request
) -> Any:
    """Reply to the conversation with the loaded model, streaming tokens as they are generated.

    Waits in line behind other chat requests (503 with Retry-After when the line is full); 409 when no model
    is loaded.
    """
    params = SamplingParams.model_validate(body.model_dump(exclude={"messages", "stream", "collection_id", "passages"}))
    messages, citations = body.messages, list[Citation]()
    if body.collection_id is not None:
        messages, citations = await run_in_threadpool(ground, rag, models, body, body.messages, params)
    generation = await run_in_threadpool(service.start_chat, messages, params, asyncio.get_running_loop(), None)
    if not body.stream:
        done = await wait_for_result(generation, request)
        return _response(generation, done, citations) if done else client_gone()

    async def events() -> AsyncIterator[bytes]:
        async for event in generation.stream():
            if isinstance(event, TokenEvent):
                yield format_sse_event(event="token", data_str=json.dumps({"text": event.text}))
            elif isinstance(event, DoneEvent):
                done = _response(generation, event, citations)
                yield format_sse_event(event="done", data_str=done.model_dump_json())
            else:
                yield format_sse_event(event="error", data_str=json.dumps(event.error.to_body()))

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _response(generation: Generation, done: DoneEvent, citations: list[Citation]) -> ChatResponse:
    return ChatResponse(
        model=generation.model_id,
        message=ChatMessage(role="assistant", content=done.text),
        finish_reason=done.finish_reason,
        usage=done.usage,
        citations=citations,
    )


def ground(
    rag: RagService, models: ModelService, grounding: Grounding, messages: list[ChatMessage], params: SamplingParams
) -> tuple[list[ChatMessage], list[Citation]]:
    """The conversation with the collection's passages (see :meth:`RagService.ground`). The whole collection is
    used when it takes at most half of what the loaded model's context leaves after the conversation and the reply."""
    assert grounding.collection_id is not None
    loaded = models.current
    count_tokens, budget = None, None
    if loaded is not None and loaded.metadata.context_length:
        tokenizer = loaded.tokenizer

        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        conversation = sum(count_tokens(m.content) for m in messages)
        reply = params.max_new_tokens or models.settings.chat_max_new_tokens
        budget = max((loaded.metadata.context_length - conversation - reply) // 2, 0)
    return rag.ground(grounding.collection_id, messages, grounding.passages, count_tokens, budget)
