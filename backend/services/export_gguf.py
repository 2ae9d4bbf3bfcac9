"""GGUF export: a causal LM folder (or one merged with a LoRA adapter) written as one GGUF file that llama.cpp,
Ollama and LM Studio load, then checked against the source model before it counts.

Built on the ``gguf`` package (llama.cpp's own Python side): its writer, its HF→GGUF tensor-name maps, its numpy
quantizers and its special-vocab reader. What this module adds is what each architecture needs on top of the name
map, and the check:

- Llama and Mistral: the q/k projections are permuted for llama.cpp's rotary layout (adjacent pairs, not halves);
- GPT-2: the Conv1D weights are stored ``[in, out]`` and are transposed;
- tied embeddings: ``output.weight`` is left out and llama.cpp reuses ``token_embd.weight``;
- ``rope.freq_base`` is always written (a wrong default loads silently and gives wrong logits).

Tokenizer metadata comes from one source, the tokenizer chat and training use: its tokens and merges, the
pre-tokenizer named from ``tokenizer.json``'s structure, ``add_bos_token`` from what the tokenizer does, the end of
turn from what the chat template writes after a reply, and the chat template chat renders with.

The file is written tensor by tensor (one in memory at a time), in two passes: every tensor's shape and type
first (the header), then the data, with progress and a cancel check between tensors.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import InvalidRequestError
from backend.schemas.exports import ExportCheck, ExportInfo, ExportSpec
from backend.services import llama_engine
from backend.services.chat_service import FALLBACK_STOPS, FALLBACK_TEMPLATE
from backend.utils.libraries import import_libraries


@dataclass(frozen=True)
class Architecture:
    """How one Hugging Face architecture maps onto a llama.cpp one."""

    gguf_arch: str  # gguf.MODEL_ARCH member name
    permute_qk: bool = False
    transposed: tuple[str, ...] = ()  # weight-name suffixes stored [in, out] (Conv1D)
    skipped: tuple[str, ...] = ()  # buffers that are not weights


ARCHITECTURES: dict[str, Architecture] = {
    "LlamaForCausalLM": Architecture("LLAMA", permute_qk=True, skipped=("rotary_emb.inv_freq",)),
    "MistralForCausalLM": Architecture("LLAMA", permute_qk=True, skipped=("rotary_emb.inv_freq",)),
    "Qwen2ForCausalLM": Architecture("QWEN2", skipped=("rotary_emb.inv_freq",)),
    "GPT2LMHeadModel": Architecture(
        "GPT2",
        transposed=("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"),
        skipped=(".attn.bias", ".attn.masked_bias"),
    ),
}

# Types the gguf package quantizes in numpy: name -> (GGMLQuantizationType name, LlamaFileType name, bits/weight)
NUMPY_TYPES: dict[str, tuple[str, str, float]] = {
    "f32": ("F32", "ALL_F32", 32.0),
    "f16": ("F16", "MOSTLY_F16", 16.0),
    "bf16": ("BF16", "MOSTLY_BF16", 16.0),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0", 8.5),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1", 6.0),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0", 5.5),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1", 5.0),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0", 4.5),
}
# K-quants: only llama.cpp's llama-quantize writes them (from an f16 export). Approximate bits/weight.
K_QUANTS: dict[str, tuple[str, float]] = {
    "q6_k": ("Q6_K", 6.6),
    "q5_k_m": ("Q5_K_M", 5.7),
    "q5_k_s": ("Q5_K_S", 5.5),
    "q4_k_m": ("Q4_K_M", 4.9),
    "q4_k_s": ("Q4_K_S", 4.6),
    "q3_k_m": ("Q3_K_M", 3.9),
    "q2_k": ("Q2_K", 3.0),
}
QUANTIZATIONS = (*NUMPY_TYPES, *K_QUANTS)
# Below 8 bits the output projection keeps 8 (llama-quantize keeps it at 6 bits or more for the same reason).
LOW_BIT = frozenset({"q5_1", "q5_0", "q4_1", "q4_0"})

# llama.cpp names its BPE pre-tokenizers (``tokenizer.ggml.pre``) after the split regexes they apply. A wrong name
# loads silently and tokenizes differently, so an unknown structure is refused rather than guessed.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPLIT_PRE_TOKENIZERS = {LLAMA3_REGEX: "llama-bpe", QWEN2_REGEX: "qwen2", GPT2_REGEX: "gpt-2"}


def supported_list() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def expected_bytes(num_parameters: int, quantization: str) -> int:
    """Roughly how large an export of ``num_parameters`` weights at ``quantization`` will be."""
    bits = NUMPY_TYPES[quantization][2] if quantization in NUMPY_TYPES else K_QUANTS[quantization][1]
    return int(num_parameters * bits / 8) + 1_000_000  # + the tokenizer and the header


# ---------------------------------------------------------------------------------------------- the source


@dataclass
class Source:
    """What an export reads: the config, the tokenizer, and the weights (a folder's safetensors, or a state dict
    in memory when an adapter was merged)."""

    folder: Path
    config: Any  # transformers PretrainedConfig
    tokenizer: Any
    state_dict: dict[str, Any] | None = None  # torch tensors; None = stream from the folder's safetensors

    @property
    def architecture(self) -> str:
        return str((self.config.architectures or ["?"])[0])

    def tensor_names(self) -> list[tuple[str, tuple[int, ...]]]:
        if self.state_dict is not None:
            return [(k, tuple(v.shape)) for k, v in self.state_dict.items()]
        from safetensors import safe_open

        names: list[tuple[str, tuple[int, ...]]] = []
        for file in self._files():
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    names.append((key, tuple(f.get_slice(key).get_shape())))
        return names

    def tensors(self) -> Iterator[tuple[str, Any]]:
        """Every weight as a float32 numpy array, one at a time."""
        if self.state_dict is not None:
            for key, value in self.state_dict.items():
                yield key, value.detach().float().cpu().numpy()
            return
        from safetensors import safe_open

        for file in self._files():
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118
                    yield key, f.get_tensor(key).float().numpy()

    def _files(self) -> list[Path]:
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [self.folder / s for s in shards]
        return sorted(self.folder.glob("*.safetensors"))


def check_architecture(config: dict[str, Any]) -> Architecture:
    """The mapping for a model's config, or a 400 naming the supported ones (before any work)."""
    archs = config.get("architectures") or []
    name = str(archs[0]) if archs else str(config.get("model_type") or "unknown")
    if name not in ARCHITECTURES:
        raise InvalidRequestError(
            f"Exporting '{name}' models to GGUF is not supported; supported architectures: {supported_list()}.",
            architecture=name,
            supported=sorted(ARCHITECTURES),
        )
    return ARCHITECTURES[name]


