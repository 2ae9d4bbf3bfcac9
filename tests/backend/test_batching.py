"""Several people, one model: concurrent chat requests share each decoding step instead of queuing."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.errors import ServerBusyError
from backend.schemas.chat import ChatMessage, SamplingParams
from backend.services.batching import WEIGHT_FIRST_ROWS, BatchDecoder, kv_bytes_per_token, use_weight_first
from backend.services.chat_service import ChatService, DoneEvent, Generation, TokenEvent
from backend.services.model_service import ModelService
from backend.utils.mac_optimization import GB, MACOptimizer
from tests.factories import make_model
from tests.fakes import FakeProbe

PROMPTS = [
    "hello there",
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods",
    "def add(a, b):",
    "x",
]


@pytest.fixture(scope="module")
def chat_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("batching") / "tiny-llama", "llama", context_length=2048)


@pytest.fixture(params=["llama", "llama, W @ x.T", "gpt2"])
def chat(
    request: pytest.FixtureRequest, settings: Settings, chat_llama: Path, model_store: Path
) -> Iterator[ChatService]:
    """A chat service over a loaded model: Llama (rotary positions) with PyTorch's own linear layers and with the
    weight-first products the decoder picks where the BLAS is faster that way, and GPT-2 (learned positions)."""
    folder = model_store / "tiny-gpt2" if request.param == "gpt2" else chat_llama
    service = ModelService(settings)
    model, _, _ = service.load_local(folder)
    if request.param == "llama":
        model._orchard_weight_first = False  # decided: the decoder does not measure it again
    elif request.param == "llama, W @ x.T":
        use_weight_first(model)
    chat = ChatService(settings, service.cache)
    yield chat
    chat.shutdown()


def start(chat: ChatService, loop: asyncio.AbstractEventLoop, prompt: str, **params: object) -> Generation:
    sampling = SamplingParams(**{"temperature": 0, "max_new_tokens": 40, **params})  # type: ignore[arg-type]
    return chat.start_chat([ChatMessage(role="user", content=prompt)], sampling, loop, None)


async def reply(chat: ChatService, prompt: str, **params: object) -> DoneEvent:
    loop = asyncio.get_running_loop()
    generation = await loop.run_in_executor(None, lambda: start(chat, loop, prompt, **params))
    return await generation.result()


def test_concurrent_greedy_replies_are_the_ones_each_gets_alone(chat: ChatService) -> None:
    async def scenario() -> None:
        alone = [await reply(chat, p) for p in PROMPTS]
        together = await asyncio.gather(*(reply(chat, p) for p in PROMPTS))
        for a, b in zip(alone, together, strict=True):
            assert (b.text, b.finish_reason, b.usage.completion_tokens) == (
                a.text,
                a.finish_reason,
                a.usage.completion_tokens,
            )

    asyncio.run(scenario())


def test_a_request_joins_a_running_batch_at_the_next_step(chat: ChatService) -> None:
    """A long reply is under way; shorter and longer prompts join it mid-flight and still get their own replies."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        expected = {p: await reply(chat, p, max_new_tokens=60) for p in PROMPTS}
        first = await loop.run_in_executor(None, lambda: start(chat, loop, PROMPTS[0], max_new_tokens=60))
        streamed: list[str] = []
        async for event in first.stream():
            if isinstance(event, TokenEvent):
                streamed.append(event.text)
            if len(streamed) == 5:  # the first is generating: now the others arrive
                break
        assert len(streamed) == 5
        others = asyncio.gather(*(reply(chat, p, max_new_tokens=60) for p in PROMPTS[1:]))
        assert chat.queue.slots > 1
        for prompt, done in zip(PROMPTS[1:], await others, strict=True):
            assert done.text == expected[prompt].text, prompt

    # Leaving the first stream early cancelled it: the others were unaffected by its row going away.
    asyncio.run(scenario())
    assert any(done.finish_reason == "cancelled" for done in chat.recent)


