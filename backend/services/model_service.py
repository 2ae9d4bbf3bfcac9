"""Loading, inspecting and listing models, and the process-wide cache that holds the loaded one.

The seed's calls work as written::

    service = ModelService()
    model, tokenizer, metadata = service.load_from_hub("gpt2")
    model, tokenizer, metadata = service.load_local("/path/to/model")
    models = service.list_local_models()

The process holds at most one model, in :class:`ModelCache` (one lock, one loading slot, like Ollama's
scheduler). A new model replaces the old one only once it has loaded, so a failed load leaves the previous
model in place; unloading drops every reference and hands the memory back to the system.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil
from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from backend.config import Settings, get_settings
from backend.errors import (
    InsufficientMemoryError,
    InvalidModelError,
    InvalidRequestError,
    JobCancelled,
    ModelBusyError,
    ModelNotFoundError,
    PathNotAllowedError,
    StudioError,
    UnsafeModelError,
)
from backend.schemas.model import (
    EngineName,
    FitVerdict,
    LocalModel,
    ModelInfoResponse,
    ModelMetadata,
    ModelSource,
    RepoFile,
)
from backend.services import llama_engine
from backend.services.hub import HubClient
from backend.services.model_files import (
    ModelFiles,
    config_int,
    context_length,
    count_parameters_from_config,
    disk_bytes,
    inspect_folder,
    is_gguf_model,
)
from backend.services.weights_progress import ProgressCallback, report_weights
from backend.utils.libraries import import_libraries, import_lock
from backend.utils.mac_optimization import GB, MACOptimizer, torch_dtype

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """The loaded model: on transformers, a PyTorch model and its tokenizer; on llama.cpp, a ``llama_cpp.Llama``
    and a :class:`~backend.services.llama_engine.LlamaTokenizer` (the calls chat makes of a tokenizer)."""

    model: Any
    tokenizer: Any
    metadata: ModelMetadata
    peft: Any = None  # the peft wrapper while an adapter is attached (its layers live inside ``model``)
    decoder: Any = None  # llama.cpp: its LlamaDecoder, which keeps each sequence's cache between replies

    @property
    def engine(self) -> EngineName:
        return self.metadata.engine

    def close(self) -> None:
        """Free what the garbage collector would free late: llama.cpp's model and context are C memory."""
        if self.engine == "llama.cpp":
            if self.decoder is not None:
                self.decoder.close()
            llama_engine.close(self.model)


