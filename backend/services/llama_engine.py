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
- :class:`LlamaDecoder` has the batch decoder's surface (:mod:`backend.services.batching`), one sequence at a time:
  llama.cpp samples with each request's settings, reuses the KV cache of the longest common prompt prefix (the
  previous turns of a conversation), and a cancel ends the reply after the token in progress.
"""

from __future__ import annotations

import ctypes
import logging
import random
from dataclasses import dataclass, field
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


def load(path: Path, *, n_ctx: int, device: str) -> tuple[Any, LlamaTokenizer, str]:
    """Open a GGUF file on llama.cpp: ``(the Llama, its tokenizer, the device it runs on)``.

    Every layer goes to the GPU when ``device`` is one and the build supports it; otherwise the CPU, with a thread
    per physical core (llama.cpp's own advice: hyperthreads slow it down).

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
        n_ctx=n_ctx,
        n_batch=min(512, n_ctx),
        n_gpu_layers=-1 if on_gpu else 0,
        n_threads=threads,
        n_threads_batch=psutil.cpu_count() or threads,
        seed=random.getrandbits(31),
        verbose=False,
    )
    return llm, LlamaTokenizer(llm), device if on_gpu else "cpu"


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


@dataclass
class _Settings:
    """One request's sampling settings, in llama.cpp's terms."""

    temp: float
    top_p: float
    top_k: int
    repeat_penalty: float
    seed: int | None
    extra: dict[str, Any] = field(default_factory=dict)


class LlamaDecoder:
    """The batch decoder's surface over llama.cpp, one sequence at a time (``max_rows`` 1): requests beyond it wait
    in the fair queue. ``prefill`` evaluates the prompt (reusing the cached prefix) and samples the first token;
    each ``step`` feeds the last token and samples the next. The "logits" handed to :meth:`choose` are the tokens
    llama.cpp's sampler already picked."""

    max_rows: int | None = 1
    kv_bytes_per_token = 0  # the KV cache was allocated at load, for the whole context

    def __init__(self, llm: Any) -> None:
        self.model = llm
        self.device = "cpu"  # unused by llama.cpp's rows; there for the decoder's surface
        self.rows: list[Row] = []
        self._tokens: Any = None  # the running llama.cpp generator

    def new_row(self, params: Any, prompt_ids: list[int]) -> Row:
        settings = _Settings(
            temp=max(params.temperature, 0.0),
            top_p=params.top_p,
            top_k=params.top_k or 0,  # llama.cpp: 0 is "no top-k", as in Orchard's settings
            repeat_penalty=params.repetition_penalty,
            seed=params.seed,
        )
        return Row(key=None, ids=list(prompt_ids), length=0, processors=settings, sample=params.temperature > 0)

    def prefill(self, rows: list[Row]) -> list[int]:
        if self.rows or len(rows) != 1:
            raise RuntimeError("the llama.cpp engine runs one sequence at a time")
        row = rows[0]
        settings: _Settings = row.processors
        self.model.set_seed(settings.seed if settings.seed is not None else random.getrandbits(31))
        self._tokens = self.model.generate(
            row.ids,
            temp=settings.temp,
            top_p=settings.top_p,
            top_k=settings.top_k,
            min_p=0.0,  # transformers' defaults: no min-p, no typical sampling
            typical_p=1.0,
            repeat_penalty=settings.repeat_penalty,
            reset=True,  # keeps the cached prefix the new prompt shares with the last one
        )
        self.rows = [row]
        row.length = len(row.ids)
        return [next(self._tokens)]

    def step(self) -> list[int]:
        token = next(self._tokens)
        self.rows[0].length += 1
        return [token]

    def choose(self, row: Row, logits: Any) -> int:
        return int(logits)

    def leave(self, leaving: list[Row]) -> None:
        if any(row is gone for row in self.rows for gone in leaving):
            if self._tokens is not None:
                self._tokens.close()
            self._tokens, self.rows = None, []

    @property
    def size(self) -> int:
        return len(self.rows)
