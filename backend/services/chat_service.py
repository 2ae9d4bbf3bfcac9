"""Text generation with the loaded model: chat templates, sampling, streaming, stop sequences, a fair queue.

A request becomes a :class:`Generation`. Starting one (``ChatService.start``, called off the event loop)
borrows the loaded model from the process-wide cache (so unload and replace answer 409 until it ends),
renders the prompt with the tokenizer's chat template, and takes a place in the queue; each generation then
runs ``model.generate`` on its own worker thread, one at a time, first come first served. Tokens reach the
event loop through ``call_soon_threadsafe``, never by blocking it. Cancelling (the client went away, or
pressed stop) sets a flag that a stopping criterion checks after every token, so the worker ends within one
token's time.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from backend.config import Settings
from backend.errors import InvalidRequestError, ModelNotLoadedError, ServerBusyError, StudioError
from backend.schemas.chat import ChatMessage, FinishReason, SamplingParams, Usage
from backend.services.model_service import LoadedModel, ModelCache
from backend.utils.libraries import import_libraries

logger = logging.getLogger(__name__)

# For tokenizers without a chat template: a plain transcript the model can continue.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
FALLBACK_STOPS = ["\nUser:", "\nSystem:"]


@dataclass
class TokenEvent:
    text: str


@dataclass
class DoneEvent:
    text: str
    finish_reason: FinishReason
    usage: Usage


@dataclass
class ErrorEvent:
    error: StudioError


Event = TokenEvent | DoneEvent | ErrorEvent


class GenerationQueue:
    """The line of generations: first come first served, one running, at most ``size`` waiting behind it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._cond = threading.Condition()
        self._waiting: deque[Generation] = deque()
        self._running: Generation | None = None
        self._closed = False

    def join(self, generation: Generation) -> None:
        """Take a place in the line, or raise :class:`ServerBusyError` when it is full. Never blocks."""
        with self._cond:
            taken = (self._running is not None) + len(self._waiting)
            if taken > self.size:  # one generating, ``size`` waiting
                raise ServerBusyError(
                    f"{taken} chat requests are already running or waiting for the model "
                    f"(ORCHARD_CHAT_QUEUE_SIZE={self.size}); retry in a few seconds.",
                    retry_after=2,
                )
            self._waiting.append(generation)
            self._cond.notify_all()

    def withdraw(self, generation: Generation) -> bool:
        """Take a waiting generation out of the line; False if it is not waiting (running, or done)."""
        with self._cond:
            if generation in self._waiting:
                self._waiting.remove(generation)
                return True
            return False

    def next(self) -> Generation | None:
        """Block until a generation is first in line and make it the running one; None once closed."""
        with self._cond:
            self._running = None
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._running = self._waiting.popleft()
            return self._running

    def close(self) -> list[Generation]:
        """Stop handing out generations; returns those still waiting."""
        with self._cond:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            self._cond.notify_all()
            return waiting

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)


@dataclass
class Generation:
    """One request's generation: its prompt, its settings, and the events it produces."""

    id: int
    model_id: str
    prompt_ids: list[int]
    params: SamplingParams
    max_new_tokens: int
    stops: list[str]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.perf_counter)
    on_cancel: Callable[[Generation], None] | None = field(default=None, repr=False)

    def cancel(self) -> None:
        if not self.cancelled.is_set():
            self.cancelled.set()
            if self.on_cancel is not None:
                self.on_cancel(self)

    def emit(self, event: Event) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    async def stream(self) -> AsyncIterator[Event]:
        """The events until the last one (done or error). Leaving early cancels the generation."""
        try:
            while True:
                event = await self.events.get()
                yield event
                if not isinstance(event, TokenEvent):
                    return
        finally:
            self.cancel()

    async def result(self) -> DoneEvent:
        """Wait for the whole reply; raises the generation's error."""
        async for event in self.stream():
            if isinstance(event, DoneEvent):
                return event
            if isinstance(event, ErrorEvent):
                raise event.error
        raise RuntimeError("generation ended without a result")  # pragma: no cover - stream always ends so


