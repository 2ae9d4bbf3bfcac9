"""What a model folder holds, read from its files without loading any weights.

Parameter counts come from safetensors headers (huggingface_hub's parser reads only the header); for folders
with pickle weights only, from the config through accelerate's empty-weight init (no weights touched). A GGUF
model (a ``.gguf`` file, or a folder holding one) is described from the file's own metadata, read by the gguf
package's memory-mapped reader.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import get_local_safetensors_metadata
from huggingface_hub.errors import NotASafetensorsRepoError, SafetensorsParsingError

from backend.utils.libraries import import_libraries, import_lock

logger = logging.getLogger(__name__)

WeightFormat = Literal["safetensors", "pytorch", "gguf", "none"]

SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json", "vocab.txt")
# dtype names in safetensors headers -> torch names
SAFETENSORS_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "U8": "uint8",
    "F8_E4M3": "float8_e4m3fn",
    "I32": "int32",
    "I64": "int64",
    "BOOL": "bool",
}


@dataclass
class ModelFiles:
    """A model folder as read from disk.

    ``problems`` lists why the folder cannot be loaded as it is (empty when ``complete``).
    """

    path: Path
    config: dict[str, Any] | None
    format: WeightFormat
    weight_files: list[Path]
    size_bytes: int
    num_parameters: int | None
    parameters_by_dtype: dict[str, int]
    has_tokenizer: bool
    modified_at: datetime
    problems: list[str] = field(default_factory=list)
    gguf: GgufSummary | None = None

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def architecture(self) -> str | None:
        if self.gguf is not None:
            return self.gguf.architecture
        archs = (self.config or {}).get("architectures") or []
        return str(archs[0]) if archs else None

    @property
    def model_type(self) -> str | None:
        if self.gguf is not None:
            return self.gguf.architecture
        value = (self.config or {}).get("model_type")
        return str(value) if value else None

    @property
    def needs_remote_code(self) -> bool:
        return bool((self.config or {}).get("auto_map"))

    @property
    def folder(self) -> Path:
        """The folder the model's files are in (``path`` itself, or a GGUF file's folder)."""
        return self.path.parent if self.path.is_file() else self.path


@dataclass(frozen=True)
class GgufSummary:
    """What a GGUF file says of itself."""

    file: Path
    architecture: str | None
    name: str | None
    quantization: str | None
    context_length: int | None
    num_parameters: int
    has_chat_template: bool
    # The attention's shape, for the KV cache a context needs (llama.cpp's own keys).
    block_count: int = 0
    kv_heads: int = 0
    key_length: int = 0
    value_length: int = 0


_GGUF_CACHE: dict[tuple[str, int, int], GgufSummary] = {}


def read_gguf(path: Path) -> GgufSummary:
    """A GGUF file's metadata (cached by path, size and modification time: reading parses every key).

    Raises:
        ValueError: not a GGUF file, or a damaged one.
    """
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _GGUF_CACHE:
        return _GGUF_CACHE[key]
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, struct.error, IndexError... on a damaged file
        raise ValueError(f"not a readable GGUF file ({exc.__class__.__name__})") from exc

    def value(name: str) -> Any:
        found = reader.fields.get(name)
        return found.contents() if found is not None else None

    arch = value("general.architecture")
    file_type = value("general.file_type")
    try:
        quantization = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (ValueError, TypeError):
        quantization = None

    def number(name: str, default: int = 0) -> int:
        found = value(f"{arch}.{name}") if arch else None
        if isinstance(found, list):  # per-layer head counts: the largest bounds the cache
            found = max(found, default=default)
        return int(found) if isinstance(found, int) else default

    heads = number("attention.head_count", 1)
    head_dim = number("embedding_length") // max(heads, 1)
    context = value(f"{arch}.context_length") if arch else None
    summary = GgufSummary(
        file=path,
        architecture=str(arch) if arch else None,
        name=str(value("general.name")) if value("general.name") else None,
        quantization=quantization,
        context_length=int(context) if isinstance(context, int) else None,
        num_parameters=int(sum(int(t.n_elements) for t in reader.tensors)),
        has_chat_template=value("tokenizer.chat_template") is not None,
        block_count=number("block_count"),
        kv_heads=number("attention.head_count_kv", heads),
        key_length=number("attention.key_length", head_dim),
        value_length=number("attention.value_length", head_dim),
    )
    _GGUF_CACHE[key] = summary
    return summary


def _inspect_gguf(path: Path) -> ModelFiles:
    """A ``.gguf`` file, or a folder whose weights are GGUF files (no config.json, no safetensors)."""
    files = [path] if path.is_file() else sorted(p for p in path.glob("*.gguf") if p.is_file())
    problems: list[str] = []
    summary: GgufSummary | None = None
    if len(files) > 1:
        problems.append(f"{len(files)} GGUF files: load one by its path (model_path=.../{files[0].name})")
    try:
        summary = read_gguf(files[0])
    except ValueError as exc:
        problems.append(f"{files[0].name} is {exc}")
    return ModelFiles(
        path=path,
        config=None,
        format="gguf",
        weight_files=files,
        size_bytes=path.stat().st_size if path.is_file() else folder_size(path),
        num_parameters=summary.num_parameters if summary else None,
        parameters_by_dtype={},
        has_tokenizer=summary is not None,  # a GGUF file carries its tokenizer
        modified_at=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
        problems=problems,
        gguf=summary,
    )


def is_gguf_model(path: Path) -> bool:
    """A ``.gguf`` file, or a folder of GGUF files with nothing transformers would load instead."""
    if path.is_file():
        return path.suffix.lower() == ".gguf"
    return not (path / "config.json").exists() and not any(path.glob("*.safetensors")) and any(path.glob("*.gguf"))


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path``, following the Hub cache's snapshot symlinks to their blobs."""
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:  # a dangling symlink: the blob is gone
            continue
    return total