# ---------------------------------------------------------------------------------------------- the tokenizer


@dataclass
class TokenizerMeta:
    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE with byte fallback)
    pre: str
    tokens: list[bytes]
    types: list[int]
    scores: list[float] | None
    merges: list[str]
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    chat_template: str
    eot_id: int | None
    stops: list[str] = field(default_factory=list)  # what ends a reply, as text (for the Modelfile)


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for a byte-level BPE tokenizer's pre-tokenizer, read from its structure."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        regex = (parts[0].get("pattern") or {}).get("Regex")
        if regex in SPLIT_PRE_TOKENIZERS:
            return SPLIT_PRE_TOKENIZERS[regex]
    raise InvalidRequestError(
        "This tokenizer's pre-tokenizer is not one llama.cpp is known to reproduce (byte-level GPT-2, Llama 3, "
        "Qwen2 or SmolLM splitting); exporting it would tokenize differently in llama.cpp.",
        pre_tokenizer=kinds,
    )


def chat_template_of(tokenizer: Any) -> tuple[str, bool]:
    """The template chat renders with (the model's own, or Orchard's fallback) and whether it is the model's."""
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, str) and own:
        return own, True
    return FALLBACK_TEMPLATE, False


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    return ids


def end_of_turn(tokenizer: Any, template: str) -> int | None:
    """The special token the template writes right after an assistant reply (``<|im_end|>``, ``</s>``...)."""
    marker = "Orchardreplymarker"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": marker}],
            chat_template=template,
            tokenize=False,
        )
    except Exception:
        return None
    after = text[text.rfind(marker) + len(marker) :]
    specials = _special_ids(tokenizer)
    for token_id in tokenizer(after, add_special_tokens=False)["input_ids"][:3]:
        if token_id in specials:
            return int(token_id)
    return None