class _Detokenizer:
    """Turns token ids into text as they arrive, holding back what may still become a stop sequence."""

    def __init__(self, tokenizer: Any, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.ids: list[int] = []
        self.text = ""  # everything decoded so far, stop sequences cut off
        self.sent = 0  # characters of ``text`` already emitted
        self.stopped = False

    def add(self, ids: list[int]) -> str:
        """Add tokens; return the text that can be emitted now."""
        self.ids.extend(ids)
        text: str = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for stop in self.stops:
            at = text.find(stop, max(0, self.sent - len(stop) + 1))
            if at != -1:
                text, self.stopped = text[:at], True
        self.text = text
        if self.stopped:
            hold = 0
        elif text.endswith("\ufffd"):  # a multi-byte character may not be complete yet
            hold = len(text) - self.sent
        else:
            hold = self._held_back(text)
        ready = text[self.sent : len(text) - hold]
        self.sent += len(ready)
        return ready

    def _held_back(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins a stop sequence."""
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-n:]):
                    longest = n
                    break
        return longest

    def flush(self) -> str:
        rest = self.text[self.sent :]
        self.sent = len(self.text)
        return rest


class ChatService:
    """Generates with the model in ``cache``; one generation at a time, the rest wait in a bounded queue."""

    def __init__(self, settings: Settings, cache: ModelCache) -> None:
        self.settings = settings
        self.cache = cache
        self.queue = GenerationQueue(settings.chat_queue_size)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._active: dict[int, tuple[Generation, LoadedModel]] = {}
        self._worker: threading.Thread | None = None
        self.recent: deque[DoneEvent] = deque(maxlen=32)  # how the last generations ended, newest last

    # ------------------------------------------------------------------ starting

    def start_chat(
        self, messages: list[ChatMessage], params: SamplingParams, loop: asyncio.AbstractEventLoop, model: str | None
    ) -> Generation:
        """Render the conversation with the chat template and start generating (call off the event loop)."""
        return self._start(params, loop, model, chat=messages)

    def start_completion(
        self, prompt: str, params: SamplingParams, loop: asyncio.AbstractEventLoop, model: str | None
    ) -> Generation:
        """Continue ``prompt`` as it is, no template (``/v1/completions``)."""
        return self._start(params, loop, model, prompt=prompt)

    def _start(
        self,
        params: SamplingParams,
        loop: asyncio.AbstractEventLoop,
        model: str | None,
        *,
        chat: list[ChatMessage] | None = None,
        prompt: str | None = None,
    ) -> Generation:
        borrowed = self.cache.borrow()
        try:
            loaded = self._check_model(borrowed, model)
            stops = list(params.stop)
            if chat is not None:
                prompt_ids, templated = self._render(loaded, chat)
                if not templated:
                    stops += FALLBACK_STOPS
            else:
                prompt_ids = list(loaded.tokenizer(prompt or "", add_special_tokens=True)["input_ids"])
            max_new = self._budget(loaded, len(prompt_ids), params.max_new_tokens)
            generation = Generation(
                id=next(self._ids),
                model_id=loaded.metadata.model_id,
                prompt_ids=prompt_ids,
                params=params,
                max_new_tokens=max_new,
                stops=stops,
                loop=loop,
                on_cancel=self._withdraw,
            )
        except BaseException:
            if borrowed is not None:
                self.cache.give_back()
            raise
        self._ensure_worker()
        with self._lock:
            self._active[generation.id] = (generation, loaded)
        try:
            self.queue.join(generation)
        except ServerBusyError:
            self._finish(generation)
            raise
        return generation

    def _ensure_worker(self) -> None:
        # One long-lived thread runs every generation: torch sets up its CPU thread pool once per calling
        # thread, which costs tens of milliseconds of time to first token on a fresh thread.
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="orchard-generate", daemon=True)
                self._worker.start()

    def _withdraw(self, generation: Generation) -> None:
        """A generation cancelled while waiting leaves the line at once and gives the model back."""
        if self.queue.withdraw(generation):
            now = time.perf_counter()
            generation.emit(self._done(generation, "", 0, "cancelled", started=now))
            self._finish(generation)

    def _check_model(self, loaded: LoadedModel | None, requested: str | None) -> LoadedModel:
        if loaded is None:
            raise ModelNotLoadedError(
                "No model is loaded. Load one first: on the Models page, or with "
                "POST /model/upload?model_path=<local model> or POST /model/download.",
            )
        current = loaded.metadata.model_id
        if requested and requested not in (current, loaded.metadata.path):
            raise ModelNotLoadedError(
                f"'{requested}' is not the loaded model; '{current}' is. Use model='{current}', or load "
                f"'{requested}' first (POST /model/upload?model_path={requested}).",
                loaded_model=current,
                requested_model=requested,
            )
        return loaded

    def _render(self, loaded: LoadedModel, messages: list[ChatMessage]) -> tuple[list[int], bool]:
        tokenizer = loaded.tokenizer
        templated = bool(getattr(tokenizer, "chat_template", None))
        conversation = [m.model_dump() for m in messages]
        try:
            text = tokenizer.apply_chat_template(
                conversation,
                chat_template=None if templated else FALLBACK_TEMPLATE,
                add_generation_prompt=True,
                tokenize=False,
            )
        except Exception as exc:  # jinja raises its own errors, e.g. a template that refuses system messages
            raise InvalidRequestError(
                f"The model's chat template refused this conversation: {exc}", model_id=loaded.metadata.model_id
            ) from exc
        # The template writes the special tokens (BOS) itself.
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(ids), templated

    def _budget(self, loaded: LoadedModel, prompt_tokens: int, requested: int | None) -> int:
        max_new = requested or self.settings.chat_max_new_tokens
        context = loaded.metadata.context_length
        if context is None:
            return max_new
        if prompt_tokens >= context:
            raise InvalidRequestError(
                f"The prompt is {prompt_tokens} tokens; '{loaded.metadata.model_id}' reads at most {context}. "
                "Shorten the conversation.",
                prompt_tokens=prompt_tokens,
                context_length=context,
            )
        return min(max_new, context - prompt_tokens)

    # ------------------------------------------------------------------ running

    def _work(self) -> None:
        while (generation := self.queue.next()) is not None:
            self._run(generation)

    def _run(self, generation: Generation) -> None:
        # Its own frame, so that nothing of the model stays referenced while the worker waits for the next one.
        with self._lock:
            loaded = self._active[generation.id][1]
        try:
            if generation.cancelled.is_set():  # cancelled just as its turn came
                done = self._done(generation, "", 0, "cancelled", started=time.perf_counter())
            else:
                done = self._generate(generation, loaded)
            self.recent.append(done)
            generation.emit(done)
        except StudioError as exc:
            generation.emit(ErrorEvent(exc))
        except Exception as exc:
            logger.exception("generation %s failed", generation.id)
            generation.emit(ErrorEvent(StudioError(f"Generation failed: {type(exc).__name__}. See the log.")))
        finally:
            self._finish(generation)

    def _finish(self, generation: Generation) -> None:
        with self._lock:
            if self._active.pop(generation.id, None) is None:
                return
        self.cache.give_back()
        generation.finished.set()

    def _generate(self, generation: Generation, loaded: LoadedModel) -> DoneEvent:
        import_libraries()
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        model, tokenizer, params = loaded.model, loaded.tokenizer, generation.params
        detok = _Detokenizer(tokenizer, generation.stops)
        started = time.perf_counter()
        marks: list[float] = []  # when each token arrived
        eos = _eos_ids(model, tokenizer)

        class Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate() first hands over the prompt
                    self.prompt_seen = True
                    return
                ids = [int(i) for i in value.reshape(-1).tolist()]
                marks.extend([time.perf_counter()] * len(ids))
                text = detok.add(ids)
                if text:
                    generation.emit(TokenEvent(text))
                if detok.stopped:
                    generation.cancel()

            def end(self) -> None:
                pass

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), generation.cancelled.is_set(), device=input_ids.device)

        config = copy.deepcopy(model.generation_config)
        sampling = params.temperature > 0
        config.update(
            max_new_tokens=generation.max_new_tokens,
            do_sample=sampling,
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling else None,
            top_k=params.top_k if sampling else None,
            repetition_penalty=params.repetition_penalty,
            pad_token_id=config.pad_token_id if config.pad_token_id is not None else tokenizer.pad_token_id,
        )
        if config.pad_token_id is None and eos:
            config.pad_token_id = eos[0]
        if params.seed is not None:
            from transformers import set_seed

            set_seed(params.seed)  # one generation at a time, so the global generators are ours
        device = next(model.parameters()).device
        input_ids = torch.tensor([generation.prompt_ids], device=device)
        with torch.inference_mode():
            model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                streamer=Streamer(),
                stopping_criteria=StoppingCriteriaList([Stop()]),
            )
        tail = detok.flush()
        if tail:
            generation.emit(TokenEvent(tail))
        produced = len(detok.ids)
        reason: FinishReason
        if detok.stopped or (detok.ids and detok.ids[-1] in eos):
            reason = "stop"
        elif generation.cancelled.is_set():
            reason = "cancelled"
        elif produced >= generation.max_new_tokens:
            reason = "length"
        else:
            reason = "stop"
        return self._done(generation, detok.text, produced, reason, started=started, marks=marks)

    def _done(
        self,
        generation: Generation,
        text: str,
        produced: int,
        reason: FinishReason,
        *,
        started: float,
        marks: list[float] | None = None,
    ) -> DoneEvent:
        marks = marks or []
        ttft = (marks[0] - started) * 1000 if marks else None
        tps = (len(marks) - 1) / (marks[-1] - marks[0]) if len(marks) > 1 and marks[-1] > marks[0] else None
        prompt = len(generation.prompt_ids)
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=produced,
            total_tokens=prompt + produced,
            time_to_first_token_ms=round(ttft, 2) if ttft is not None else None,
            tokens_per_second=round(tps, 2) if tps is not None else None,
            queue_ms=round((started - generation.created) * 1000, 2),
            total_seconds=round(time.perf_counter() - generation.created, 4),
        )
        return DoneEvent(text=text, finish_reason=reason, usage=usage)

    # ------------------------------------------------------------------ state

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every generation, stop the worker, and wait briefly for it to end."""
        for generation in self.queue.close():
            generation.emit(self._done(generation, "", 0, "cancelled", started=time.perf_counter()))
            self._finish(generation)
        with self._lock:
            running = [generation for generation, _ in self._active.values()]
            worker = self._worker
        for generation in running:
            generation.cancelled.set()
        if worker is not None:
            worker.join(timeout)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, list) else [int(eos)]
