"""Text generation with the loaded model: chat templates, sampling, streaming, stop sequences, a fair queue.

A request becomes a :class:`Generation`. Starting one (``ChatService.start``, called off the event loop)
borrows the loaded model from the process-wide cache (so unload and replace answer 409 until it ends),
renders the prompt with the tokenizer's chat template, and takes a place in the queue. One long-lived worker
thread runs every generation: up to ``ORCHARD_CHAT_MAX_BATCH`` of them share each decoding step
(:mod:`backend.services.batching`); a request that arrives joins the batch at the next step, one that ends
leaves it, and the rest wait in line, first come first served. Tokens reach the event loop through
``call_soon_threadsafe``, never by blocking it. Cancelling (the client went away, or pressed stop) sets a flag
checked after every step, so a generation ends within one token's time and the others go on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Container
from dataclasses import dataclass, field
from typing import Any

from backend.config import Settings
from backend.errors import InvalidRequestError, ModelNotLoadedError, ServerBusyError, StudioError
from backend.schemas.chat import ChatMessage, FinishReason, SamplingParams, Usage
from backend.services.batching import BatchDecoder, Decoder, Row
from backend.services.llama_engine import LlamaDecoder
from backend.services.model_service import LoadedModel, ModelCache
from backend.utils.mac_optimization import GB, MACOptimizer

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
    """The line of generations: first come first served; up to ``slots`` share the running batch, and at most
    ``size`` more wait behind them (past that, :class:`ServerBusyError`)."""

    def __init__(self, size: int, slots: int = 1) -> None:
        self.size = size
        self.slots = slots
        self._cond = threading.Condition()
        self._waiting: deque[Generation] = deque()
        self._running: list[Generation] = []
        self._closed = False

    def join(self, generation: Generation) -> None:
        """Take a place in the line, or raise :class:`ServerBusyError` when it is full. Never blocks."""
        with self._cond:
            taken = len(self._running) + len(self._waiting)
            if taken >= self.slots + self.size:
                raise ServerBusyError(
                    f"{taken} chat requests are already running or waiting for the model "
                    f"(ORCHARD_CHAT_MAX_BATCH={self.slots}, ORCHARD_CHAT_QUEUE_SIZE={self.size}); "
                    "retry in a few seconds.",
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

    def take(
        self, limit: int, *, block: bool, fits: Callable[[Generation], bool] | None = None
    ) -> list[Generation] | None:
        """Move up to ``limit`` waiting generations into the batch, in order, while ``fits`` says the next one has
        room. With ``block``, wait until there is at least one. None once the queue is closed."""
        with self._cond:
            while block and not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            taken: list[Generation] = []
            while (
                self._waiting
                and len(taken) < limit
                and len(self._running) < self.slots
                and (fits is None or fits(self._waiting[0]))
            ):
                generation = self._waiting.popleft()
                self._running.append(generation)
                taken.append(generation)
            return taken

    def done(self, generation: Generation) -> None:
        """A generation left the batch: its slot is free."""
        with self._cond:
            if generation in self._running:
                self._running.remove(generation)

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

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)


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


@dataclass
class _Sequence:
    """A generation while it is in the batch: its row, its detokenizer, when its tokens came."""

    generation: Generation
    row: Row
    detok: _Detokenizer
    eos: Container[int]
    started: float
    marks: list[float] = field(default_factory=list)

    @classmethod
    def start(cls, generation: Generation, loaded: LoadedModel, decoder: Decoder) -> _Sequence:
        row = decoder.new_row(generation.params, generation.prompt_ids)
        row.reserve = len(generation.prompt_ids) + generation.max_new_tokens
        seq = cls(
            generation=generation,
            row=row,
            detok=_Detokenizer(loaded.tokenizer, generation.stops),
            eos=_eos_ids(loaded),
            started=time.perf_counter(),
        )
        row.key = seq
        return seq


class ChatService:
    """Generates with the model in ``cache``: up to ``ORCHARD_CHAT_MAX_BATCH`` replies share each decoding step,
    the rest wait in a bounded queue."""

    def __init__(self, settings: Settings, cache: ModelCache, optimizer: MACOptimizer | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.queue = GenerationQueue(settings.chat_queue_size, settings.chat_max_batch)
        self.optimizer = optimizer or MACOptimizer.from_settings(settings)  # its memory figures bound the batch
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
            if not prompt_ids:  # a model without BOS given an empty prompt: nothing to continue from
                raise InvalidRequestError("The prompt is empty: give the model some text to continue.", param="prompt")
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
            self._finish(generation)
            generation.emit(self._done(generation, "", 0, "cancelled", started=now))

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
        """The batch loop: admit who is waiting (up to the free slots), decode one step for everyone, repeat."""
        decoder: Decoder | None = None
        while True:
            if decoder is not None and decoder.size == 0:
                decoder = None  # nothing of the last batch's model stays referenced while the worker waits
            if decoder is None:  # a new batch starts with the first in line
                first = self.queue.take(1, block=True)
                if first is None:
                    return
                decoder = self._admit_all(None, first)
            more = self.queue.take(self._free_slots(decoder), block=False, fits=self._kv_fits(decoder))
            if more is None:  # shutting down: whoever is still in the batch ends as cancelled
                for row in decoder.rows if decoder is not None else []:
                    self._end(row.key, "cancelled")
                return
            decoder = self._admit_all(decoder, more)
            if decoder is not None and decoder.size:
                self._step(decoder)

    def _admit_all(self, decoder: Decoder | None, generations: list[Generation]) -> Decoder | None:
        """Prefill the newcomers together, pick each one's first token, and keep in the batch those not done."""
        seqs = []
        for generation in generations:
            with self._lock:
                loaded = self._active[generation.id][1]
            if decoder is None:
                decoder = make_decoder(loaded)
            seqs.append(_Sequence.start(generation, loaded, decoder))
            del loaded
        if decoder is not None and seqs:
            self._admit(decoder, seqs)
        return decoder

    def _free_slots(self, decoder: Decoder | None) -> int:
        """How many more sequences may join now: the setting less those running, and at most the decoder's own
        bound (one for llama.cpp, and for a model whose cache cannot be padded: sliding-window layers)."""
        running = decoder.size if decoder is not None else 0
        limit = self.queue.slots if decoder is None or decoder.max_rows is None else decoder.max_rows
        return max(min(self.queue.slots, limit) - running, 0)

    def _kv_fits(self, decoder: Decoder | None) -> Callable[[Generation], bool]:
        """Whether the next in line's KV cache (prompt + reply at most) fits beside the running batch and those
        admitted before it: in the cache's free cells where the cache is allocated up front (llama.cpp), else in
        the device's free memory (:meth:`_memory_fits`). Measured when the queue first asks, not on every step."""
        if decoder is None or decoder.size == 0:
            return lambda generation: True
        if decoder.kv_bytes_per_token:
            return self._memory_fits(decoder)
        left: list[float] = []  # free cells, once counted

        def fits(generation: Generation) -> bool:
            if not left:
                cells = decoder.free_cells()
                left.append(float("inf") if cells is None else cells)
            need = len(generation.prompt_ids) + generation.max_new_tokens
            if need > left[0]:
                return False
            left[0] -= need  # the queue takes it: the next one counts what is left after it
            return True

        return fits

    def _memory_fits(self, decoder: Decoder) -> Callable[[Generation], bool]:
        """The transformers batch's cache holds every row at the batch's width (left padding) and grows by a column
        a step: with newcomers, each row may come to hold the new width plus what it may still generate. Whether
        that, less what the batch holds now, fits in the memory free on the device."""
        rows = decoder.rows
        width = max(row.length for row in rows)  # the batch's cache width: its longest row has no padding
        growth = [max(row.reserve - row.length, 0) for row in rows]
        room: list[float] = []  # the free memory in tokens of one row, once measured
        admitted: list[Generation] = []

        def fits(generation: Generation) -> bool:
            if not room:
                free = self.optimizer.memory_available_gb(decoder.device.type) * GB
                room.append(free / decoder.kv_bytes_per_token)
            newcomers = [*admitted, generation]
            wide = max(width, *(len(g.prompt_ids) for g in newcomers))
            peak = sum(wide + more for more in growth) + sum(wide + g.max_new_tokens for g in newcomers)
            if peak - len(rows) * width > room[0]:
                return False
            admitted.append(generation)  # the queue takes it: the next one is counted beside it
            return True

        return fits

    def _admit(self, decoder: Decoder, seqs: list[_Sequence]) -> None:
        """Prefill new sequences in one forward and take their first tokens; those that end leave at once."""
        live = []
        for seq in seqs:  # one look at each flag: a sequence is either ended here or prefilled
            if seq.generation.cancelled.is_set():  # cancelled just as its turn came
                self._end(seq, "cancelled")
            else:
                live.append(seq)
        seqs = live
        if not seqs:
            return
        try:
            logits = decoder.prefill([seq.row for seq in seqs])
        except Exception as exc:
            for seq in seqs:
                self._fail(seq, exc)
            return
        done = [seq.row for i, seq in enumerate(seqs) if not self._accept(seq, decoder.choose(seq.row, logits[i]))]
        decoder.leave(done)

    def _step(self, decoder: Decoder) -> None:
        """One decoding step for the whole batch; the sequences that end leave it."""
        try:
            logits = decoder.step()
        except Exception as exc:  # the batch cannot go on: every sequence in it ends with the error
            for row in decoder.rows:
                self._fail(row.key, exc)
            decoder.leave(list(decoder.rows))
            return
        leaving = []
        for i, row in enumerate(decoder.rows):
            seq: _Sequence = row.key
            if seq.generation.cancelled.is_set():
                self._end(seq, "cancelled")
                leaving.append(row)
            elif not self._accept(seq, decoder.choose(row, logits[i])):
                leaving.append(row)
        decoder.leave(leaving)

    def _accept(self, seq: _Sequence, token: int) -> bool:
        """Take a sequence's new token: stream its text; end it at EOS, a stop sequence, its length or a cancel.
        Returns whether it goes on."""
        row, generation = seq.row, seq.generation
        row.ids.append(token)
        row.next_input = token
        seq.marks.append(time.perf_counter())
        text = seq.detok.add([token])
        if text:
            generation.emit(TokenEvent(text))
        if token in seq.eos or seq.detok.stopped:
            self._end(seq, "stop")
        elif generation.cancelled.is_set():
            self._end(seq, "cancelled")
        elif len(seq.detok.ids) >= generation.max_new_tokens:
            self._end(seq, "length")
        else:
            return True
        return False

    def _end(self, seq: _Sequence, reason: FinishReason) -> None:
        generation = seq.generation
        tail = seq.detok.flush()
        if tail:
            generation.emit(TokenEvent(tail))
        done = self._done(generation, seq.detok.text, len(seq.detok.ids), reason, started=seq.started, marks=seq.marks)
        self.recent.append(done)
        # The model is given back before the reply is delivered: a client that unloads right after its reply
        # must not find its own generation still holding the model.
        self._finish(generation)
        generation.emit(done)

    def _fail(self, seq: _Sequence, exc: Exception) -> None:
        if isinstance(exc, StudioError):
            error = exc
        else:
            logger.error("generation %s failed", seq.generation.id, exc_info=exc)
            error = StudioError(f"Generation failed: {type(exc).__name__}. See the log.")
        self._finish(seq.generation)
        seq.generation.emit(ErrorEvent(error))

    def _finish(self, generation: Generation) -> None:
        self.queue.done(generation)
        with self._lock:
            if self._active.pop(generation.id, None) is None:
                return
        self.cache.give_back()
        generation.finished.set()

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
            self._finish(generation)
            generation.emit(self._done(generation, "", 0, "cancelled", started=time.perf_counter()))
        with self._lock:
            running = [generation for generation, _ in self._active.values()]
            worker = self._worker
        for generation in running:
            generation.cancelled.set()
        if worker is not None:
            worker.join(timeout)


def make_decoder(loaded: LoadedModel) -> Decoder:
    """The decoder of the loaded model's engine: a new batch on transformers; on llama.cpp the model's one decoder,
    which keeps its sequences' caches between batches."""
    if loaded.engine == "llama.cpp":
        decoder: LlamaDecoder = loaded.decoder
        return decoder
    return BatchDecoder(loaded.model)


def _eos_ids(loaded: LoadedModel) -> Container[int]:
    """The tokens that end a reply: the generation config's EOS ids (transformers), llama.cpp's end-of-generation
    tokens (llama.cpp)."""
    if loaded.engine == "llama.cpp":
        eog: Container[int] = loaded.tokenizer.eog
        return eog
    tokenizer = loaded.tokenizer
    eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, list) else [int(eos)]