def tokenizer_metadata(source: Source, n_vocab: int) -> TokenizerMeta:
    import gguf

    tokenizer = source.tokenizer
    tokenizer_file = source.folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise InvalidRequestError(
            "GGUF export needs the model's tokenizer.json (a fast tokenizer); this model has none.",
            model_path=str(source.folder),
        )
    spec = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    model_spec = spec.get("model") or {}
    if model_spec.get("type") != "BPE":
        raise InvalidRequestError(
            f"GGUF export supports BPE tokenizers; this one is {model_spec.get('type')!r}.",
            tokenizer=model_spec.get("type"),
        )
    specials = _special_ids(tokenizer)
    scores: list[float] | None = None
    tokens: list[bytes] = []
    types: list[int] = []
    if model_spec.get("byte_fallback"):  # SentencePiece converted to BPE (Llama 2, TinyLlama, Mistral v0.1)
        model, pre = "llama", "default"
        vocab = gguf.LlamaHfVocab(source.folder)
        scores = []
        for text, score, kind in vocab.all_tokens():
            tokens.append(bytes(text))
            scores.append(score)
            types.append(int(kind))
    else:
        model, pre = "gpt2", pre_tokenizer_name(spec)
        by_id = {i: t for t, i in tokenizer.get_vocab().items()}
        added = tokenizer.added_tokens_decoder
        for i in range(min(n_vocab, max(by_id) + 1)):
            if i in added:
                tokens.append(added[i].content.encode("utf-8"))
                types.append(int(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED))
            elif i in by_id:
                tokens.append(by_id[i].encode("utf-8"))
                types.append(int(gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL))
            else:
                tokens.append(f"[PAD{i}]".encode())
                types.append(int(gguf.TokenType.UNUSED))
    for i in range(len(tokens), n_vocab):  # the embedding has more rows than the tokenizer has tokens
        tokens.append(f"[PAD{i}]".encode())
        types.append(int(gguf.TokenType.UNUSED))
        if scores is not None:
            scores.append(-1000.0)

    special = gguf.SpecialVocab(source.folder, load_merges=model == "gpt2", n_vocab=n_vocab)
    # What the tokenizer does, rather than what its files say it does: the ids a plain call adds.
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = len(full) > len(plain) and bos is not None and full[0] == bos
    add_eos = len(full) > len(plain) and eos is not None and full[-1] == eos
    template, own = chat_template_of(tokenizer)
    eot = end_of_turn(tokenizer, template)
    ids = dict(special.special_token_ids)
    for typ, value in (("bos", bos), ("eos", eos), ("pad", tokenizer.pad_token_id), ("unk", tokenizer.unk_token_id)):
        if isinstance(value, int) and value < n_vocab:
            ids[typ] = value
    stops = [tokenizer.convert_ids_to_tokens(t) for t in {eos, eot} if isinstance(t, int)]
    if not own:
        stops += FALLBACK_STOPS
    return TokenizerMeta(
        model=model,
        pre=pre,
        tokens=tokens,
        types=types,
        scores=scores,
        merges=special.merges,
        special_ids=ids,
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=template,
        eot_id=eot,
        stops=sorted(set(stops)),
    )


# ---------------------------------------------------------------------------------------------- hyperparameters


def _rope(config: Any) -> tuple[float, dict[str, Any]]:
    params = dict(getattr(config, "rope_parameters", None) or {})
    scaling = getattr(config, "rope_scaling", None)
    if isinstance(scaling, dict):
        params = {**scaling, **params}
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    return float(theta if theta is not None else 10000.0), params


