"""Talking to the Hugging Face Hub: remote inspection and the translation of its errors into Orchard's.

Every call passes ``endpoint`` and ``cache_dir`` from our settings explicitly, because huggingface_hub reads
its environment variables once, at import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from huggingface_hub.errors import RevisionNotFoundError as HubRevisionNotFoundError
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils._validators import validate_repo_id

from backend.config import Settings
from backend.errors import (
    HubUnavailableError,
    InvalidModelError,
    InvalidRequestError,
    ModelNotFoundError,
    RepoAccessError,
    RevisionNotFoundError,
)
from backend.services.model_files import WeightFormat

logger = logging.getLogger(__name__)

# Files a transformers causal LM needs; other formats in a repo (ONNX, GGUF, TF, Flax) are never fetched.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.jinja"]
PICKLE_FILE_PATTERNS = ["pytorch_model*.bin"]
REMOTE_CODE_PATTERNS = ["*.py"]


def check_repo_id(model_id: str) -> None:
    """Refuse ids that cannot be Hub repo ids (400) before any request is made."""
    try:
        validate_repo_id(model_id)
    except HFValidationError as exc:
        raise InvalidRequestError(
            f"'{model_id}' is not a valid model id; use 'name' or 'organisation/name', e.g. 'Qwen/Qwen2.5-0.5B'.",
            model_id=model_id,
        ) from exc


@contextmanager
def hub_errors(model_id: str, *, revision: str | None = None, token_given: bool = False) -> Iterator[None]:
    """Translate huggingface_hub and transport exceptions, by type, into :class:`StudioError` subclasses."""
    try:
        yield
    except GatedRepoError as exc:  # before RepositoryNotFoundError, its base class
        if token_given:
            raise RepoAccessError(
                f"'{model_id}' is gated and this token has no access. Accept the model's terms on its Hub page "
                "with the account that owns the token, then retry.",
                status_code=403,
                model_id=model_id,
            ) from exc
        raise RepoAccessError(
            f"'{model_id}' is gated: accept its terms on the Hub, then pass an access_token "
            "(or set HF_TOKEN) for an account with access.",
            status_code=401,
            model_id=model_id,
        ) from exc
    except RepositoryNotFoundError as exc:
        hint = "" if token_given else " If it is private, pass an access_token (or set HF_TOKEN)."
        raise ModelNotFoundError(
            f"No model '{model_id}' on the Hub. Check the id's spelling.{hint}", model_id=model_id
        ) from exc
    except HubRevisionNotFoundError as exc:
        raise RevisionNotFoundError(
            f"'{model_id}' has no revision '{revision}'. Use a branch, tag or commit that exists (default: main).",
            model_id=model_id,
            revision=revision,
        ) from exc
    except EntryNotFoundError as exc:
        raise InvalidModelError(
            f"'{model_id}' lacks a file a transformers model needs ({exc.__class__.__name__}).", model_id=model_id
        ) from exc
    except OfflineModeIsEnabled as exc:
        raise HubUnavailableError(
            "Hub access is off (HF_HUB_OFFLINE is set); unset it to reach the Hub.", status_code=503
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 502
        if status in (401, 403):
            raise RepoAccessError(
                f"The Hub refused access to '{model_id}' ({status}); check the access token.",
                status_code=status,
                model_id=model_id,
            ) from exc
        logger.warning("Hub error for %s: HTTP %s", model_id, status)
        raise HubUnavailableError(f"The Hub answered with an error ({status}); try again later.") from exc
    except httpx2.TimeoutException as exc:
        raise HubUnavailableError(
            "The Hub did not answer in time; check the connection and retry.", status_code=504
        ) from exc
    except (httpx2.TransportError, LocalEntryNotFoundError) as exc:  # httpx2: huggingface_hub's HTTP client
        # LocalEntryNotFoundError: the Hub could not be reached and nothing was cached to fall back on.
        cause = exc.__cause__ or exc.__context__
        status = 504 if isinstance(cause, httpx2.TimeoutException) else 502
        raise HubUnavailableError(
            "Could not reach the Hub; check the network connection (and HF_ENDPOINT if you use a mirror).",
            status_code=status,
        ) from exc


@dataclass
class RemoteModel:
    """What the Hub says about a model, gathered without downloading weights."""

    info: ModelInfo
    config: dict[str, Any] | None
    parameters_by_dtype: dict[str, int]

    @property
    def files(self) -> list[tuple[str, int | None]]:
        return [(s.rfilename, s.size) for s in self.info.siblings or []]

    @property
    def weight_format(self) -> WeightFormat:
        names = [name for name, _ in self.files]
        if any(n.endswith(".safetensors") for n in names):
            return "safetensors"
        if any(n.startswith("pytorch_model") and n.endswith(".bin") for n in names):
            return "pytorch"
        if any(n.endswith(".gguf") for n in names):
            return "gguf"
        return "none"

    def weights_size(self) -> int:
        suffix = {"safetensors": ".safetensors", "pytorch": ".bin", "gguf": ".gguf"}.get(self.weight_format)
        return sum(size or 0 for name, size in self.files if suffix and name.endswith(suffix))


class HubClient:
    """The Hub calls Orchard makes, configured from settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = HfApi(endpoint=settings.hf_endpoint, library_name="orchard")

    def inspect(self, model_id: str, *, revision: str | None = None, token: str | None = None) -> RemoteModel:
        """Model info, config and parameter counts from the Hub, reading only metadata and safetensors headers.

        Raises:
            ModelNotFoundError, RepoAccessError, RevisionNotFoundError, HubUnavailableError
        """
        check_repo_id(model_id)
        with hub_errors(model_id, revision=revision, token_given=token is not None):
            info = self.api.model_info(model_id, revision=revision, files_metadata=True, token=token)
            names = {s.rfilename for s in info.siblings or []}
            config: dict[str, Any] | None = None
            if "config.json" in names:
                config_path = hf_hub_download(
                    model_id,
                    "config.json",
                    revision=info.sha,
                    token=token,
                    cache_dir=self.settings.hf_cache_dir,
                    endpoint=self.settings.hf_endpoint,
                )
                config = json.loads(Path(config_path).read_text())
            params: dict[str, int] = {}
            if info.safetensors is not None:
                params = {str(k): int(v) for k, v in info.safetensors.parameters.items()}
            elif any(n.endswith(".safetensors") for n in names):
                meta = self.api.get_safetensors_metadata(model_id, revision=info.sha, token=token)
                params = {str(k): int(v) for k, v in meta.parameter_count.items()}
        return RemoteModel(info=info, config=config, parameters_by_dtype=params)

    def download(
        self,
        model_id: str,
        *,
        revision: str | None = None,
        token: str | None = None,
        allow_pickle: bool = False,
        allow_remote_code: bool = False,
    ) -> Path:
        """Fetch the files a transformers model needs into the Hub cache; return the snapshot folder.

        Pickle weights are fetched only when allowed and the repo has no safetensors; Python files only when
        remote code is allowed. Partial files are resumed by later calls.
        """
        check_repo_id(model_id)
        patterns = list(MODEL_FILE_PATTERNS)
        if allow_pickle:
            patterns += PICKLE_FILE_PATTERNS
        if allow_remote_code:
            patterns += REMOTE_CODE_PATTERNS
        with hub_errors(model_id, revision=revision, token_given=token is not None):
            path = snapshot_download(
                model_id,
                revision=revision,
                token=token,
                cache_dir=self.settings.hf_cache_dir,
                endpoint=self.settings.hf_endpoint,
                allow_patterns=patterns,
                library_name="orchard",
            )
        return Path(path)
