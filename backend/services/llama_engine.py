"""The llama.cpp engine: GGUF files run as they are on llama-cpp-python, beside the transformers engine.

transformers stays the engine for what needs PyTorch (training, merging, adapters, any Hub model); a GGUF file loads
here by default where the optional llama.cpp part is installed (``uv sync --extra llama``; the scripts add it when a
C++ compiler is found). It is several times faster than transformers on the same weights on a CPU (FIELD-NOTES), and
on a Mac it runs on Metal.

What the chat service needs of an engine is small, and this module gives it for llama.cpp:

- :func:`load` builds the ``Llama`` with every layer on the GPU where there is one, and the context length from the
  model capped by ``ORCHARD_LLAMA_CONTEXT``; :func:`fit_verdict` counts the file and the KV cache at that context
  before a byte is read (Ollama's estimate: weights + 2 x layers x context x KV heads x head size x 2 bytes).
- :class:`LlamaTokenizer` is the part of a transformers tokenizer chat uses (encode, decode, the chat template,
  the special tokens), backed by llama.cpp's own tokenizer and the file's template, so the ids are the ones the
  model was exported with.
- :class:`LlamaDecoder` has the batch decoder's surface (:mod:`backend.services.batching`): concurrent replies
  decode together in one ``llama_decode`` per step over a KV cache they share, each sampled with its own settings
  and seed; a prompt reuses the cache of the longest prefix it shares with an earlier one (the previous turns of
  a conversation), and a cancel ends the reply after the token in progress.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import random
import time
from pathlib import Path
from typing import Any

import psutil

from backend.errors import EngineUnavailableError
from backend.schemas.model import FitVerdict
from backend.services.batching import Row
from backend.services.model_files import GgufSummary
from backend.utils.libraries import import_libraries
from backend.utils.mac_optimization import GB

logger = logging.getLogger(__name__)

ENGINE = "llama.cpp"
KV_ELEMENT_BYTES = 2  # llama.cpp keeps keys and values in f16 by default
OPENING_CONTEXT = 256  # the context Llama opens with, before load() gives it the real one
COMPUTE_OVERHEAD = 0.10  # scratch buffers for a forward, as a share of the weights (at least 64 MB)

INSTALL_HINT = (
    "GGUF models run fastest on llama.cpp, Orchard's optional part, which is not installed here. Install a C++ "
    "compiler (build-essential on Debian/Ubuntu; `xcode-select --install` on a Mac), then run scripts/start again: "
    "it adds llama-cpp-python (a one-time build of about 4 minutes)."
)


def available() -> bool:
    """Whether llama-cpp-python is installed and imports."""
    try:
        import_libraries("llama_cpp")
    except ImportError:
        return False
    return True


def require() -> None:
    """Raise :class:`EngineUnavailableError` (501) with how to install llama.cpp, where it is missing."""
    if not available():
        raise EngineUnavailableError(INSTALL_HINT, engine=ENGINE)


def context_for(summary: GgufSummary, setting: int) -> int:
    """The context a GGUF model gets: the setting, capped by what the model was made for."""
    return min(setting, summary.context_length) if summary.context_length else setting


def kv_cache_bytes(summary: GgufSummary, n_ctx: int) -> int:
    """Bytes of the KV cache at ``n_ctx`` tokens: keys and values, every layer, every KV head, in f16."""
    per_token = summary.block_count * summary.kv_heads * (summary.key_length + summary.value_length)
    return int(per_token * n_ctx * KV_ELEMENT_BYTES)


def required_bytes(summary: GgufSummary, n_ctx: int) -> int:
    """What loading takes: the weights as they are in the file, the KV cache and the compute buffers."""
    weights = summary.file.stat().st_size
    return int(weights + kv_cache_bytes(summary, n_ctx) + max(weights * COMPUTE_OVERHEAD, 64 * 1024**2))


def fit_verdict(summary: GgufSummary, n_ctx: int, device: str, available_gb: float) -> FitVerdict:
    """Whether the file fits ``device`` now at ``n_ctx`` tokens of context, with the numbers."""
    required = required_bytes(summary, n_ctx) / GB
    kv = kv_cache_bytes(summary, n_ctx) / GB
    fits = required <= available_gb
    reason = (
        f"needs {_size(required)} on {device} (the {_size(summary.file.stat().st_size / GB)} file and a "
        f"{_size(kv)} KV cache for {n_ctx:,} tokens); {available_gb:.2f} GB available"
    )
    if not fits:
        reason += "; lower ORCHARD_LLAMA_CONTEXT, free memory, or pass force=true to load anyway"
    dtype = (summary.quantization or "gguf").lower()
    return FitVerdict(
        fits=fits, dtype=dtype, device=device, required_gb=round(required, 6), available_gb=available_gb, reason=reason
    )


def _size(gb: float) -> str:
    return f"{gb:.2f} GB" if gb >= 0.1 else f"{gb * 1024:.1f} MB"


def file_fit_verdict(size_bytes: int, device: str, available_gb: float) -> FitVerdict:
    """Before a GGUF file is downloaded (its header unread): the file and the compute buffers; the KV cache for
    its context is counted again at load."""
    required = (size_bytes + max(size_bytes * COMPUTE_OVERHEAD, 64 * 1024**2)) / GB
    fits = required <= available_gb
    reason = (
        f"needs about {_size(required)} on {device} (the {_size(size_bytes / GB)} file, plus the KV cache for its "
        f"context, counted at load); {available_gb:.2f} GB available"
    )
    if not fits:
        reason += "; choose a smaller quantization, free memory, or pass force=true"
    return FitVerdict(
        fits=fits, dtype="gguf", device=device, required_gb=round(required, 6), available_gb=available_gb, reason=reason
    )


def gpu_offload() -> bool:
    """Whether this llama.cpp build can put layers on a GPU (Metal, CUDA)."""
    import_libraries("llama_cpp")
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def load(path: Path, *, n_ctx: int, device: str, sequences: int = 1) -> tuple[Any, LlamaTokenizer, str]:
    """Open a GGUF file on llama.cpp: ``(the Llama, its tokenizer, the device it runs on)``.

    Every layer goes to the GPU when ``device`` is one and the build supports it; otherwise the CPU, with a thread
    per physical core (llama.cpp's own advice: hyperthreads slow it down). The context holds up to ``sequences``
    sequences in one KV cache of ``n_ctx`` cells they share (llama.cpp's unified cache, as llama-server's parallel
    slots use it): the memory is that of one ``n_ctx`` context however many replies run.

    Raises:
        EngineUnavailableError: llama-cpp-python is not installed.
        ValueError: llama.cpp could not read the file.
    """
    require()
    from llama_cpp import Llama

    on_gpu = device != "cpu" and gpu_offload()
    threads = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    llm = Llama(
        model_path=str(path),
        n_ctx=OPENING_CONTEXT,  # Llama's own one-sequence context, replaced at once by the one chat decodes on
        n_batch=OPENING_CONTEXT,
        n_gpu_layers=-1 if on_gpu else 0,
        n_threads=threads,
        n_threads_batch=psutil.cpu_count() or threads,
        seed=random.getrandbits(31),
        verbose=False,
    )
    try:
        _open_context(llm, n_ctx=n_ctx, sequences=sequences)
    except BaseException:
        llm.close()
        raise
    return llm, LlamaTokenizer(llm), device if on_gpu else "cpu"


def _open_context(llm: Any, *, n_ctx: int, sequences: int) -> None:
    """Replace the context ``Llama`` made (one sequence) with one for ``sequences`` sequences sharing ``n_ctx``
    cells. llama-cpp-python's ``Llama`` has no parameter for it (it sets ``n_seq_max`` for embeddings only)."""
    import llama_cpp
    from llama_cpp import _internals

    params = llm.context_params
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = min(512, n_ctx)
    params.n_seq_max = max(1, min(sequences, llama_cpp.llama_max_parallel_sequences()))
    params.kv_unified = True  # one cache of n_ctx cells for all sequences, not n_ctx / n_seq_max each
    llm._ctx.close()
    llm._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    llm._n_ctx = llm.n_ctx()


def memory_bytes(llm: Any, summary: GgufSummary) -> int:
    """Bytes the loaded model holds: its weights as llama.cpp reports them, and the KV cache it allocated for its
    context (llama.cpp's state size counts only the cells in use)."""
    import llama_cpp

    return int(llama_cpp.llama_model_size(llm.model)) + kv_cache_bytes(summary, int(llm.n_ctx()))


def close(llm: Any) -> None:
    """Free the model and its context now (not when the garbage collector gets to them)."""
    llm.close()


class EndOfGeneration:
    """The tokens that end a reply (EOS, end of turn...), as llama.cpp's vocabulary marks them: ``token in eog``."""

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self._vocab = llm._model.vocab
        self._is_eog = llama_cpp.llama_vocab_is_eog

    def __contains__(self, token: object) -> bool:
        return isinstance(token, int) and bool(self._is_eog(self._vocab, token))


class LlamaTokenizer:
    """The calls chat makes of a transformers tokenizer, answered by llama.cpp's tokenizer and the file's template."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.chat_template: str | None = llm.metadata.get("tokenizer.chat_template") or None
        self.bos_token_id: int | None = _token(llm.token_bos())
        self.eos_token_id: int | None = _token(llm.token_eos())
        self.bos_token = self._text(self.bos_token_id)
        self.eos_token = self._text(self.eos_token_id)
        self.vocab_size: int = int(llm.n_vocab())
        self.eog = EndOfGeneration(llm)
        self._pieces: dict[bool, dict[int, bytes]] = {False: {}, True: {}}

    def _text(self, token: int | None) -> str | None:
        if token is None:
            return None
        return bytes(self._llm.detokenize([token], special=True)).decode("utf-8", errors="replace")

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        # add_bos asks for the BOS the file's tokenizer.ggml.add_bos_token says to add (llama_tokenize's
        # add_special), so it is added exactly where transformers would add it.
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)
        return {"input_ids": list(ids)}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self(text, add_special_tokens)["input_ids"]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """llama.cpp's detokenize (each token's piece, joined; a leading space after BOS dropped), with the pieces
        cached: chat decodes the whole reply at every token, which llama-cpp-python does piece by piece in Python."""
        special = not skip_special_tokens
        cache = self._pieces[special]
        parts = []
        for token in ids:
            piece = cache.get(token)
            if piece is None:
                piece = cache[token] = self._piece(token, special)
            parts.append(piece)
        data = b"".join(parts)
        if ids and ids[0] == self.bos_token_id and data[:1] == b" ":
            data = data[1:]
        return data.decode("utf-8", errors="replace")  # an incomplete character shows as U+FFFD until it completes

    def _piece(self, token: int, special: bool) -> bytes:
        import llama_cpp

        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._llm._model.vocab, token, buffer, size, 0, special)
            if n >= 0:
                return buffer.raw[:n]
            size = -n  # the piece is longer: llama.cpp says how long

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]],
        *,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        tokenize: bool = False,
    ) -> str | list[int]:
        """Render the conversation with the file's chat template, through transformers' own Jinja renderer (the
        same sandbox, filters and ``raise_exception`` templates expect)."""
        import_libraries()
        from transformers.utils.chat_template_utils import render_jinja_template

        template = chat_template or self.chat_template
        if not template:
            raise ValueError("this model has no chat template")
        rendered, _ = render_jinja_template(  # type: ignore[str-unpack]  # typed str; returns (texts, indices)
            conversations=[conversation],
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )
        text: str = rendered[0]
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _token(token: int) -> int | None:
    return int(token) if token is not None and token >= 0 else None


class _Sampling:
    """One row's place in the cache (its sequence id) and its sampler: the chain ``Llama.generate`` builds, with
    the request's settings and seed (the repetition penalty looks at the last 64 tokens, as in llama-cpp-python)."""

    def __init__(self, llm: Any, params: Any) -> None:
        import llama_cpp as ll

        temp = max(params.temperature, 0.0)
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        penalty = params.repetition_penalty
        parts = [ll.llama_sampler_init_penalties(llm.n_vocab(), llm.last_n_tokens_size, penalty, 0.0, 0.0)]
        if temp == 0.0:
            parts.append(ll.llama_sampler_init_greedy())
        else:
            parts += [
                ll.llama_sampler_init_top_k(params.top_k or 0),  # llama.cpp: 0 is "no top-k", as in Orchard's
                ll.llama_sampler_init_typical(1.0, 1),  # transformers' defaults: no typical sampling, no min-p
                ll.llama_sampler_init_top_p(params.top_p, 1),
                ll.llama_sampler_init_min_p(0.0, 1),
                ll.llama_sampler_init_temp(temp),
                ll.llama_sampler_init_dist(params.seed if params.seed is not None else random.getrandbits(32)),
            ]
        for part in parts:
            ll.llama_sampler_chain_add(chain, part)  # the chain owns its parts and frees them with itself
        self._chain: Any = chain
        self.seq = -1

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits at ``index`` of the last decoded batch (the chain records it)."""
        import llama_cpp

        return int(llama_cpp.llama_sampler_sample(self._chain, ctx.ctx, index))

    def close(self) -> None:
        import llama_cpp

        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


class LlamaDecoder:
    """The batch decoder's surface over llama.cpp: up to ``max_rows`` sequences decode together, one
    ``llama_decode`` per step for all of them, in one KV cache they share (:func:`load` makes the context).

    Each row holds one of the context's sequence ids while it runs. A sequence's cache outlives its reply: the next
    prompt takes the idle sequence whose cached tokens share the longest prefix with it (the previous turns of a
    conversation) and evaluates only the rest, as ``Llama.generate`` does for its one sequence. Idle caches are
    dropped, least recently used first, when a new row needs their cells.

    Cells are reserved for what a row may fill, its prompt and its longest reply (:attr:`Row.reserve`), so a step
    never runs out of them: :meth:`free_cells` says how many a newcomer may take, and the chat service leaves
    those that do not fit waiting in the queue. The decoder keeps, for each sequence, which cell holds each of its
    positions, as the unified cache does: a cell that several sequences share (a common start) counts once.

    The decoder is made once per loaded model (the caches it keeps are that model's); the "logits" it hands
    :meth:`choose` are the tokens each row's sampler already picked.
    """

    kv_bytes_per_token = 0  # the KV cache was allocated at load, for the whole context

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self.model = llm
        self.device = "cpu"  # unused by llama.cpp's rows; there for the decoder's surface
        self.rows: list[Row] = []
        self._ctx = llm._ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx.ctx)
        self.max_rows: int | None = int(llama_cpp.llama_n_seq_max(self._ctx.ctx))
        self.cells = int(self._ctx.n_ctx())
        self._n_batch = int(llama_cpp.llama_n_batch(self._ctx.ctx))
        self._batch: Any = llama_cpp.llama_batch_init(max(self._n_batch, self.max_rows), 0, 1)
        sequences = self.max_rows
        self._cached: list[list[int]] = [[] for _ in range(sequences)]  # each sequence's tokens in the cache
        self._cells_of: list[list[int]] = [[] for _ in range(sequences)]  # the cell (an id) of each of those tokens
        self._new_cell = itertools.count()
        self._last_used = [0.0] * sequences  # 0: empty
        self.evaluated = 0  # prompt tokens evaluated so far (those a cached prefix spared are not counted)
        model = llm._model.model
        # attention caches only: a recurrent state is one per sequence, not positions that can be shared
        self._whole_prefixes = not (llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))

    def new_row(self, params: Any, prompt_ids: list[int]) -> Row:
        sampling = _Sampling(self.model, params)
        return Row(key=None, ids=list(prompt_ids), length=0, processors=sampling, sample=params.temperature > 0)

    def free_cells(self) -> int:
        """Cache cells a newcomer may reserve: all of them less what the running rows hold and may still fill
        (idle sequences' caches give theirs up when needed)."""
        return self.cells - self._used({row.processors.seq for row in self.rows})

    def _used(self, seqs: set[int]) -> int:
        """Cells these sequences hold, each once however many share it, and those the running rows may still fill."""
        held = set().union(*(self._cells_of[seq] for seq in seqs))
        growth = sum(max(row.reserve - len(self._cached[row.processors.seq]), 0) for row in self.rows)
        return len(held) + growth

    # ----------------------------------------------------------------- rows in and out

    def prefill(self, rows: list[Row]) -> list[int]:
        """Give each new row a sequence (reusing its cached prefix), evaluate the rest of the prompts together and
        sample each one's first token."""
        if len(self.rows) + len(rows) > len(self._cached):
            raise RuntimeError(f"the llama.cpp context holds {len(self._cached)} sequences")
        work: list[tuple[Row, int]] = []  # each row and where its evaluation starts
        for row in rows:
            work.append((row, self._seat(row)))
            self.rows.append(row)
        try:
            self._make_room()
            firsts = self._evaluate(work)
        except BaseException:  # the newcomers leave with nothing of theirs left in the cache
            for row in rows:
                self._drop(row.processors.seq, 0)
            self.leave(rows)
            raise
        for row, _ in work:
            row.length = len(row.ids)
            self._fill(row.processors.seq, row.ids[len(self._cached[row.processors.seq]) :])
        return [firsts[id(row)] for row in rows]

    def _evaluate(self, work: list[tuple[Row, int]]) -> dict[int, int]:
        """Decode the prompts from where each one's cache ends, ``n_batch`` tokens at a time; each row's first
        token, sampled from its prompt's last position right after the decode that held it."""
        pending = [(row, at) for row, start in work for at in range(start, len(row.ids))]
        firsts: dict[int, int] = {}
        for begin in range(0, len(pending), self._n_batch):
            chunk = pending[begin : begin + self._n_batch]
            self._decode([(row.processors.seq, at, row.ids[at], at == len(row.ids) - 1) for row, at in chunk])
            for i, (row, at) in enumerate(chunk):
                if at == len(row.ids) - 1:
                    firsts[id(row)] = row.processors.sample(self._ctx, i)
        self.evaluated += len(pending)
        return firsts

    def _seat(self, row: Row) -> int:
        """Give the row the idle sequence whose cache shares the longest prefix with its prompt (else an empty one,
        else the least recently used), drop what follows that prefix; returns how many tokens are already there.

        Where another sequence, running or idle, shares a longer prefix (the same system prompt, another user), its
        cells are shared instead: in a unified cache ``llama_memory_seq_cp`` adds the row's sequence id to them,
        nothing is copied or recomputed."""
        import llama_cpp

        taken = {r.processors.seq for r in self.rows}
        idle = [seq for seq in range(len(self._cached)) if seq not in taken]
        shared = [min(_common_prefix(cached, row.ids), len(row.ids) - 1) for cached in self._cached]
        # the prompt's last token is always fed again: its logits pick the first token
        seq = max(idle, key=lambda s: (shared[s], -self._last_used[s]))
        source = max(range(len(self._cached)), key=lambda s: shared[s])
        keep = shared[seq]
        if self._whole_prefixes and shared[source] > keep and self._intact(source):
            keep = shared[source]
            self._drop(seq, 0)
            llama_cpp.llama_memory_seq_cp(self._memory, source, seq, 0, keep)
            self._cached[seq] = list(row.ids[:keep])
            self._cells_of[seq] = self._cells_of[source][:keep]  # the same cells, now also this sequence's
        elif not (self._drop(seq, keep) and self._intact(seq)):
            keep = 0  # llama.cpp cannot keep this prefix (recurrent layers, or a sliding window dropped its start)
            self._drop(seq, 0)
        row.processors.seq = seq
        return keep

    def _intact(self, seq: int) -> bool:
        """Whether the cache still holds every position of ``seq`` from 0 (a sliding-window cache drops old ones)."""
        import llama_cpp

        return not self._cached[seq] or llama_cpp.llama_memory_seq_pos_min(self._memory, seq) <= 0

    def _drop(self, seq: int, start: int) -> bool:
        """Drop sequence ``seq``'s cache from position ``start`` on (also what a failed decode may have left)."""
        import llama_cpp

        if not llama_cpp.llama_memory_seq_rm(self._memory, seq, start, -1):
            return False
        del self._cached[seq][start:]
        del self._cells_of[seq][start:]
        if not self._cached[seq]:
            self._last_used[seq] = 0.0
        return True

    def _make_room(self) -> None:
        """Drop idle sequences' caches, least recently used first, until the running rows' reservations fit."""
        taken = {row.processors.seq for row in self.rows}
        idle = sorted((seq for seq in range(len(self._cached)) if seq not in taken), key=lambda s: self._last_used[s])
        for seq in idle:
            if self._used(set(range(len(self._cached)))) <= self.cells:
                return
            self._drop(seq, 0)

    def _fill(self, seq: int, tokens: list[int]) -> None:
        """Sequence ``seq`` now also holds these tokens, each in a cell of its own."""
        self._cached[seq].extend(tokens)
        self._cells_of[seq].extend(next(self._new_cell) for _ in tokens)

    def _decode(self, tokens: list[tuple[int, int, int, bool]]) -> None:
        """One ``llama_decode`` of ``(sequence, position, token, wants logits)`` entries."""
        import llama_cpp

        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, (seq, position, token, logits) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = position
            batch.seq_id[i][0] = seq
            batch.n_seq_id[i] = 1
            batch.logits[i] = logits
        status = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if status != 0:  # 1: no room in the KV cache, 2: aborted, < 0: an error (llama.h)
            raise RuntimeError(f"llama_decode returned {status} for a batch of {len(tokens)} tokens")

    def step(self) -> list[int]:
        """Feed every row its last token and sample each one's next."""
        self._decode([(row.processors.seq, row.length, row.next_input, True) for row in self.rows])
        for row in self.rows:
            self._fill(row.processors.seq, [row.next_input])
            row.length += 1
        return [row.processors.sample(self._ctx, i) for i, row in enumerate(self.rows)]

    def choose(self, row: Row, logits: Any) -> int:
        return int(logits)

    def leave(self, leaving: list[Row]) -> None:
        """Rows leave; their sequences keep their caches for the next prompt that shares them."""
        gone = {id(row) for row in leaving}
        now = time.monotonic()
        for row in self.rows:
            if id(row) in gone:
                self._last_used[row.processors.seq] = now if self._cached[row.processors.seq] else 0.0
                row.processors.close()
        self.rows = [row for row in self.rows if id(row) not in gone]

    @property
    def size(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        """Free the samplers and the batch (C memory) before the model and its context go."""
        for row in self.rows:
            row.processors.close()
        self.rows = []
        if self._batch is not None:
            import llama_cpp

            llama_cpp.llama_batch_free(self._batch)
            self._batch = None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