def llama3_rope_factors(config: Any, params: dict[str, Any]) -> Any:
    """llama.cpp's ``rope_freqs`` for Llama 3.1-style rope scaling (per frequency: 1, ``factor``, or smoothed)."""
    base, _ = _rope(config)
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = float(params.get("factor", 8.0))
    low, high = float(params.get("low_freq_factor", 1.0)), float(params.get("high_freq_factor", 4.0))
    old_context = float(params.get("original_max_position_embeddings", 8192))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_context / high:
            factors.append(1.0)
        elif wavelen > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def write_hyperparameters(writer: Any, arch: Architecture, config: Any) -> dict[str, Any]:
    """The architecture's numbers; returns extra tensors the architecture needs (Llama 3 rope factors)."""
    import gguf

    extra: dict[str, Any] = {}
    if arch.gguf_arch == "GPT2":
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        return extra
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    if head_dim * heads != config.hidden_size:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    theta, params = _rope(config)
    writer.add_rope_freq_base(theta)
    rope_type = params.get("rope_type") or params.get("type") or "default"
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(params["factor"]))
    elif rope_type == "llama3" and arch.gguf_arch == "LLAMA":
        extra["rope_freqs.weight"] = llama3_rope_factors(config, params)
    elif rope_type != "default":
        raise InvalidRequestError(
            f"This model's rope scaling ({rope_type!r}) is not supported for GGUF export; default, linear and "
            "llama3 are.",
            rope_type=rope_type,
        )
    if getattr(config, "use_sliding_window", False) or (
        arch.gguf_arch == "LLAMA"
        and getattr(config, "sliding_window", None)
        and config.sliding_window < config.max_position_embeddings
    ):
        raise InvalidRequestError(
            "This model attends through a sliding window, which its llama.cpp architecture does not apply; "
            "the export would answer differently on long prompts.",
            sliding_window=config.sliding_window,
        )
    return extra


# ---------------------------------------------------------------------------------------------- tensors


def permute_qk(weights: Any, n_head: int) -> Any:
    """llama.cpp's rotary layout: HF stores each head's rotary halves ``[x0..x(d/2-1), y0..]``, llama.cpp
    interleaved pairs. ``n_head`` is the number of heads of this projection (the kv heads for k)."""
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


@dataclass
class PlannedTensor:
    hf_name: str | None  # None for a tensor the export makes (rope factors)
    name: str
    qtype: str  # GGMLQuantizationType member name
    shape: tuple[int, ...]


def _target_type(name: str, shape: tuple[int, ...], quantization: str) -> str:
    import gguf

    wanted = NUMPY_TYPES[quantization][0]
    if len(shape) <= 1 or name.startswith("position_embd") or name.endswith("_norm.weight"):
        return "F32"
    if quantization in LOW_BIT and name.startswith("output."):
        wanted = "Q8_0"
    if wanted in ("F32", "F16", "BF16"):
        return wanted
    block, _ = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[wanted]]
    return wanted if shape[-1] % block == 0 else "F16"  # rows that do not fill whole blocks stay f16, as in llama.cpp


def plan_tensors(source: Source, arch: Architecture, quantization: str) -> list[PlannedTensor]:
    import gguf

    config = source.config
    layers = config.n_layer if arch.gguf_arch == "GPT2" else config.num_hidden_layers
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_arch], layers)
    listed = source.tensor_names()
    have = {k for k, _ in listed}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    planned: list[PlannedTensor] = []
    for hf_name, shape in listed:
        if any(hf_name.endswith(s) for s in arch.skipped):
            continue
        if hf_name == "lm_head.weight" and (tied or not have - {hf_name}):
            continue  # tied: llama.cpp reuses token_embd.weight
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise InvalidRequestError(
                f"The weight '{hf_name}' has no place in a GGUF '{arch.gguf_arch.lower()}' model; this checkpoint "
                "is not the plain architecture.",
                tensor=hf_name,
            )
        out_shape = tuple(reversed(shape)) if any(hf_name.endswith(s) for s in arch.transposed) else shape
        planned.append(PlannedTensor(hf_name, name, _target_type(name, out_shape, quantization), out_shape))
    return planned


def transform(source: Source, arch: Architecture, hf_name: str, data: Any) -> Any:
    config = source.config
    if arch.permute_qk and hf_name.endswith("q_proj.weight"):
        return permute_qk(data, config.num_attention_heads)
    if arch.permute_qk and hf_name.endswith("k_proj.weight"):
        return permute_qk(data, getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    if any(hf_name.endswith(s) for s in arch.transposed):
        return np.ascontiguousarray(data.T)
    return data


def encode(data: Any, qtype: str) -> Any:
    import gguf

    if qtype == "F32":
        return data.astype(np.float32)
    if qtype == "F16":
        return data.astype(np.float16)
    return gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType[qtype])


@dataclass
class WriteReport:
    tensors: int
    tensor_types: dict[str, int]
    num_parameters: int
    tokenizer: TokenizerMeta