def disk_bytes(path: Path) -> int:
    """Bytes used by regular files under ``path`` (symlinks not followed, so Hub cache blobs count once)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if not os.path.islink(file):
                    total += os.lstat(file).st_size
    return total


def _indexed_shards(path: Path, index_name: str, problems: list[str]) -> list[Path]:
    """The shard files a ``*.index.json`` names; missing shards or a broken index are added to ``problems``."""
    try:
        weight_map = json.loads((path / index_name).read_text()).get("weight_map", {})
        names = sorted({str(n) for n in weight_map.values()})
    except (ValueError, OSError, AttributeError):
        problems.append(f"{index_name} is not a valid index")
        return []
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        problems.append(f"missing weight shards: {', '.join(missing)}")
    return [path / n for n in names]


def inspect_folder(path: Path, *, count_pickle_params: bool = False) -> ModelFiles:
    """Read what ``path`` holds. Never raises for a malformed folder: problems are listed instead.

    Raises:
        FileNotFoundError: ``path`` is gone (deleted while it was read).

    Args:
        path: The model folder.
        count_pickle_params: For folders without safetensors, count parameters from the config on the meta
            device (imports transformers; skip it where speed matters more than the number).
    """
    if is_gguf_model(path):
        return _inspect_gguf(path)
    problems: list[str] = []
    config: dict[str, Any] | None = None
    config_file = path / "config.json"
    if not config_file.is_file():
        problems.append("no config.json")
    else:
        try:
            loaded = json.loads(config_file.read_text())
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
            config = loaded
        except (ValueError, OSError) as exc:
            problems.append(f"config.json is not valid JSON ({exc.__class__.__name__})")

    fmt: WeightFormat = "none"
    weight_files: list[Path] = []
    params_by_dtype: dict[str, int] = {}
    safetensors = sorted(path.glob("*.safetensors"))
    if (path / SAFETENSORS_INDEX).is_file() or safetensors:
        fmt = "safetensors"
        try:
            if (path / SAFETENSORS_INDEX).is_file():
                known = len(problems)
                weight_files = _indexed_shards(path, SAFETENSORS_INDEX, problems)
                if len(problems) == known:
                    meta = get_local_safetensors_metadata(path)
                    params_by_dtype = {str(k): int(v) for k, v in meta.parameter_count.items()}
            else:
                weight_files = safetensors
                for f in safetensors:
                    for dtype, n in get_local_safetensors_metadata(f).parameter_count.items():
                        params_by_dtype[dtype] = params_by_dtype.get(dtype, 0) + n
        except (SafetensorsParsingError, NotASafetensorsRepoError, ValueError, OSError) as exc:
            problems.append(f"unreadable safetensors weights ({exc.__class__.__name__})")
    elif (path / PICKLE_INDEX).is_file() or any(p.suffix in PICKLE_SUFFIXES for p in path.iterdir()):
        fmt = "pytorch"
        if (path / PICKLE_INDEX).is_file():
            weight_files = _indexed_shards(path, PICKLE_INDEX, problems)
        else:
            weight_files = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    else:
        problems.append("no weight files (*.safetensors or pytorch_model*.bin)")

    num_parameters: int | None = sum(params_by_dtype.values()) if params_by_dtype else None
    if num_parameters is None and config is not None and fmt == "pytorch" and count_pickle_params:
        num_parameters = count_parameters_from_config(config)

    return ModelFiles(
        path=path,
        config=config,
        format=fmt,
        weight_files=weight_files,
        size_bytes=folder_size(path),
        num_parameters=num_parameters,
        parameters_by_dtype={SAFETENSORS_DTYPES.get(k, k.lower()): v for k, v in params_by_dtype.items()},
        has_tokenizer=any((path / name).is_file() for name in TOKENIZER_FILES),
        modified_at=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
        problems=problems,
    )


def count_parameters_from_config(config: dict[str, Any]) -> int | None:
    """Exact parameter count of an architecture, built on the meta device (no memory, no weights).

    Returns None when transformers does not know the architecture (remote code is never run here).
    """
    try:
        import_libraries()
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        cfg_dict = dict(config)
        model_type = cfg_dict.pop("model_type", None)
        if not model_type:
            return None
        # An architecture not seen yet imports its modeling code lazily here: hold the lock while it does.
        with import_lock():
            cfg = AutoConfig.for_model(model_type, **cfg_dict)
            # torch's device context is this thread's alone; accelerate's init_empty_weights patches nn.Module for
            # every thread, so a model another thread builds meanwhile (a load) would come out on the meta device.
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=False)  # type: ignore[no-untyped-call]
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # an unknown or malformed architecture: the count is just unknown
        logger.debug("could not count parameters from config", exc_info=True)
        return None


def config_int(config: dict[str, Any] | None, *keys: str) -> int | None:
    """The first integer among ``keys`` in a config, looking into ``text_config`` for multimodal models."""
    for source in (config or {}, (config or {}).get("text_config") or {}):
        for key in keys:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def context_length(config: dict[str, Any] | None) -> int | None:
    return config_int(config, "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