class ModelCache:
    """The one loaded model of this process, behind a lock, with one loading slot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None
        self._loading: str | None = None
        self._activity = "loading"
        self._exclusive = False  # the model itself is being changed (an adapter): no generation may start
        self._in_use = 0  # generations running on the current model

    @property
    def current(self) -> LoadedModel | None:
        with self._lock:
            return self._current

    @property
    def loading(self) -> str | None:
        """The model being loaded now, if any."""
        with self._lock:
            return self._loading if self._activity == "loading" else None

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    def _refuse_while_in_use(self, action: str) -> None:
        if self._in_use and self._current is not None:
            raise ModelBusyError(
                f"{self._in_use} generation(s) are running on '{self._current.metadata.model_id}'; "
                f"stop them or wait for them to finish, then {action}.",
                model_id=self._current.metadata.model_id,
                generations=self._in_use,
            )

    @contextmanager
    def loading_slot(self, model_id: str, activity: str = "loading", *, exclusive: bool = False) -> Iterator[None]:
        """Hold the one slot for changing models (a load, or a delete); meanwhile others get :class:`ModelBusyError`.

        ``exclusive`` is for changing the loaded model in place (an adapter on or off): refused while generations
        run, and no generation starts until it is done.
        """
        with self._lock:
            if self._loading is not None:
                raise ModelBusyError(
                    f"'{self._loading}' is {self._activity} now; wait for it to finish, then retry.",
                    loading=self._loading,
                )
            if activity == "loading" or exclusive:
                self._refuse_while_in_use(f"load '{model_id}'" if activity == "loading" else "retry")
            self._loading, self._activity, self._exclusive = model_id, activity, exclusive
        try:
            yield
        finally:
            with self._lock:
                self._loading, self._exclusive = None, False

    def borrow(self) -> LoadedModel | None:
        """Borrow the current model for a generation: until it is given back, unload and replace get 409."""
        with self._lock:
            if self._exclusive:
                raise ModelBusyError(
                    f"The loaded model is {self._activity} now; retry in a moment.", activity=self._activity
                )
            if self._current is not None:
                self._in_use += 1
            return self._current

    def give_back(self) -> None:
        """End a :meth:`borrow` that returned a model."""
        with self._lock:
            self._in_use = max(0, self._in_use - 1)

    def swap(self, new: LoadedModel | None) -> LoadedModel | None:
        """Put ``new`` in the cache (None empties it) and return what was there; refused while generating."""
        with self._lock:
            self._refuse_while_in_use("unload it" if new is None else f"load '{new.metadata.model_id}'")
            old, self._current = self._current, new
            return old


_PROCESS_CACHE = ModelCache()


def process_cache() -> ModelCache:
    """The cache shared by every :class:`ModelService` of this process (and by ``get_cached_model``)."""
    return _PROCESS_CACHE


def release_memory() -> None:
    """Return freed memory to the system: Python's collector, the accelerator caches, and glibc's heap."""
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if torch.backends.mps.is_available():
            torch.mps.empty_cache()
    if sys.platform.startswith("linux"):
        # glibc keeps freed heap pages mapped; malloc_trim hands them back so RSS reflects the unload.
        libc_name = ctypes.util.find_library("c")
        if libc_name:
            with contextlib.suppress(OSError, AttributeError):  # musl and others have no malloc_trim
                ctypes.CDLL(libc_name).malloc_trim(0)


def _rss() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


WarmupState = Literal["pending", "running", "done", "failed", "off"]


class ModelService:
    """Load, inspect and list models; the loaded model lives in the process-wide :class:`ModelCache`.

    Args:
        settings: Defaults to the process settings (:func:`get_settings`).
        optimizer: Device/dtype/memory decisions; defaults to one built from ``settings``.
        cache: Defaults to the process-wide cache.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        optimizer: MACOptimizer | None = None,
        cache: ModelCache | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.optimizer = optimizer or MACOptimizer.from_settings(self.settings)
        self.cache = cache or process_cache()
        self.hub = HubClient(self.settings)
        self.warmup_state: WarmupState = "pending" if self.settings.warmup else "off"
        self._warmup_finished = threading.Event()  # set when a warm-up ends, done or failed

    # ----------------------------------------------------------------- seed API (dicts, as the seed shows)

    def load_from_hub(
        self,
        model_id: str,
        access_token: str | None = None,
        *,
        revision: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
        force: bool = False,
        trust_remote_code: bool = False,
    ) -> tuple[Any, Any, dict[str, Any]]:
        """Download ``model_id`` from the Hub (resuming what is cached) and load it.

        The memory check runs before any weight is fetched. Returns ``(model, tokenizer, metadata)``.

        Raises:
            ModelNotFoundError, RepoAccessError, RevisionNotFoundError, HubUnavailableError (network/Hub),
            InsufficientMemoryError (507, unless ``force``), UnsafeModelError, InvalidModelError, ModelBusyError.
        """
        loaded = self.load_hub_model(
            model_id,
            access_token,
            revision=revision,
            dtype=dtype,
            device=device,
            force=force,
            trust_remote_code=trust_remote_code,
        )
        return loaded.model, loaded.tokenizer, loaded.metadata.model_dump()

    def load_local(
        self,
        model_path: str | Path,
        *,
        dtype: str | None = None,
        device: str | None = None,
        force: bool = False,
        trust_remote_code: bool = False,
    ) -> tuple[Any, Any, dict[str, Any]]:
        """Load a model folder: a path, a folder name in the models directory, or a repo id in the Hub cache.

        Returns ``(model, tokenizer, metadata)``.

        Raises:
            ModelNotFoundError (no such folder), InvalidModelError (not a loadable model), UnsafeModelError,
            InsufficientMemoryError (unless ``force``), ModelBusyError.
        """
        loaded = self.load_local_model(
            model_path, dtype=dtype, device=device, force=force, trust_remote_code=trust_remote_code
        )
        return loaded.model, loaded.tokenizer, loaded.metadata.model_dump()

    def get_model_info(
        self,
        model_id: str,
        access_token: str | None = None,
        *,
        revision: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
    ) -> dict[str, Any]:
        """What the Hub says about a model, and whether it fits this machine, without downloading weights."""
        return self.inspect_remote(model_id, access_token, revision=revision, dtype=dtype, device=device).model_dump()

    def list_local_models(self) -> list[dict[str, Any]]:
        """Models in the models directory and the Hub cache, read from their files (nothing is loaded)."""
        return [m.model_dump() for m in self.local_models()]

    def _extract_metadata(
        self,
        model: Any,
        tokenizer: Any,
        files: ModelFiles,
        *,
        model_id: str,
        source: ModelSource,
        revision: str | None,
        dtype: str,
        load_seconds: float,
    ) -> ModelMetadata:
        """Describe a loaded model from the model object itself (and its folder)."""
        config = model.config.to_dict() if hasattr(model, "config") else files.config
        num_parameters = int(sum(p.numel() for p in model.parameters()))
        device = str(next(model.parameters()).device.type)
        return ModelMetadata(
            model_id=model_id,
            source=source,
            path=str(files.path),
            revision=revision,
            architecture=type(model).__name__ if files.gguf else files.architecture or type(model).__name__,
            model_type=files.model_type,
            num_parameters=num_parameters,
            estimated_memory_gb=self.optimizer.estimate_model_memory(num_parameters, dtype),
            measured_memory_gb=round(model.get_memory_footprint() / GB, 6),
            device=device,
            dtype=str(model.dtype).removeprefix("torch."),
            vocab_size=config_int(config, "vocab_size") or getattr(tokenizer, "vocab_size", None),
            context_length=context_length(config),
            has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
            load_seconds=round(load_seconds, 3),
            loaded_at=datetime.now(UTC),
        )

    # ----------------------------------------------------------------- typed API (used by the routers)

    @property
    def current(self) -> LoadedModel | None:
        return self.cache.current

    def load_hub_model(
        self,
        model_id: str,
        access_token: str | None = None,
        *,
        revision: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
        force: bool = False,
        trust_remote_code: bool = False,
    ) -> LoadedModel:
        token = self.settings.token(access_token)
        remote = self.hub.inspect(model_id, revision=revision, token=token)
        device, dtype = self.placement(device, dtype)
        allow_code = self.check_remote_code(model_id, remote.config or {}, trust_remote_code)
        if remote.weight_format == "pytorch":
            self.check_pickle(model_id)
        num_params = sum(remote.parameters_by_dtype.values()) or (
            count_parameters_from_config(remote.config) if remote.config else None
        )
        if num_params:  # refuse before fetching a byte
            self.check_fits(model_id, num_params, dtype, device, force)
        patterns = self.hub.file_patterns(allow_pickle=remote.weight_format == "pytorch", allow_remote_code=allow_code)
        commit = remote.info.sha or revision or "main"
        plan = self.hub.plan(model_id, commit=commit, token=token, patterns=patterns)
        path = self.hub.fetch(model_id, plan, commit=commit, token=token)
        return self.load_folder(
            path,
            model_id=model_id,
            source="hub",
            revision=remote.info.sha,
            dtype=dtype,
            device=device,
            force=force,
            trust_remote_code=trust_remote_code,
        )

    def load_local_model(
        self,
        model_path: str | Path,
        *,
        dtype: str | None = None,
        device: str | None = None,
        force: bool = False,
        trust_remote_code: bool = False,
        engine: EngineName | None = None,
        source: ModelSource = "local",
        from_request: bool = False,
    ) -> LoadedModel:
        """Load a local model. ``from_request``: the path came over the API, so it must lie in an allowed root
        (the models directory, the Hub cache, ORCHARD_MODEL_ROOTS); Python callers may load any folder."""
        path, model_id, revision = self.resolve_local(model_path, from_request=from_request)
        device, dtype = self.placement(device, dtype)
        return self.load_folder(
            path,
            model_id=model_id,
            source=source,
            revision=revision,
            dtype=dtype,
            device=device,
            force=force,
            trust_remote_code=trust_remote_code,
            engine=engine,
        )

    def unload(self) -> tuple[ModelMetadata | None, float]:
        """Drop the loaded model and return ``(its metadata, GB of process memory given back)``."""
        before = _rss()
        old = self.cache.swap(None)
        if old is None:
            return None, 0.0
        metadata = old.metadata
        old.close()
        del old
        release_memory()
        return metadata, round(max(before - _rss(), 0) / GB, 4)

    def inspect_remote(
        self,
        model_id: str,
        access_token: str | None = None,
        *,
        revision: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
    ) -> ModelInfoResponse:
        remote = self.hub.inspect(model_id, revision=revision, token=self.settings.token(access_token))
        device, dtype = self.placement(device, dtype)
        num_params = sum(remote.parameters_by_dtype.values()) or (
            count_parameters_from_config(remote.config) if remote.config else None
        )
        files = remote.files
        config = remote.config or {}
        archs = config.get("architectures") or []
        return ModelInfoResponse(
            model_id=model_id,
            revision=revision,
            sha=remote.info.sha,
            architecture=archs[0] if archs else None,
            model_type=config.get("model_type"),
            library_name=remote.info.library_name,
            pipeline_tag=remote.info.pipeline_tag,
            gated=remote.info.gated or False,
            private=bool(remote.info.private),
            config=remote.config,
            files=[RepoFile(path=name, size=size) for name, size in files],
            total_size_bytes=sum(size or 0 for _, size in files),
            weights_size_bytes=remote.weights_size(),
            weight_format=remote.weight_format,
            num_parameters=num_params,
            parameters_by_dtype=remote.parameters_by_dtype,
            vocab_size=config_int(config, "vocab_size"),
            context_length=context_length(config),
            estimated_memory_gb=self.optimizer.estimate_model_memory(num_params, dtype) if num_params else None,
            memory=(self._gguf_repo_verdict(files, device) if remote.weight_format == "gguf" else None)
            or self.fit_verdict(num_params, dtype, device),
        )

    def _gguf_repo_verdict(self, files: list[tuple[str, int | None]], device: str) -> FitVerdict | None:
        """A repo of GGUF files has no parameter count to go by: the verdict for its smallest file (a download
        chooses the file, and its own check says more)."""
        sized = sorted((size, name) for name, size in files if name.endswith(".gguf") and size)
        if not sized:
            return None
        size, name = sized[0]
        verdict = llama_engine.file_fit_verdict(size, device, self.optimizer.memory_available_gb(device))
        if len(sized) == 1:
            return verdict
        return verdict.model_copy(update={"reason": f"its smallest file, {name}, {verdict.reason}"})

    def fit_verdict(self, num_params: int | None, dtype: str, device: str) -> FitVerdict:
        """Whether a model of ``num_params`` parameters fits ``device`` at ``dtype`` now, with the numbers."""
        available = self.optimizer.memory_available_gb(device)
        if not num_params:
            return FitVerdict(
                fits=False,
                dtype=dtype,
                device=device,
                required_gb=None,
                available_gb=available,
                reason="The parameter count is unknown, so the memory needed cannot be estimated.",
            )
        required = self.optimizer.estimate_model_memory(num_params, dtype)
        fits = required <= available
        reason = f"needs {required:.2f} GB at {dtype}; {available:.2f} GB available on {device}" + (
            "" if fits else self._smaller_dtype_hint(num_params, dtype, available)
        )
        return FitVerdict(
            fits=fits, dtype=dtype, device=device, required_gb=required, available_gb=available, reason=reason
        )

    def local_models(self) -> list[LocalModel]:
        loaded = self.cache.current
        loaded_path = loaded.metadata.path if loaded else None
        found: list[LocalModel] = []
        for model_id, files, revision in self._local_folders():
            found.append(
                LocalModel(
                    id=model_id,
                    source="local" if revision is None else "hub-cache",
                    path=str(files.path),
                    revision=revision,
                    size_bytes=files.size_bytes,
                    format=files.format,
                    architecture=files.architecture,
                    model_type=files.model_type,
                    num_parameters=files.num_parameters,
                    quantization=files.gguf.quantization if files.gguf else None,
                    context_length=files.gguf.context_length if files.gguf else context_length(files.config),
                    complete=files.complete,
                    problems=files.problems,
                    loaded=str(files.path) == loaded_path,
                    modified_at=files.modified_at,
                )
            )
        return found

    def local_model(self, model_id: str) -> LocalModel:
        for model in self.local_models():
            if model.id == model_id:
                return model
        raise ModelNotFoundError(f"No local model '{model_id}'.", model_id=model_id)

    def delete_local(self, model_id: str) -> tuple[Path, int]:
        """Delete a local model (its models-directory folder, or its whole Hub cache entry, partial files included).

        Returns ``(what was deleted, bytes freed)``.

        Raises:
            ModelNotFoundError, ModelBusyError (the model is loaded or loading).
        """
        # The loading slot keeps loads (and other deletes) out while the files go.
        with self.cache.loading_slot(model_id, activity="being deleted"):
            return self._delete_local(model_id)

    def _delete_local(self, model_id: str) -> tuple[Path, int]:
        model = self.local_model(model_id)
        folder = Path(model.path) if model.source == "local" else self.hub.repo_folder(model_id)
        current = self.cache.current
        if model.loaded or (current and Path(current.metadata.path).is_relative_to(folder)):
            raise ModelBusyError(f"'{model_id}' is loaded; unload it before deleting it.", model_id=model_id)
        if folder.is_symlink():  # a link to a model elsewhere: remove the link, never what it points to
            folder.unlink()
            return folder, 0
        if folder.is_file():  # a .gguf file in the models directory
            freed = folder.stat().st_size
            folder.unlink()
            return folder, freed
        freed = disk_bytes(folder)
        shutil.rmtree(folder)
        logger.info("deleted %s (%d bytes)", folder, freed)
        return folder, freed

    def resolve_local(self, model_path: str | Path, *, from_request: bool = False) -> tuple[Path, str, str | None]:
        """Find a local model: ``(folder, model id, hub revision or None)``.

        Accepts a folder path, a folder name inside the models directory, or a repo id in the Hub cache. With
        ``from_request``, a path outside the allowed roots (symlinks resolved) is refused with 403.
        """
        text = str(model_path).strip()
        if not text:
            raise InvalidRequestError("model_path is empty; pass a model folder or a local model id.")
        candidate = Path(text).expanduser()
        if candidate.is_absolute() or text.startswith("."):
            folder = self._allowed_folder(candidate, text) if from_request else candidate.resolve()
            if os.path.isdir(folder):
                return folder, folder.name, None
            if os.path.isfile(folder) and is_gguf_model(folder):  # one GGUF file
                return folder, folder.stem, None
            raise ModelNotFoundError(f"No folder (or .gguf file) at '{text}'.", model_path=text)
        if ".." in Path(text).parts or "\0" in text:
            raise PathNotAllowedError(f"'{text}' may not contain '..'; pass a local model id or a folder path.")
        in_models = self.settings.models_path / text
        # os.path answers False for names the file system refuses (too long), where Path.is_dir raises.
        if os.path.isdir(in_models) or (os.path.isfile(in_models) and is_gguf_model(in_models)):
            return self._allowed_folder(in_models, text) if from_request else in_models.resolve(), text, None
        for model_id, files, revision in self._hub_cache_folders():
            if model_id == text:
                return files.path, model_id, revision
        raise ModelNotFoundError(
            f"No local model '{text}': not a folder, not in {self.settings.models_path}, not in the Hub cache. "
            "Download it first (POST /model/download) or pass a folder path.",
            model_path=text,
        )

    def _allowed_folder(self, path: Path, text: str) -> Path:
        """``path`` with symlinks resolved, if it lies inside an allowed root; else 403, saying nothing of it."""
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            resolved = None
        roots = self.settings.allowed_model_roots()
        if resolved is None or not any(resolved.is_relative_to(root) for root in roots):
            raise PathNotAllowedError(
                f"'{text}' is outside the folders Orchard loads models from ({', '.join(str(r) for r in roots)}). "
                "Move or upload the model into the models directory, or add its parent folder to "
                "ORCHARD_MODEL_ROOTS.",
                model_path=text,
            )
        return resolved

    # ----------------------------------------------------------------- warm-up

    def warmup(self) -> None:
        """Pay the one-time import and class set-up cost (seconds) now, so the first load is as fast as later ones.

        Runs in a background thread at start-up (:meth:`start_warmup`). It holds the library lock throughout, so a
        load that starts meanwhile waits in :func:`import_libraries` instead of racing it (transformers' lazy
        imports are not thread-safe).
        """
        self.warmup_state = "running"
        started = time.perf_counter()
        try:
            with import_lock():
                import_libraries()
                import torch
                from transformers import AutoConfig, AutoModelForCausalLM

                # Building tiny models on the meta device imports and initialises the modeling code of the common
                # families (the lazy-module imports are most of the first load's cost). Token ids inside the tiny
                # vocabulary: GPT-2's default 50256 would make transformers warn about the config.
                for model_type in ("llama", "qwen2", "mistral", "gpt2"):
                    cfg = AutoConfig.for_model(
                        model_type,
                        hidden_size=64,
                        intermediate_size=128,
                        num_hidden_layers=1,
                        num_attention_heads=2,
                        num_key_value_heads=2,
                        vocab_size=128,
                        n_embd=64,
                        n_layer=1,
                        n_head=2,
                        bos_token_id=1,
                        eos_token_id=2,
                        pad_token_id=0,
                    )
                    with torch.device("meta"):  # this thread only (see count_parameters_from_config)
                        AutoModelForCausalLM.from_config(cfg)  # type: ignore[no-untyped-call]
                torch.zeros(1)
            # The libraries just imported leave ~10^6 long-lived objects that every full collection scans (about
            # 0.25 s holding the GIL, which stalls the event loop on each unload). Freezing them moves them out
            # of the collector's way; only done while no model is held, so a model's cycles stay collectable.
            gc.collect()
            if self.cache.current is None and self.cache.loading is None:
                gc.freeze()
                # Unfrozen at exit, so the interpreter's last collection still frees them: native extensions
                # that count their objects at exit (triton's nanobind) would otherwise print leak reports.
                atexit.register(gc.unfreeze)
            self.warmup_state = "done"
            logger.info("warm-up done in %.2fs", time.perf_counter() - started)
        except Exception:
            self.warmup_state = "failed"
            logger.exception("warm-up failed; the first load will pay the import cost")
        finally:
            self._warmup_finished.set()

    def start_warmup(self) -> threading.Thread | None:
        """Start :meth:`warmup` in a daemon thread (when the settings ask for it) and return the thread.

        The state is ``running`` before this returns, so a request that arrives at once already sees it.
        """
        if not self.settings.warmup or self.warmup_state != "pending":
            return None
        self.warmup_state = "running"
        thread = threading.Thread(target=self.warmup, name="orchard-warmup", daemon=True)
        thread.start()
        return thread

    def wait_for_warmup(self, timeout: float | None = None) -> bool:
        """Block while a warm-up is running (at most ``timeout`` seconds); return at once when none is.

        A load calls it before importing, so it neither races the warm-up nor competes with it for the CPU.
        Returns False when the warm-up is still running after ``timeout``.
        """
        if self.warmup_state == "running":
            return self._warmup_finished.wait(timeout)
        return True

    # ----------------------------------------------------------------- internals

    def placement(self, device: str | None, dtype: str | None) -> tuple[str, str]:
        device = device or self.optimizer.get_device()
        if device != "cpu":
            available = {"cuda": self.optimizer.probe.cuda_available, "mps": self.optimizer.probe.mps_available}
            if device not in available or not available[device]():
                raise InvalidRequestError(
                    f"Device '{device}' is not available on this machine; use 'cpu' or leave device empty.",
                    device=device,
                )
        return device, dtype or self.optimizer.get_dtype(device)

    def check_remote_code(self, model_id: str, config: dict[str, Any], requested: bool) -> bool:
        if not config.get("auto_map"):
            return False
        if requested and self.settings.trust_remote_code:
            return True
        raise UnsafeModelError(
            f"'{model_id}' ships its own Python code, which Orchard does not run by default. If you trust its "
            "authors, set ORCHARD_TRUST_REMOTE_CODE=true and pass trust_remote_code=true with the request.",
            model_id=model_id,
        )

    def check_pickle(self, model_id: str) -> None:
        if not self.settings.allow_pickle_weights:
            raise UnsafeModelError(
                f"'{model_id}' has only pickle (.bin) weights, which can run code when loaded. Prefer a "
                "safetensors version of the model, or set ORCHARD_ALLOW_PICKLE_WEIGHTS=true to allow them.",
                model_id=model_id,
            )

    def _smaller_dtype_hint(self, num_params: int, dtype: str, available: float) -> str:
        for smaller in ("bfloat16", "float16"):
            if smaller != dtype and self.optimizer.estimate_model_memory(num_params, smaller) <= available:
                return f"; it would fit at dtype={smaller}, or pass force=true to load anyway"
        return "; free memory (unload the current model, close other apps) or pass force=true to load anyway"

    def check_fits(self, model_id: str, num_params: int, dtype: str, device: str, force: bool) -> None:
        self.enforce(self.fit_verdict(num_params, dtype, device), model_id, force)

    @staticmethod
    def enforce(verdict: FitVerdict, model_id: str, force: bool, **details: Any) -> None:
        """Refuse a model that does not fit (507 with the numbers), unless ``force``."""
        if verdict.fits:
            return
        if force:
            logger.warning("loading %s although it may not fit: %s", model_id, verdict.reason)
            return
        raise InsufficientMemoryError(
            f"'{model_id}' {verdict.reason}.",
            model_id=model_id,
            required_gb=verdict.required_gb,
            available_gb=verdict.available_gb,
            dtype=verdict.dtype,
            device=verdict.device,
            **details,
        )

    def load_folder(
        self,
        path: Path,
        *,
        model_id: str,
        source: ModelSource,
        revision: str | None,
        dtype: str,
        device: str,
        force: bool,
        trust_remote_code: bool,
        engine: EngineName | None = None,
        on_progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> LoadedModel:
        """Load the model in ``path`` and swap it into the cache; the old model stays if anything fails.

        Args:
            engine: transformers or llama.cpp; None picks (:meth:`engine_for`).
            on_progress: Called with ``(tensors loaded, tensors in all)`` as transformers loads the weights.
            cancelled: Checked with every tensor and before the swap; when it turns true the load stops with
                :class:`JobCancelled`, the new weights are dropped and the previous model stays loaded.
        """
        # One slot for the whole load: a delete of these files cannot run between reading and loading them.
        with self.cache.loading_slot(model_id):
            if not path.exists():
                raise ModelNotFoundError(f"'{model_id}' is no longer on disk.", model_id=model_id)
            files = inspect_folder(path, count_pickle_params=True)
            if files.config is not None:
                allow_code = self.check_remote_code(model_id, files.config, trust_remote_code)
            else:
                allow_code = False
            if not files.complete:
                raise InvalidModelError(
                    f"'{model_id}' cannot be loaded: {'; '.join(files.problems)}.",
                    model_id=model_id,
                    problems=files.problems,
                )
            if files.format == "pytorch":
                self.check_pickle(model_id)
            if not files.has_tokenizer:
                raise InvalidModelError(
                    f"'{model_id}' has no tokenizer files (tokenizer.json, tokenizer.model or vocab files).",
                    model_id=model_id,
                )
            if self.engine_for(files, engine, model_id) == "llama.cpp":
                loaded = self._load_on_llama_cpp(
                    files, model_id=model_id, source=source, revision=revision, device=device, force=force
                )
            else:
                if files.num_parameters:
                    self.check_fits(model_id, files.num_parameters, dtype, device, force)
                started = time.perf_counter()
                with report_weights(on_progress, cancelled):
                    model, tokenizer = self._from_pretrained(files, model_id, dtype, device, allow_code)
                metadata = self._extract_metadata(
                    model,
                    tokenizer,
                    files,
                    model_id=model_id,
                    source=source,
                    revision=revision,
                    dtype=dtype,
                    load_seconds=time.perf_counter() - started,
                )
                loaded = LoadedModel(model=model, tokenizer=tokenizer, metadata=metadata)
                del model, tokenizer
            if cancelled is not None and cancelled():
                loaded.close()
                del loaded
                release_memory()
                raise JobCancelled()
            old = self.cache.swap(loaded)
        if old is not None:
            logger.info("replaced %s with %s", old.metadata.model_id, model_id)
            old.close()
            del old
            release_memory()
        logger.info(
            "loaded %s on %s (%s) as %s in %.2fs",
            model_id,
            loaded.metadata.device,
            loaded.engine,
            loaded.metadata.dtype,
            loaded.metadata.load_seconds,
        )
        return loaded

    def engine_for(self, files: ModelFiles, requested: EngineName | None, model_id: str) -> EngineName:
        """What runs the model: as asked, or llama.cpp for a GGUF file where it is installed, else transformers.

        Raises:
            InvalidRequestError: llama.cpp asked for a model that is not a GGUF file.
            EngineUnavailableError: llama.cpp asked for and not installed (501, with how to install it).
        """
        if requested == "llama.cpp":
            if files.format != "gguf":
                raise InvalidRequestError(
                    f"llama.cpp runs GGUF files, and '{model_id}' is a {files.format} model. Export it to GGUF "
                    "first (POST /export/gguf, or the Export page), or leave engine empty to load it on transformers.",
                    model_id=model_id,
                    engine=requested,
                )
            llama_engine.require()
            return "llama.cpp"
        if requested is None and files.format == "gguf" and llama_engine.available():
            return "llama.cpp"
        return "transformers"

    def _load_on_llama_cpp(
        self, files: ModelFiles, *, model_id: str, source: ModelSource, revision: str | None, device: str, force: bool
    ) -> LoadedModel:
        """Open a GGUF file on llama.cpp, after checking that the file and its KV cache fit."""
        summary = files.gguf
        if summary is None:  # pragma: no cover - a complete GGUF model always has its summary
            raise InvalidModelError(f"'{model_id}' has no readable GGUF file.", model_id=model_id)
        n_ctx = llama_engine.context_for(summary, self.settings.llama_context)
        verdict = llama_engine.fit_verdict(summary, n_ctx, device, self.optimizer.memory_available_gb(device))
        self.enforce(verdict, model_id, force, context_length=n_ctx)
        started = time.perf_counter()
        try:
            llm, tokenizer, where = llama_engine.load(
                summary.file, n_ctx=n_ctx, device=device, sequences=self.settings.chat_max_batch
            )
        except ValueError as exc:  # llama-cpp-python raises ValueError when llama.cpp cannot open the file
            logger.warning("llama.cpp could not load %s", model_id, exc_info=True)
            raise InvalidModelError(
                f"llama.cpp could not load '{model_id}': {exc}. Its architecture may be newer than this build of "
                "llama.cpp; try engine='transformers'.",
                model_id=model_id,
            ) from exc
        metadata = ModelMetadata(
            model_id=model_id,
            source=source,
            path=str(files.path),
            revision=revision,
            engine="llama.cpp",
            architecture=summary.architecture,
            model_type=summary.architecture,
            num_parameters=summary.num_parameters,
            estimated_memory_gb=verdict.required_gb or 0.0,
            measured_memory_gb=round(llama_engine.memory_bytes(llm, summary) / GB, 6),
            device=where,
            dtype=verdict.dtype,
            vocab_size=tokenizer.vocab_size,
            context_length=n_ctx,
            has_chat_template=bool(tokenizer.chat_template),
            load_seconds=round(time.perf_counter() - started, 3),
            loaded_at=datetime.now(UTC),
        )
        decoder = llama_engine.LlamaDecoder(llm)
        return LoadedModel(model=llm, tokenizer=tokenizer, metadata=metadata, decoder=decoder)

    def _from_pretrained(
        self, files: ModelFiles, model_id: str, dtype: str, device: str, allow_code: bool
    ) -> tuple[Any, Any]:
        import_libraries()
        import torch
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # A GGUF file loads dequantized to ``dtype`` through transformers' GGUF reader (llama.cpp runs it as it is).
        gguf = {"gguf_file": files.weight_files[0].name} if files.format == "gguf" else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(files.folder, trust_remote_code=allow_code, **gguf)
            model = AutoModelForCausalLM.from_pretrained(
                files.folder,
                **gguf,
                dtype=torch_dtype(dtype),
                device_map=device if device != "cpu" else None,
                use_safetensors=files.format == "safetensors" if not gguf else None,
                trust_remote_code=allow_code,
            )
            model.eval()  # type: ignore[no-untyped-call]
            return model, tokenizer
        except torch.OutOfMemoryError as exc:
            raise InsufficientMemoryError(
                f"Ran out of memory loading '{model_id}' on {device}; free memory or choose a smaller dtype.",
                model_id=model_id,
            ) from exc
        except StudioError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, TypeError) as exc:
            logger.warning("loading %s failed", model_id, exc_info=True)
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc.__class__.__name__
            if gguf and not llama_engine.available():
                reason += f". {llama_engine.INSTALL_HINT}"
            raise InvalidModelError(f"'{model_id}' could not be loaded: {reason}", model_id=model_id) from exc

    def _local_folders(self) -> Iterator[tuple[str, ModelFiles, str | None]]:
        yield from self._models_dir_folders()
        yield from self._hub_cache_folders()

    def _models_dir_folders(self) -> Iterator[tuple[str, ModelFiles, str | None]]:
        root = self.settings.models_path
        if not root.is_dir():
            return
        for child in sorted(root.iterdir()):
            if child.name.startswith(".") or (child.is_file() and not is_gguf_model(child)):
                continue
            try:
                if child.is_file() or (child / "config.json").exists() or not any(p.is_dir() for p in child.iterdir()):
                    found = [(child.name, inspect_folder(child))]  # a folder, or a .gguf file dropped in
                else:  # organisation/name layout
                    subs = sorted(p for p in child.iterdir() if p.is_dir() and not p.name.startswith("."))
                    found = [(f"{child.name}/{sub.name}", inspect_folder(sub)) for sub in subs]
            except FileNotFoundError:  # deleted while the listing read it: it is simply gone
                continue
            for model_id, files in found:
                yield model_id, files, None

    def _hub_cache_folders(self) -> Iterator[tuple[str, ModelFiles, str | None]]:
        try:
            cache = scan_cache_dir(self.settings.hf_cache_dir)
        except CacheNotFound:
            return
        for repo in sorted(cache.repos, key=lambda r: r.repo_id):
            if repo.repo_type != "model" or not repo.revisions:
                continue
            revision = max(repo.revisions, key=lambda r: r.last_modified)
            try:
                files = inspect_folder(Path(revision.snapshot_path))
            except FileNotFoundError:  # deleted while the listing read it
                continue
            if files.format == "none":
                continue  # only metadata was fetched (e.g. config.json by an info request): not a model
            yield repo.repo_id, files, revision.commit_hash