def test_one_client_cancelling_leaves_the_others_running(chat: ChatService) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        expected = [await reply(chat, p, max_new_tokens=80) for p in PROMPTS]
        gens = [await loop.run_in_executor(None, lambda p=p: start(chat, loop, p, max_new_tokens=80)) for p in PROMPTS]

        async def collect(generation: Generation, stop_after: int | None) -> DoneEvent | None:
            tokens = 0
            async for event in generation.stream():
                if isinstance(event, TokenEvent):
                    tokens += 1
                    if stop_after is not None and tokens >= stop_after:
                        generation.cancel()  # the stop button
                elif isinstance(event, DoneEvent):
                    return event
            return None

        results = await asyncio.gather(*(collect(g, 3 if i == 1 else None) for i, g in enumerate(gens)))
        cancelled = results[1]
        assert cancelled is not None and cancelled.finish_reason == "cancelled"
        assert cancelled.usage.completion_tokens < expected[1].usage.completion_tokens
        for i in (0, 2, 3):
            done = results[i]
            assert (
                done is not None and done.text == expected[i].text and done.finish_reason == expected[i].finish_reason
            )

    asyncio.run(scenario())
    assert chat.active == 0 and chat.cache.in_use == 0


def test_sampling_settings_stay_with_each_request(chat: ChatService) -> None:
    """A seeded, sampled reply is the same alone and beside greedy ones; the greedy ones are unchanged by it."""

    async def scenario() -> None:
        sampled = {"temperature": 1.2, "top_p": 0.9, "top_k": 50, "seed": 11, "max_new_tokens": 30}
        alone = await reply(chat, PROMPTS[1], **sampled)
        greedy_alone = await reply(chat, PROMPTS[0], max_new_tokens=30)
        together = await asyncio.gather(
            reply(chat, PROMPTS[1], **sampled),
            reply(chat, PROMPTS[0], max_new_tokens=30),
            reply(chat, PROMPTS[1], **{**sampled, "seed": 12}),
        )
        assert together[0].text == alone.text
        assert together[1].text == greedy_alone.text
        assert together[2].text != alone.text  # another seed, another reply
        stop = greedy_alone.text[3:6]
        stopped = await reply(chat, PROMPTS[0], max_new_tokens=30, stop=[stop])
        assert stopped.finish_reason == "stop" and stopped.text == greedy_alone.text[: greedy_alone.text.find(stop)]

    asyncio.run(scenario())


def test_the_batch_is_bounded_and_the_queue_still_answers_503(settings: Settings, model_store: Path) -> None:
    settings.chat_max_batch, settings.chat_queue_size = 2, 1
    service = ModelService(settings)
    service.load_local(model_store / "tiny-gpt2")
    chat = ChatService(settings, service.cache)
    gate = threading.Event()
    original = chat._admit

    def held(decoder: object, seqs: object) -> None:  # the worker waits at each admission until the gate opens
        gate.wait(30)
        original(decoder, seqs)  # type: ignore[arg-type]

    chat._admit = held  # type: ignore[method-assign]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gens = [
            await loop.run_in_executor(None, lambda: start(chat, loop, "hello", max_new_tokens=5)) for _ in range(3)
        ]
        deadline = time.monotonic() + 10
        while chat.queue.running + chat.queue.waiting < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert chat.queue.running <= 2
        with pytest.raises(ServerBusyError) as busy:  # two in the batch and one waiting: full
            start(chat, loop, "hello")
        assert busy.value.headers == {"Retry-After": "2"}
        gate.set()
        done = [await g.result() for g in gens]
        assert all(d.usage.completion_tokens == 5 for d in done)

    try:
        asyncio.run(scenario())
    finally:
        chat.shutdown()


def test_no_more_share_the_batch_than_the_kv_cache_has_memory_for(settings: Settings, model_store: Path) -> None:
    """With no memory to spare, sequences run one at a time (the first always runs); the rest wait their turn."""
    service = ModelService(settings)
    service.load_local(model_store / "tiny-gpt2")
    settings.memory_safety_margin_gb = 1e6  # the optimizer's free memory, less this margin: nothing to spare
    chat = ChatService(settings, service.cache)
    most = 0

    async def scenario() -> list[DoneEvent]:
        nonlocal most
        tasks = [asyncio.ensure_future(reply(chat, p, max_new_tokens=30)) for p in PROMPTS]
        while not all(t.done() for t in tasks):
            most = max(most, chat.queue.running)
            await asyncio.sleep(0.001)
        return [t.result() for t in tasks]

    try:
        done = asyncio.run(scenario())
    finally:
        chat.shutdown()
    assert most == 1
    assert all(d.usage.completion_tokens > 0 for d in done)