def write_gguf(
    source: Source,
    path: Path,
    quantization: str,
    *,
    name: str,
    on_tensor: Callable[[int, int], None] | None = None,
    check_stop: Callable[[], None] | None = None,
) -> WriteReport:
    """Write ``source`` as one GGUF file at ``path`` (numpy types only). ``on_tensor(done, total)`` reports
    progress; ``check_stop()`` may raise between tensors to stop (the caller removes the partial file)."""
    import_libraries()
    import gguf

    arch = check_architecture(source.config.to_dict())
    planned = plan_tensors(source, arch, quantization)
    n_vocab = next(p.shape[0] for p in planned if p.name == "token_embd.weight")
    meta = tokenizer_metadata(source, n_vocab)

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[arch.gguf_arch]])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        extra = write_hyperparameters(writer, arch, source.config)
        writer.add_vocab_size(n_vocab)
        writer.add_file_type(int(gguf.LlamaFileType[NUMPY_TYPES[quantization][1]]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_tokenizer_model(meta.model)
        writer.add_tokenizer_pre(meta.pre)
        writer.add_token_list(meta.tokens)
        writer.add_token_types(meta.types)
        if meta.scores is not None:
            writer.add_token_scores(meta.scores)
        if meta.merges:
            writer.add_token_merges(meta.merges)
        for typ, token_id in meta.special_ids.items():
            handler = getattr(writer, f"add_{typ}_token_id", None)
            if handler is not None:
                handler(token_id)
        if meta.eot_id is not None:
            writer.add_eot_token_id(meta.eot_id)
        writer.add_add_bos_token(meta.add_bos)
        writer.add_add_eos_token(meta.add_eos)
        writer.add_chat_template(meta.chat_template)

        for tensor_name, data in extra.items():
            planned.append(PlannedTensor(None, tensor_name, "F32", tuple(data.shape)))
        by_hf = {p.hf_name: p for p in planned if p.hf_name is not None}
        # Pass 1: every tensor's name, shape and type (the header), computed without touching the data.
        for p in planned:
            qtype = gguf.GGMLQuantizationType[p.qtype]
            byte_shape = gguf.quant_shape_to_byte_shape(p.shape, qtype) if p.qtype not in ("F32", "F16") else p.shape
            dtype = {"F32": np.float32, "F16": np.float16}.get(p.qtype, np.uint8)
            nbytes = int(np.prod(byte_shape)) * np.dtype(dtype).itemsize
            writer.add_tensor_info(p.name, byte_shape, np.dtype(dtype), nbytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        # Pass 2: the data, in the same order.
        total, done, counts, params = len(planned), 0, dict[str, int](), 0
        pending = {p.hf_name: p for p in planned if p.hf_name is not None}
        out: dict[str, Any] = {}
        order = [p.name for p in planned]
        written = 0

        def flush() -> None:
            nonlocal written, done
            while written < len(order) and order[written] in out:
                writer.write_tensor_data(out.pop(order[written]))
                written += 1
                done += 1
                if on_tensor is not None:
                    on_tensor(done, total)

        for hf_name, data in source.tensors():
            if hf_name not in by_hf:
                continue
            if check_stop is not None:
                check_stop()
            p = pending.pop(hf_name)
            arr = transform(source, arch, hf_name, data)
            out[p.name] = encode(arr, p.qtype)
            counts[p.qtype] = counts.get(p.qtype, 0) + 1
            params += int(np.prod(p.shape))
            flush()
        for p in planned:
            if p.hf_name is None:
                out[p.name] = extra[p.name]
                counts["F32"] = counts.get("F32", 0) + 1
        flush()
        if written != len(order):
            raise RuntimeError(f"{len(order) - written} tensor(s) were not written")
    finally:
        writer.close()
    return WriteReport(tensors=total, tensor_types=counts, num_parameters=params, tokenizer=meta)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- the Modelfile


def ollama_template(tokenizer: Any, template: str) -> str | None:
    """The chat template as an Ollama template (``.System``, ``.Prompt``, ``.Response``), found by rendering the
    Jinja template around marker strings. None when the template does not split that way."""

    def render(messages: list[dict[str, str]], generation: bool) -> str:
        return str(
            tokenizer.apply_chat_template(
                messages, chat_template=template, add_generation_prompt=generation, tokenize=False
            )
        )

    system, prompt, response = "Orchardsystemmarker", "Orchardpromptmarker", "Orchardresponsemarker"
    try:
        ask = render([{"role": "user", "content": prompt}], True)
        full = render([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], False)
    except Exception:
        return None
    if ask.count(prompt) != 1 or full.count(response) != 1 or not full.startswith(ask):
        return None
    before_prompt, after_prompt = ask.split(prompt)
    before_response = full[len(ask) : full.index(response)]
    after_response = full[full.index(response) + len(response) :]
    if before_response.strip():  # the reply does not start right after the generation prompt
        return None  # (whitespace there is what the model writes first, as it does in Orchard's chat)
    head = before_prompt
    try:
        with_system = render([{"role": "system", "content": system}, {"role": "user", "content": prompt}], True)
        if with_system.count(system) == 1 and with_system.endswith(prompt + after_prompt):
            sys_before, rest = with_system.split(system)
            sys_after = rest[: -len(prompt + after_prompt)]
            system_part = f"{sys_before}{{{{ .System }}}}{sys_after}"
            head = f"{{{{ if .System }}}}{system_part}{{{{ else }}}}{before_prompt}{{{{ end }}}}"
    except Exception:  # the template refuses system messages
        pass
    if any('"""' in part for part in (head, after_prompt, after_response)):
        return None
    return f"{head}{{{{ .Prompt }}}}{after_prompt}{{{{ .Response }}}}{after_response}"


def modelfile(file_name: str, meta: TokenizerMeta, tokenizer: Any, context_length: int | None) -> str:
    lines = [f"FROM ./{file_name}"]
    ollama = ollama_template(tokenizer, meta.chat_template)
    if ollama is not None:
        lines.append(f'TEMPLATE """{ollama}"""')
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in meta.stops]
    if context_length:
        lines.append(f"PARAMETER num_ctx {context_length}")
    return "\n".join(lines) + "\n"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:100] or "model"


# ---------------------------------------------------------------------------------------------- the check

PROBE_TEXTS = (
    "Orchard runs language models on your own machine.",
    "def add(a, b):\n    return a + b  # 12345 and 6.02e23, we're done",
    "Ünïcödé text, an emoji 🍎, 'quotes' and    spaces.\n\nNew paragraph!",
)


@dataclass(frozen=True)
class Bound:
    """What an export at one type must reach: logits within ``max_relative`` of the source's largest logit, or
    the source's most likely next token at ``min_top1`` of the positions."""

    max_relative: float | None = None
    min_top1: float | None = None

    def describe(self) -> str:
        if self.max_relative is not None:
            return f"largest logit difference at most {self.max_relative:g} of the largest logit"
        return f"the same most likely next token at {self.min_top1:.0%} of positions or more"


# Measured on tiny models exported here (bench/RESULTS.md has the figures): f32 within 6e-4, f16 1e-3, bf16 4e-3
# of the largest logit; top-1 agreement 1.0 at q8_0, >= 0.94 at 5 bits, >= 0.85 at 4 bits. The bounds leave room.
BOUNDS: dict[str, Bound] = {
    "f32": Bound(max_relative=2e-3),
    "f16": Bound(max_relative=1e-2),
    "bf16": Bound(max_relative=2e-2),
    "q8_0": Bound(min_top1=0.9),
    "q6_k": Bound(min_top1=0.9),
    "q5_1": Bound(min_top1=0.85),
    "q5_0": Bound(min_top1=0.85),
    "q5_k_m": Bound(min_top1=0.85),
    "q5_k_s": Bound(min_top1=0.85),
    "q4_1": Bound(min_top1=0.75),
    "q4_0": Bound(min_top1=0.75),
    "q4_k_m": Bound(min_top1=0.75),
    "q4_k_s": Bound(min_top1=0.75),
    "q3_k_m": Bound(min_top1=0.6),
    "q2_k": Bound(min_top1=0.4),
}


def probe_texts(tokenizer: Any) -> list[str]:
    """A few texts to compare on: prose, code and digits, unicode, and a conversation as chat renders it."""
    template, _ = chat_template_of(tokenizer)
    conversation = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": "What does Orchard do?"},
            {"role": "assistant", "content": "It runs models locally."},
        ],
        chat_template=template,
        tokenize=False,
    )
    return [*PROBE_TEXTS, str(conversation)]


