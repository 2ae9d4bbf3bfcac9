"""Synthetic models of realistic shape for the benchmarks: Llama-style, random weights, saved as safetensors.

Made once into ``bench/.cache/models`` (ignored by git) and reused. The tokenizer is the tests' small byte-level
BPE (a few hundred tokens), so the vocabulary is small; the transformer blocks, which hold almost all of the
parameters and the time, have the shapes of real ~100M and ~400M models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "models"


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int


SHAPES = {
    "100m": Shape("100m", hidden=768, layers=14, heads=12, kv_heads=4, intermediate=2304),
    "400m": Shape("400m", hidden=1024, layers=28, heads=16, kv_heads=8, intermediate=3584),
}


def model_path(size: str, dtype: str) -> Path:
    """The folder of the ``size`` model saved in ``dtype`` ("float32" or "bfloat16"), made if missing."""
    path = CACHE / f"llama-{size}-{dtype}"
    if (path / "config.json").exists() and list(path.glob("*.safetensors")):
        return path
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.factories import LLAMA_CHAT_TEMPLATE, make_tokenizer

    shape = SHAPES[size]
    tokenizer = make_tokenizer(320, LLAMA_CHAT_TEMPLATE)
    config = LlamaConfig(
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    # Greedy decoding of a random model can hit EOS early; lowering its bias keeps generations full length.
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id].zero_()
    tmp = path.with_suffix(".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(path)
    return path


def parameter_count(path: Path) -> int:
    from huggingface_hub import get_local_safetensors_metadata

    meta = get_local_safetensors_metadata(path)
    return sum(meta.parameter_count.values())