def test_as_many_share_the_batch_as_the_kv_cache_has_memory_for(settings: Settings, tmp_path: Path) -> None:
    """Free memory for 2.2 replies' KV caches: the first reply's cache will grow into one of them, so one more joins
    it and the other two wait in the queue (the machine is described by its probe, whose free memory stays put; the
    third would fit only once the second reply has made about 1,500 tokens)."""
    service = ModelService(settings)
    # 4 KiB of cache a token, 7.5 MiB a reply: the optimizer's figures, in thousandths of a GB, resolve 2.2 replies
    model, _, _ = service.load_local(make_model(tmp_path / "wide", hidden_size=512, context_length=2048))
    reply_tokens = 16 + 1900  # about 16 for the rendered prompt, 1900 for the reply
    spare = 2.2 * kv_bytes_per_token(model) * reply_tokens
    probe = FakeProbe(system_available=int(settings.memory_safety_margin_gb * GB + spare))
    chat = ChatService(settings, service.cache, MACOptimizer.from_settings(settings, probe))

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        gens = [
            await loop.run_in_executor(None, lambda: start(chat, loop, "hello", max_new_tokens=1900)) for _ in range(4)
        ]
        assert all(abs(len(g.prompt_ids) + g.max_new_tokens - reply_tokens) < 10 for g in gens)
        deadline = time.monotonic() + 20
        while chat.queue.running + chat.queue.waiting < 4 or chat.queue.running < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # a few more steps: no one else is let in
        seen = (chat.queue.running, chat.queue.waiting)
        for g in gens:
            g.cancel()
        for g in gens:
            await g.result()
        return seen

    try:
        assert asyncio.run(scenario()) == (2, 2)
    finally:
        chat.shutdown()


def test_a_short_prompt_beside_a_long_one_is_counted_at_the_batch_width(settings: Settings, tmp_path: Path) -> None:
    """The batch's cache is left-padded to its longest row: a short newcomer beside a reply to a 1,000-token prompt
    would hold 1,000 positions and more, not its own few. With memory for its own length and not for the width, it
    waits for the long reply to end."""
    service = ModelService(settings)
    model, _, _ = service.load_local(make_model(tmp_path / "wide", hidden_size=512, context_length=2048))
    probe = FakeProbe()
    chat = ChatService(settings, service.cache, MACOptimizer.from_settings(settings, probe))

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        long = await loop.run_in_executor(
            None, lambda: start(chat, loop, "the cat sat on the mat " * 60, max_new_tokens=900)
        )
        width = len(long.prompt_ids)
        assert 850 < width < 1100 and long.max_new_tokens == 900
        # its own prompt and reply (about 16 + 900) beside the long reply's growth fit; at the batch's width they do not
        own, padded = 900 + 16 + 900, 900 + width + 900
        tokens = (own + padded) / 2
        probe.system_available = int(settings.memory_safety_margin_gb * GB + tokens * kv_bytes_per_token(model))
        short = await loop.run_in_executor(None, lambda: start(chat, loop, "hello", max_new_tokens=900))
        deadline = time.monotonic() + 20
        while chat.queue.waiting < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # many steps of the long reply: the short one is still not let in
        seen = (chat.queue.running, chat.queue.waiting)
        long.cancel()
        assert (await short.result()).usage.completion_tokens > 0  # and once the long reply is gone, it runs
        return seen

    try:
        assert asyncio.run(scenario()) == (1, 1)
    finally:
        chat.shutdown()


def test_weight_first_linear_layers_compute_the_same_logits(chat_llama: Path) -> None:
    """W @ x.T for a few rows, PyTorch's product beyond: the logits of 1 to 8 rows and of a long prompt agree with the
    plain model's to float rounding; applying it twice changes nothing; the decoder on CPU decides once per model."""
    import torch
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(chat_llama).eval()
    ours = AutoModelForCausalLM.from_pretrained(chat_llama).eval()
    use_weight_first(ours)
    use_weight_first(ours)
    linears = [m for m in ours.modules() if type(m) is torch.nn.Linear]
    assert linears and all("forward" in vars(m) for m in linears)
    copied = copy.deepcopy(ours)  # its layers multiply their own weights
    assert all(m.forward.__self__ is m for m in copied.modules() if type(m) is torch.nn.Linear)
    with torch.inference_mode():
        for shape in [(1, 1), (4, 1), (WEIGHT_FIRST_ROWS, 1), (WEIGHT_FIRST_ROWS + 1, 1), (3, 17)]:
            ids = torch.randint(5, 200, shape)
            assert torch.allclose(ours(ids).logits, plain(ids).logits, atol=1e-5, rtol=1e-4), shape

    fresh = AutoModelForCausalLM.from_pretrained(chat_llama).eval()
    BatchDecoder(fresh)
    decided = fresh._orchard_weight_first
    assert decided in (True, False)
    assert all(("forward" in vars(m)) == decided for m in fresh.modules() if type(m) is torch.nn.Linear)