def reference_logits(model: Any, ids: list[list[int]]) -> list[Any]:
    import torch

    with torch.no_grad():
        return [model(torch.tensor([row])).logits[0].float().numpy() for row in ids]


def run_llama_cpp(path: Path, texts: list[str], ids: list[list[int]]) -> tuple[list[list[int]], list[Any]]:
    """llama.cpp's own tokenization of ``texts`` and its logits on ``ids`` (the source tokenizer's)."""
    import os

    import_libraries("llama_cpp")
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=max(len(r) for r in ids) + 8,
        n_batch=512,
        logits_all=True,
        n_gpu_layers=0,
        n_threads=os.cpu_count() or 1,
        verbose=False,
    )
    try:
        tokens = [llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in texts]
        logits = []
        for row in ids:
            llm.reset()  # type: ignore[no-untyped-call]
            llm.eval(row)
            logits.append(np.array(llm.scores[: len(row)], dtype=np.float32))
        return tokens, logits
    finally:
        llm.close()


def run_transformers(path: Path, texts: list[str], ids: list[list[int]]) -> tuple[list[list[int]], list[Any]]:
    """The same through transformers' GGUF reader (dequantized), where llama.cpp is not installed."""
    import_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokens = [list(tokenizer(t)["input_ids"]) for t in texts]
    return tokens, reference_logits(model, ids)


