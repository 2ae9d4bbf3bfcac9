"""Step-level batching for the transformers engine: requests share one forward pass per decoding step.

A request joins the running batch at the next step: the prompts that arrived since the last step are prefilled
together (left-padded, their own KV cache), then that cache is left-padded to the batch's length and stacked onto
the batch's (or the batch's padded to its length).
Each step feeds every sequence its last token with its own position id and an attention mask that hides the
padding, so a greedy reply is the one it would get alone. A sequence that finishes or is cancelled leaves the
batch at once (its rows are dropped, and padding columns no sequence needs any more are trimmed). Every sequence
keeps its own sampling settings (temperature, top-p, top-k, repetition penalty, its own seeded generator).

Measured on CPU (FIELD-NOTES): one forward over a batch of 8 costs far less than 8 forwards; transformers' own
continuous batching (paged attention) is slower than sequential on CPU, so this is the path for CPU and MPS.

On CPU the decoder also measures, once per model, whether the BLAS multiplies a few rows by a weight faster as
``W @ x.T`` than as PyTorch's ``x @ W.T`` (MKL on x86: about twice as fast at 2 to 4 rows), and if so makes the
model's linear layers multiply that way for inputs of up to :data:`WEIGHT_FIRST_ROWS` rows (:func:`use_weight_first`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from inspect import signature
from types import MethodType
from typing import Any, Protocol

from backend.utils.libraries import import_libraries

logger = logging.getLogger(__name__)

WEIGHT_FIRST_ROWS = 8  # decoding steps and last-position logits; a prefill's many rows keep PyTorch's own product


@dataclass
class Row:
    """One sequence in the batch: what it feeds next and how it picks tokens."""

    key: Any  # the caller's handle (a Generation)
    ids: list[int]  # prompt and generated tokens, for the repetition penalty
    length: int  # real tokens in the cache (its next position id)
    next_input: int = -1
    processors: Any = None  # a LogitsProcessorList, or None for plain greedy
    sample: bool = False
    generator: Any = None
    reserve: int = 0  # cache positions it may fill: its prompt and its longest reply


class Decoder(Protocol):
    """What the chat service's batch loop asks of an engine: rows in (``new_row``, ``prefill``), one decoding step
    for every row (``step``), each row's next token (``choose``), rows out (``leave``). :class:`BatchDecoder` is
    the transformers engine's; :class:`~backend.services.llama_engine.LlamaDecoder` is llama.cpp's."""

    model: Any
    device: Any
    rows: list[Row]
    max_rows: int | None  # None: as many as the setting and memory allow
    kv_bytes_per_token: int  # what one more token of one more row costs; 0 when the cache is allocated up front

    def free_cells(self) -> int | None: ...  # cache positions a newcomer may reserve; None: bounded by memory only

    def new_row(self, params: Any, prompt_ids: list[int]) -> Row: ...
    def prefill(self, rows: list[Row]) -> Any: ...
    def step(self) -> Any: ...
    def choose(self, row: Row, logits: Any) -> int: ...
    def leave(self, leaving: list[Row]) -> None: ...
    @property
    def size(self) -> int: ...


class BatchDecoder:
    """Holds the batch's KV cache and attention mask; prefills new rows and decodes one step for all.

    Args:
        model: A causal LM whose cache is a ``DynamicCache`` of full-attention layers.
    """

    def __init__(self, model: Any) -> None:
        import_libraries()
        import torch

        self.model = model
        self.device = next(model.parameters()).device
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: Any = None  # [rows, cache length]: 1 real, 0 padding
        self.max_rows = None if self.can_batch(model) else 1
        self.kv_bytes_per_token = kv_bytes_per_token(model)
        self._torch = torch
        if self.device.type == "cpu" and not hasattr(model, "_orchard_weight_first"):
            model._orchard_weight_first = weight_first_is_faster(model)
            if model._orchard_weight_first:
                use_weight_first(model)
        # A prefill needs the logits of each prompt's last position only: the LM head over every position of a
        # batch of prompts costs as much as the rest of a small model's forward.
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in signature(model.forward).parameters else {}

    def new_row(self, params: Any, prompt_ids: list[int]) -> Row:
        """A row for a prompt, with transformers' logits processors for its sampling settings."""
        sampling = params.temperature > 0
        processors, generator = make_processors(params, self.device, sampling)
        return Row(
            key=None, ids=list(prompt_ids), length=0, processors=processors, sample=sampling, generator=generator
        )

    def free_cells(self) -> None:
        """The cache grows with the batch: how many rows fit is a question of memory (the chat service asks)."""
        return None

    @staticmethod
    def can_batch(model: Any) -> bool:
        """Whether rows of different lengths may share this model's cache (no sliding-window layers)."""
        config = model.config
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
            layer_types: list[str] = list(getattr(config, "layer_types", None) or [])
            return bool(layer_types) and all(t == "full_attention" for t in layer_types)
        return True

    # ----------------------------------------------------------------- rows in and out

    def prefill(self, rows: list[Row]) -> Any:
        r"""Run the new rows' prompts together (left-padded, in one forward), add them to the batch, and return
        the logits of each one's last position, ``[len(rows), vocab]``. A row that ends at its first token
        simply :meth:`leave`\ s again."""
        import_libraries()
        from transformers import DynamicCache

        torch = self._torch
        width = max(len(row.ids) for row in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long, device=self.device)
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            ids[i, width - len(row.ids) :] = torch.tensor(row.ids, device=self.device)
            mask[i, width - len(row.ids) :] = 1
            row.length = len(row.ids)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
                cache=DynamicCache(config=self.model.config),
                use_cache=True,
                **self._last_logits,
            )
        self._stack(out.cache, mask, rows)
        return out.logits[:, -1, :].float()

    def _stack(self, cache: Any, mask: Any, rows: list[Row]) -> None:
        """Put prefilled rows under the batch's, left-padding whichever side is shorter."""
        torch = self._torch
        if self.cache is None:
            self.cache, self.mask, self.rows = cache, mask, list(rows)
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)], dim=0)
            mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)], dim=0)
        self.mask = torch.cat([_left_pad_mask(self.mask, width), _left_pad_mask(mask, width)], dim=0)
        self.rows.extend(rows)

    def leave(self, leaving: list[Row]) -> None:
        """Drop these rows; trim the padding columns no remaining row needs."""
        torch = self._torch
        keep = [i for i, row in enumerate(self.rows) if not any(row is gone for gone in leaving)]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.rows = [self.rows[i] for i in keep]
        self.mask = self.mask[index]
        pad = int((self.mask.cumsum(dim=1) == 0).sum(dim=1).min())  # leading columns that are padding in every row
        self.mask = self.mask[:, pad:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, pad:, :]
            layer.values = layer.values[index, :, pad:, :]

    # ----------------------------------------------------------------- decoding

    def step(self) -> Any:
        """Feed every row its next input; return the logits for each row's next token, ``[rows, vocab]``."""
        torch = self._torch
        inputs = torch.tensor([[row.next_input] for row in self.rows], device=self.device)
        positions = torch.tensor([[row.length] for row in self.rows], device=self.device)
        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=torch.long, device=self.device)], 1)
        with torch.inference_mode():
            out = self.model(
                input_ids=inputs,
                attention_mask=self.mask,
                position_ids=positions,
                cache=self.cache,
                use_cache=True,
            )
        self.cache = out.cache
        for row in self.rows:
            row.length += 1
        return out.logits[:, -1, :].float()

    def choose(self, row: Row, logits: Any) -> int:
        """The row's next token from its logits ``[vocab]``, by its own settings."""
        torch = self._torch
        scores = logits[None]
        if row.processors is not None:
            scores = row.processors(torch.tensor([row.ids], device=self.device), scores)
        if not row.sample:
            return int(scores.argmax(dim=-1))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=row.generator))

    @property
    def size(self) -> int:
        return len(self.rows)


