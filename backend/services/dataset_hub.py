"""Datasets from the Hugging Face Hub: a dataset repo's split (or one file), fetched through huggingface_hub and
imported exactly like an upload (:mod:`backend.services.dataset_tools` checks and stores it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any

import httpx2
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.errors import RevisionNotFoundError as HubRevisionNotFoundError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils._validators import validate_repo_id  # as services/hub.py

from backend.errors import (
    HubUnavailableError,
    InvalidDatasetError,
    InvalidRequestError,
    PayloadTooLargeError,
    RepoAccessError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from backend.schemas.datasets import DatasetInfo
from backend.services.dataset_tools import DatasetService, RawRows, _read_limited, check_rows, read_rows
from backend.services.hub import SilentProgress, hub_errors

# Hub imports: the files a split is read from, and the files of a saved `datasets` folder that are not data.
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
NOT_DATA_FILES = frozenset({"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"})
# A split's usual names in file paths (the `datasets` library's keywords), so that split="validation" finds dev.jsonl.
SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
MAX_LISTED_FILES = 50  # candidate files named in a 400
_SHARD_OF = re.compile(r"-\d+-of-(\d+)$")  # train-00000-of-00002: shard 0 of 2
_TRAILING_NUMBER = re.compile(r"\d+$")  # part-0, 0000: one of numbered shards


# ---------------------------------------------------------------------------------------------------- the Hub


def _is_data_file(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        PurePosixPath(path).suffix.lower() in DATA_SUFFIXES
        and parts[-1] not in NOT_DATA_FILES
        and not any(part.startswith(".") for part in parts)
    )


def _names_split(path: str, split: str) -> bool:
    """Whether a repo path names ``split`` as a word: train.jsonl, data/train-00000-of-00002.parquet, train/x.csv,
    not trainer.jsonl. The usual other names count too (``dev`` for validation), as in the ``datasets`` library."""
    lowered = path.lower()
    return any(
        re.search(rf"(?:^|[/\-._ ]){re.escape(word)}(?:[/\-._ 0-9]|$)", lowered)
        for word in SPLIT_NAMES.get(split.lower(), (split.lower(),))
    )


def _shard_group(path: str) -> str:
    """What the shards of one file have in common: its path without the shard number. The shards of
    data/train-00000-of-00002.parquet are -00001-of-00002 (not -00000-of-00003); those of train/part-0.csv, part-1."""
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    marked = _SHARD_OF.sub(lambda m: f"-*-of-{m.group(1)}", stem)
    if marked == stem:
        marked = _TRAILING_NUMBER.sub("*", stem)
    return f"{folder}/{marked}.{suffix}"


def _natural(path: str) -> list[Any]:
    """Sort key that puts part-2 before part-10."""
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", path)]


def _listed(paths: list[str]) -> dict[str, Any]:
    return {"candidates": paths[:MAX_LISTED_FILES], "candidate_count": len(paths)}


def _shown(paths: list[str]) -> str:
    more = f" and {len(paths) - MAX_LISTED_FILES} more" if len(paths) > MAX_LISTED_FILES else ""
    return ", ".join(paths[:MAX_LISTED_FILES]) + more


def pick_split_files(repo_id: str, paths: list[str], split: str) -> list[str]:
    """The data files of ``split`` among a repo's files, shards in order.

    The files whose path names the split (see :func:`_names_split`) must be one file or the shards of one file
    (see :func:`_shard_group`); with none, a repo's only data file (or set of shards) is taken when it names no
    other split.

    Raises:
        InvalidDatasetError: the repo has no data file (.jsonl, .json, .csv or .parquet).
        InvalidRequestError: no file, or files of more than one set, name the split; ``candidates`` lists them.
    """
    data = sorted((path for path in paths if _is_data_file(path)), key=_natural)
    if not data:
        raise InvalidDatasetError(
            f"'{repo_id}' has no data file Orchard reads (.jsonl, .json, .csv or .parquet).",
            errors=[{"line": None, "field": None, "message": "no data files in the repo"}],
            error_count=1,
            repo_id=repo_id,
        )
    named = [path for path in data if _names_split(path, split)]
    if len({_shard_group(path) for path in named}) == 1:
        return named
    if not named:
        splits_named = any(_names_split(path, other) for path in data for other in SPLIT_NAMES)
        if len({_shard_group(path) for path in data}) == 1 and not splits_named:
            return data
        raise InvalidRequestError(
            f"No data file of '{repo_id}' names the split '{split}'. Its data files: {_shown(data)}. Pass the "
            "split they name (`split`) or one of them (`file`).",
            repo_id=repo_id,
            split=split,
            **_listed(data),
        )
    raise InvalidRequestError(
        f"More than one set of files of '{repo_id}' names the split '{split}': {_shown(named)}. Pass one of them "
        "(`file`), or a split that names only one set (e.g. the part before the shard number).",
        repo_id=repo_id,
        split=split,
        **_listed(named),
    )


@contextmanager
def hub_dataset_errors(repo_id: str, *, revision: str | None, token_given: bool) -> Iterator[None]:
    """Hub errors in a dataset's words; the rest (transport, offline, other HTTP statuses) as :func:`hub_errors`
    translates them for models.

    The Hub answers an anonymous caller the same for a private repo as for a missing one (huggingface_hub raises
    ``RepositoryNotFoundError`` for both), so both are 404 with a hint; a gated repo lists its files to anyone and
    serves them only with access (401 without a token, 403 with one that has none).
    """
    with hub_errors(repo_id, revision=revision, token_given=token_given):
        try:
            yield
        except GatedRepoError as exc:  # before RepositoryNotFoundError, its base class
            if token_given:
                raise RepoAccessError(
                    f"The dataset '{repo_id}' is gated and this token has no access. Accept its terms on its Hub "
                    "page with the account that owns the token, then retry.",
                    status_code=403,
                    repo_id=repo_id,
                ) from exc
            raise RepoAccessError(
                f"The dataset '{repo_id}' is gated: accept its terms on the Hub, then pass an access_token "
                "(or set HF_TOKEN) for an account with access.",
                status_code=401,
                repo_id=repo_id,
            ) from exc
        except RepositoryNotFoundError as exc:
            seen = " that this token can see" if token_given else ""
            hint = "" if token_given else " If it is private, pass an access_token (or set HF_TOKEN)."
            raise RepoNotFoundError(
                f"No dataset '{repo_id}' on the Hub{seen}. Check the id: it names a dataset repo, as in "
                f"huggingface.co/datasets/{repo_id}.{hint}",
                repo_id=repo_id,
            ) from exc
        except HubRevisionNotFoundError as exc:
            raise RevisionNotFoundError(
                f"The dataset '{repo_id}' has no revision '{revision}'. Use a branch, tag or commit that exists "
                "(default: main).",
                repo_id=repo_id,
                revision=revision,
            ) from exc
        except RemoteEntryNotFoundError as exc:
            raise InvalidRequestError(
                f"A file of '{repo_id}' is not on the Hub at this revision; list the repo again.", repo_id=repo_id
            ) from exc
        except LocalEntryNotFoundError as exc:  # the Hub could not be reached, and nothing was cached
            cause = exc.__cause__ or exc.__context__
            raise HubUnavailableError(
                "Could not reach the Hub; check the network connection (and HF_ENDPOINT if you use a mirror).",
                status_code=504 if isinstance(cause, httpx2.TimeoutException) else 502,
            ) from exc


def import_from_hub(
    service: DatasetService,
    repo_id: str,
    *,
    revision: str | None = None,
    file: str | None = None,
    split: str = "train",
    name: str | None = None,
    access_token: str | None = None,
) -> DatasetInfo:
    """Import a dataset repo from the Hub: the data files of ``split`` (or the one ``file``), shards
    concatenated, checked and stored exactly like an upload.

    The repo's file list (at the commit ``revision`` resolves to) picks the files (see :func:`pick_split_files`)
    and gives their sizes, refused over ``ORCHARD_MAX_DATASET_MB`` before any byte is fetched. The files are
    fetched into the Hub cache (``datasets--<org>--<name>``, where a second import of the same commit finds
    them) and read whole into memory, so this blocks for as long as the download takes.

    Raises:
        InvalidRequestError: not a repo id, or no single set of files for the split (``candidates``).
        RepoNotFoundError, RepoAccessError, RevisionNotFoundError, HubUnavailableError: see
            :func:`hub_dataset_errors`.
        PayloadTooLargeError: the files are over the limit; nothing was fetched.
        InvalidDatasetError: a file or some rows cannot be used (each located, with its ``file``).
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InvalidRequestError(
            f"'{repo_id}' is not a valid dataset repo id; use 'organisation/name', e.g. 'tatsu-lab/alpaca'.",
            repo_id=repo_id,
        ) from exc
    token = service.settings.token(access_token)
    api = HfApi(endpoint=service.settings.hf_endpoint, library_name="orchard")
    errors = functools.partial(hub_dataset_errors, repo_id, revision=revision, token_given=token is not None)
    with errors():
        commit = api.dataset_info(repo_id, revision=revision, token=token).sha or revision or "main"
        tree = api.list_repo_tree(repo_id, recursive=True, revision=commit, repo_type="dataset", token=token)
        sizes = {entry.path: entry.size for entry in tree if isinstance(entry, RepoFile)}
    if file is not None:
        wanted = file.strip().strip("/")
        if wanted not in sizes:
            data_files = sorted(filter(_is_data_file, sizes), key=_natural)
            raise InvalidRequestError(
                f"'{repo_id}' has no file '{wanted}' at {commit[:12]}. Its data files: {_shown(data_files)}.",
                repo_id=repo_id,
                file=wanted,
                **_listed(data_files),
            )
        paths = [wanted]
    else:
        paths = pick_split_files(repo_id, list(sizes), split)
    limit = service.limit_bytes
    total = sum(sizes[path] for path in paths)
    if total > limit:
        raise PayloadTooLargeError(
            f"The {len(paths)} file(s) of '{repo_id}' to import hold {total / 1e6:.1f} MB, over the "
            f"{limit / 1e6:.0f} MB limit (ORCHARD_MAX_DATASET_MB); pick fewer files (`file`) or raise the limit. "
            "Nothing was downloaded.",
            limit_bytes=limit,
            size_bytes=total,
            files=paths[:MAX_LISTED_FILES],
        )
    parts: list[RawRows] = []
    read = 0
    for path in paths:
        with errors():
            local = hf_hub_download(
                repo_id,
                path,
                repo_type="dataset",
                revision=commit,
                token=token,
                cache_dir=service.settings.hf_cache_dir,
                endpoint=service.settings.hf_endpoint,
                library_name="orchard",
                tqdm_class=SilentProgress,
            )
        with open(local, "rb") as src:
            data = _read_limited(src, limit, before=read)
        read += len(data)
        try:
            parts.append(read_rows(data, path, file=path))
        except InvalidDatasetError as exc:  # a file-wide fault: say which file
            located = [{**error, "file": path} for error in exc.details.get("errors", [])]
            raise InvalidDatasetError(
                f"{path}: {exc.message}", errors=located, error_count=exc.details.get("error_count", 1)
            ) from None
    shape, rows = check_rows(parts, retry="fix them in the repo, or pick other files (`file`, `split`)")
    label = (name or "").strip() or f"{repo_id} ({file.strip() if file is not None else split})"
    return service.store(
        rows,
        name=label,
        fmt=parts[0].fmt,
        shape=shape,
        source_filename=paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)",
        source_bytes=read,
        source=f"hub:{repo_id}@{commit}",
    )