def compare(
    quantization: str,
    engine: str,
    expected_ids: list[list[int]],
    got_ids: list[list[int]],
    reference: list[Any],
    candidate: list[Any],
) -> dict[str, Any]:
    """The check's figures and verdict."""
    diffs = [float(np.abs(r - c).max()) for r, c in zip(reference, candidate, strict=True)]
    scale = max(float(np.abs(r).max()) for r in reference) or 1.0
    agree = sum(int((r.argmax(-1) == c.argmax(-1)).sum()) for r, c in zip(reference, candidate, strict=True))
    positions = sum(len(r) for r in reference)
    mismatched = [i for i, (a, b) in enumerate(zip(expected_ids, got_ids, strict=True)) if a != b]
    bound = BOUNDS[quantization]
    max_relative = max(diffs) / scale
    top1 = agree / positions
    logits_ok = (bound.max_relative is None or max_relative <= bound.max_relative) and (
        bound.min_top1 is None or top1 >= bound.min_top1
    )
    return {
        "engine": engine,
        "probes": len(expected_ids),
        "positions": positions,
        "tokenizer_match": not mismatched,
        "mismatched_probes": mismatched,
        "max_abs_diff": max(diffs),
        "max_relative_diff": max_relative,
        "top1_agreement": top1,
        "bound": bound.describe(),
        "passed": logits_ok and not mismatched,
    }


def quantize_with_llama_cpp(source: Path, target: Path, quantization: str) -> None:
    """A K-quant through llama.cpp's own quantizer (the library llama-quantize is built on, or that binary)."""
    import shutil
    import subprocess

    import gguf

    ftype = int(gguf.LlamaFileType[f"MOSTLY_{K_QUANTS[quantization][0]}"])
    if llama_engine.available():
        import ctypes

        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
        if code != 0:
            raise RuntimeError(f"llama.cpp's quantizer failed (code {code})")
        return
    binary = shutil.which("llama-quantize")
    if binary is None:
        raise InvalidRequestError(k_quant_unavailable(quantization))
    subprocess.run([binary, str(source), str(target), K_QUANTS[quantization][0]], check=True, capture_output=True)


def k_quant_unavailable(quantization: str) -> str:
    return (
        f"{quantization} is a K-quant, which only llama.cpp's quantizer writes, and it is not installed here: "
        "install Orchard's llama.cpp part (`uv sync --extra llama`, needs a C compiler) or put llama-quantize on "
        f"PATH. Without it: {', '.join(NUMPY_TYPES)}."
    )


def k_quants_available() -> bool:
    import shutil

    return llama_engine.available() or shutil.which("llama-quantize") is not None


# ---------------------------------------------------------------------------------------------- the export process


class StopRequested(Exception):
    """The job asked the export to stop (between tensors or probes)."""


def tensor_types_of(path: Path) -> dict[str, int]:
    import gguf

    counts: dict[str, int] = {}
    for tensor in gguf.GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return counts