def weight_first_is_faster(model: Any, rows: int = 4, repeats: int = 15) -> bool:
    """Whether ``W @ x.T`` beats ``F.linear`` by a clear margin (15 %) for ``rows`` rows through the model's largest
    linear layer inside its blocks (the output head aside), on its own weights, dtype and threads; each runs once
    untimed (the first touch of freshly loaded weights), then the two are timed in turn and each keeps its best
    time, so a busy machine slows both alike."""
    import torch
    from torch.nn import functional

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    layers = [m for m in model.modules() if type(m) is torch.nn.Linear and m is not head]
    if not layers:
        return False
    layer = max(layers, key=lambda m: m.weight.numel())
    weight = layer.weight
    x = torch.randn(rows, layer.in_features, dtype=weight.dtype, device=weight.device)
    ways: dict[str, Callable[[], Any]] = {
        "plain": lambda: functional.linear(x, weight),
        "weight first": lambda: torch.matmul(weight, x.T).T.contiguous(),
    }
    best = dict.fromkeys(ways, float("inf"))
    with torch.inference_mode():
        for way in ways.values():
            way()
        for _ in range(repeats):
            for name, way in ways.items():
                started = time.perf_counter()
                way()
                best[name] = min(best[name], time.perf_counter() - started)
    faster = best["weight first"] < 0.85 * best["plain"]
    logger.info(
        "linear layers at %d rows: %.3f ms as x @ W.T, %.3f ms as W @ x.T; %s",
        rows,
        best["plain"] * 1000,
        best["weight first"] * 1000,
        f"decoding multiplies W @ x.T up to {WEIGHT_FIRST_ROWS} rows" if faster else "keeping x @ W.T",
    )
    return faster


