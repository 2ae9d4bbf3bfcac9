"""Talking to the Hugging Face Hub: remote inspection and the translation of its errors into Orchard's.

Every call passes ``endpoint`` and ``cache_dir`` from our settings explicitly, because huggingface_hub reads
its environment variables once, at import.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import httpx2
from huggingface_hub import (
    HfApi,
    get_hf_file_metadata,
    get_session,
    hf_hub_download,
    hf_hub_url,
    hf_raise_for_status,
    snapshot_download,
)
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
from huggingface_hub.file_download import DryRunFileInfo, repo_folder_name
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils._headers import build_hf_headers
from huggingface_hub.utils._runtime import is_xet_available  # the library's own test for Xet downloads
from huggingface_hub.utils._validators import validate_repo_id
from tqdm.auto import tqdm

from backend.config import Settings
from backend.errors import (
    HubUnavailableError,
    InvalidModelError,
    InvalidRequestError,
    JobCancelled,
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
RESUMABLE_MIN_BYTES = 1024 * 1024  # files at least this large are fetched so that a later call resumes them
READ_TIMEOUT_S = 2.0  # longest wait for a byte before a fetch checks for cancel and asks again
MAX_FETCH_FAILURES = 4  # transport failures in a row, with no byte between them, before a fetch gives up
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
    except LocalEntryNotFoundError as exc:  # before its base class EntryNotFoundError: the Hub was not reached
        _unreachable(exc)
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
    except httpx2.TransportError as exc:  # httpx2: huggingface_hub's HTTP client
        _unreachable(exc)


def _unreachable(exc: Exception) -> NoReturn:
    """The Hub could not be reached (and, for LocalEntryNotFoundError, nothing was cached to fall back on)."""
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

    @staticmethod
    def file_patterns(*, allow_pickle: bool = False, allow_remote_code: bool = False) -> list[str]:
        """The files Orchard fetches for a model: what transformers needs, never other formats."""
        patterns = list(MODEL_FILE_PATTERNS)
        if allow_pickle:
            patterns += PICKLE_FILE_PATTERNS
        if allow_remote_code:
            patterns += REMOTE_CODE_PATTERNS
        return patterns

    def plan(
        self,
        model_id: str,
        *,
        commit: str,
        token: str | None,
        patterns: list[str],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> list[DryRunFileInfo]:
        """Which files a download would fetch, their sizes, and which are already cached (HEAD requests only).

        ``include``/``exclude`` narrow the files Orchard would fetch; they never widen them.
        """
        with hub_errors(model_id, revision=commit, token_given=token is not None):
            files = snapshot_download(
                model_id,
                revision=commit,
                token=token,
                cache_dir=self.settings.hf_cache_dir,
                endpoint=self.settings.hf_endpoint,
                allow_patterns=patterns,
                ignore_patterns=exclude,
                library_name="orchard",
                tqdm_class=SilentProgress,
                dry_run=True,
            )
        if include:
            files = [f for f in files if any(fnmatch.fnmatch(f.filename, p) for p in include)]
        return sorted(files, key=lambda f: f.filename)

    def fetch(
        self,
        model_id: str,
        plan: list[DryRunFileInfo],
        *,
        commit: str,
        token: str | None,
        on_bytes: Callable[[int, bool], None] = lambda n, resumed: None,
        cancelled: Callable[[], bool] = lambda: False,
        tqdm_class: type[tqdm[Any]] | None = None,
    ) -> Path:
        """Fetch the files of a :meth:`plan` into the Hub cache and return the snapshot folder.

        Files of :data:`RESUMABLE_MIN_BYTES` and more go through :meth:`fetch_resumable` (four at a time), so an
        interrupted fetch continues where it stopped; ``snapshot_download`` then links them and fetches the rest.
        """
        large = [f.filename for f in plan if f.will_download and (f.file_size or 0) >= RESUMABLE_MIN_BYTES]
        if large:
            with ThreadPoolExecutor(max_workers=min(4, len(large)), thread_name_prefix="fetch") as pool:
                fetches = [
                    pool.submit(
                        self.fetch_resumable,
                        model_id,
                        name,
                        commit=commit,
                        token=token,
                        on_bytes=on_bytes,
                        cancelled=cancelled,
                    )
                    for name in large
                ]
                for fetch in fetches:
                    fetch.result()
        with hub_errors(model_id, revision=commit, token_given=token is not None):
            path = snapshot_download(
                model_id,
                revision=commit,
                token=token,
                cache_dir=self.settings.hf_cache_dir,
                endpoint=self.settings.hf_endpoint,
                allow_patterns=[f.filename for f in plan],
                library_name="orchard",
                tqdm_class=tqdm_class or SilentProgress,
            )
        return Path(path)

    def fetch_resumable(
        self,
        model_id: str,
        filename: str,
        *,
        commit: str,
        token: str | None,
        on_bytes: Callable[[int, bool], None],
        cancelled: Callable[[], bool],
    ) -> None:
        """Fetch one large file into the Hub cache so that an interrupted fetch resumes where it stopped.

        huggingface_hub (since 2.x) writes each attempt to a unique temporary file and deletes it on failure, so
        a cancelled or crashed download starts again from zero. Here the bytes go to ``blobs/<etag>.incomplete``
        and later calls continue it with an HTTP Range request; once complete and checked against its sha256
        the file becomes ``blobs/<etag>``, which ``hf_hub_download`` then links into the snapshot instead of
        downloading. Reads wait at most :data:`READ_TIMEOUT_S`, so a cancel takes effect within about that
        long even on a stalled connection. Files stored with Xet are left to the library (its chunk cache keeps
        what was fetched).

        Args:
            on_bytes: Called with ``(n, resumed)`` for bytes already on disk (``resumed``) and bytes received.
            cancelled: Polled between reads; when it returns True the fetch stops, keeping the partial file.

        Raises:
            DownloadCancelled, StudioError subclasses (see :func:`hub_errors`).
        """
        url = hf_hub_url(model_id, filename, revision=commit, endpoint=self.settings.hf_endpoint)
        with hub_errors(model_id, revision=commit, token_given=token is not None):
            meta = get_hf_file_metadata(url, token=token, endpoint=self.settings.hf_endpoint)
        if meta.etag is None or meta.location is None or (meta.xet_file_data is not None and is_xet_available()):
            return
        blob = self.repo_folder(model_id) / "blobs" / meta.etag
        if blob.exists():
            return
        partial = blob.with_name(f"{meta.etag}.incomplete")
        partial.parent.mkdir(parents=True, exist_ok=True)
        headers = build_hf_headers(token=token, library_name="orchard")
        with partial.open("a+b") as out:
            if meta.size is not None and out.tell() > meta.size:  # not this file's bytes: start over
                out.truncate(0)
            digest = _Digest(out)  # hashes the bytes already there, then each chunk as it is written
            on_bytes(out.tell(), True)
            failures = 0
            while meta.size is None or out.tell() < meta.size:
                if cancelled():
                    raise DownloadCancelled()
                done = out.tell()
                try:
                    with hub_errors(model_id, revision=commit, token_given=token is not None):
                        self._read_into(meta.location, headers, done, digest, on_bytes, cancelled)
                    failures = 0
                    if meta.size is None:
                        break
                except HubUnavailableError:
                    failures = failures + 1 if out.tell() == done else 0  # progress resets the count
                    if failures >= MAX_FETCH_FAILURES:
                        raise
                    time.sleep(min(2.0**failures / 4, 2.0))
        if SHA256_RE.match(meta.etag) and digest.hexdigest() != meta.etag:
            partial.unlink()
            raise InvalidModelError(
                f"'{filename}' of '{model_id}' did not match its checksum and was discarded; download it again.",
                model_id=model_id,
            )
        partial.replace(blob)

    @staticmethod
    def _read_into(
        url: str,
        headers: dict[str, str],
        start: int,
        out: _Digest,
        on_bytes: Callable[[int, bool], None],
        cancelled: Callable[[], bool],
    ) -> None:
        """One HTTP request from byte ``start``, appending what arrives to ``out`` until it ends or times out."""
        request_headers = {**headers, "Range": f"bytes={start}-"} if start else headers
        timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=10.0)
        try:
            with get_session().stream(
                "GET", url, headers=request_headers, follow_redirects=True, timeout=timeout
            ) as response:
                hf_raise_for_status(response)
                if start and response.status_code == 200:  # the server ignored the Range: start over
                    out.truncate(0)
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    on_bytes(len(chunk), False)
                    if cancelled():
                        raise DownloadCancelled()
        except httpx2.ReadTimeout:
            return  # no byte for READ_TIMEOUT_S: the caller checks for cancel and asks again from here

    def repo_folder(self, model_id: str) -> Path:
        """Where the Hub cache keeps ``model_id`` (its blobs, partial files and snapshots)."""
        return self.settings.hf_cache_dir / repo_folder_name(repo_id=model_id, repo_type="model")


class _Digest:
    """Appends to a partial file while keeping its sha256, so a finished file needs no second read."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self._restart(out.tell())

    def _restart(self, keep: int) -> None:
        self.sha = hashlib.sha256()
        self.out.seek(0)
        while keep and (chunk := self.out.read(min(keep, 8 * 1024 * 1024))):
            self.sha.update(chunk)
            keep -= len(chunk)
        self.out.seek(0, 2)

    def tell(self) -> int:
        return self.out.tell()

    def truncate(self, size: int) -> None:
        self.out.truncate(size)
        self._restart(size)

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.sha.update(chunk)

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


DownloadCancelled = JobCancelled  # raised inside a transfer to stop it; partial files stay for a resume


class SilentProgress(tqdm):  # type: ignore[type-arg]  # generic only in the stubs
    """A progress bar that draws nothing (downloads report progress through jobs, not stderr)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