def run_export(spec: ExportSpec, emit: Callable[..., None], stop_requested: Callable[[], bool]) -> ExportInfo:
    """The whole export, in the export process: merge (with an adapter), write, quantize (K-quants), check, and
    the Modelfile, all in ``spec.staging_dir``; the job moves that folder into place. Raises
    :class:`StopRequested` when stopped and :class:`ExportCheckFailed` when the check fails."""
    import gc
    import time
    from datetime import UTC, datetime

    import_libraries("training") if spec.adapter_path else import_libraries()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    def check_stop() -> None:
        if stop_requested():
            raise StopRequested()

    started = time.perf_counter()
    emit("status", status="preparing")
    folder = Path(spec.model_path)
    config = AutoConfig.from_pretrained(folder)
    check_architecture(config.to_dict())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model: Any = None
    state_dict: dict[str, Any] | None = None
    if spec.adapter_path:
        from peft import PeftModel

        emit("status", status="merging")
        base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, spec.adapter_path).merge_and_unload()
        model.eval()
        state_dict = model.state_dict()
    source = Source(folder=folder, config=config, tokenizer=tokenizer, state_dict=state_dict)

    emit("status", status="exporting")
    writing = time.perf_counter()
    staging = Path(spec.staging_dir)
    staging.mkdir(parents=True, exist_ok=True)
    target = staging / f"{spec.name}.gguf"
    k_quant = spec.quantization in K_QUANTS
    written = staging / f"{spec.name}.f16.gguf" if k_quant else target
    report = write_gguf(
        source,
        written,
        "f16" if k_quant else spec.quantization,
        name=spec.name,
        on_tensor=lambda done, total: emit("progress", completed=done, total=total),
        check_stop=check_stop,
    )
    tensor_types = report.tensor_types
    if k_quant:
        quantize_with_llama_cpp(written, target, spec.quantization)
        written.unlink()
        tensor_types = tensor_types_of(target)
    check_stop()

    write_seconds = time.perf_counter() - writing
    checking = time.perf_counter()
    emit("status", status="verifying")
    texts = probe_texts(tokenizer)
    ids = [list(tokenizer(t)["input_ids"]) for t in texts]
    if model is None:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model.eval()
    reference = reference_logits(model, ids)
    del model, state_dict, source
    gc.collect()
    check_stop()
    engine = "llama.cpp" if llama_engine.available() else "transformers"
    got, candidate = (run_llama_cpp if engine == "llama.cpp" else run_transformers)(target, texts, ids)
    check = ExportCheck.model_validate(compare(spec.quantization, engine, ids, got, reference, candidate))
    if not check.passed:
        raise ExportCheckFailed(check)
    check_seconds = time.perf_counter() - checking

    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    text = modelfile(target.name, report.tokenizer, tokenizer, context)
    (staging / "Modelfile").write_text(text, encoding="utf-8")
    info = ExportInfo(
        id=spec.job_id,
        name=spec.name,
        file_name=target.name,
        path=str(target),  # the staging path; the job rewrites it once the folder is in place
        size_bytes=target.stat().st_size,
        sha256=sha256_of(target),
        quantization=spec.quantization,
        model_id=spec.model_id,
        adapter_id=spec.adapter_id,
        architecture=str((config.architectures or ["?"])[0]),
        context_length=context,
        num_parameters=report.num_parameters,
        tensor_types=tensor_types,
        check=check,
        modelfile=text,
        seconds=round(time.perf_counter() - started, 2),
        write_seconds=round(write_seconds, 2),
        check_seconds=round(check_seconds, 2),
        created_at=datetime.now(UTC),
    )
    return info


class ExportCheckFailed(Exception):
    def __init__(self, check: ExportCheck) -> None:
        self.check = check
        problems = []
        if not check.tokenizer_match:
            problems.append(f"its tokenizer gave other ids on probe(s) {check.mismatched_probes}")
        problems.append(
            f"logits: largest difference {check.max_abs_diff:.4g} ({check.max_relative_diff:.2e} of the largest "
            f"logit), top-1 agreement {check.top1_agreement:.0%}; required: {check.bound}"
        )
        super().__init__("The exported file does not answer like the source model: " + "; ".join(problems) + ".")