def use_weight_first(model: Any) -> None:
    """Make each of the model's ``nn.Linear`` layers compute ``W @ x.T`` (transposed back) for inputs of up to
    :data:`WEIGHT_FIRST_ROWS` rows, and PyTorch's own ``x @ W.T`` beyond; the same product either way, up to
    float rounding. Layers that are subclasses (quantized, LoRA wrappers) are left alone; their inner layers are not."""
    import torch

    for module in model.modules():
        if type(module) is torch.nn.Linear and "forward" not in vars(module):
            module.forward = MethodType(_weight_first_forward, module)  # type: ignore[method-assign]
    model._orchard_weight_first = True


def _weight_first_forward(self: Any, x: Any) -> Any:
    """``nn.Linear.forward`` as ``W @ x.T`` for a few rows; bound to each layer (a deep copy rebinds it)."""
    import torch

    rows = x.numel() // self.in_features
    if rows > WEIGHT_FIRST_ROWS or x.dtype != self.weight.dtype:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    out = torch.matmul(self.weight, x.reshape(rows, self.in_features).T).T.contiguous()
    if self.bias is not None:
        out = out + self.bias
    return out.reshape(*x.shape[:-1], self.out_features)


def kv_bytes_per_token(model: Any) -> int:
    """Bytes one token of one sequence holds in the KV cache: keys and values, every layer, every KV head."""
    config = model.config
    layers = int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 1)
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    hidden = int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 0)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    element = next(model.parameters()).element_size()
    return int(2 * layers * kv_heads * head_dim * element)


def _left_pad(tensor: Any, width: int) -> Any:
    """``[b, h, t, d]`` padded with zeros on the left of ``t`` to ``width``."""
    import torch

    missing = width - tensor.shape[2]
    if missing <= 0:
        return tensor
    pad = torch.zeros((*tensor.shape[:2], missing, tensor.shape[3]), dtype=tensor.dtype, device=tensor.device)
    return torch.cat([pad, tensor], dim=2)


def _left_pad_mask(mask: Any, width: int) -> Any:
    import torch

    missing = width - mask.shape[1]
    if missing <= 0:
        return mask
    return torch.cat([torch.zeros((mask.shape[0], missing), dtype=mask.dtype, device=mask.device), mask], dim=1)


def make_processors(params: Any, device: Any, sample: bool) -> tuple[Any, Any]:
    """transformers' own logits processors and a seeded generator for one request's sampling settings."""
    import_libraries()
    import torch
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    generator = None
    if sample:
        processors.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k:
            processors.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            processors.append(TopPLogitsWarper(params.top_p))
        if params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed)
    return (processors or None), generator
