"""Importing a model uploaded from the browser: a folder's files, one .zip or one .gguf file, into the models
directory (a GGUF file goes into a folder of its name).

Everything is written to a hidden staging folder first and moved into place only once it is a complete model,
so a failed or refused upload leaves nothing behind. No path can escape the staging folder: absolute names,
``..`` parts, drive letters and zip symlink entries are refused, and sizes are counted as bytes are written
(not taken from headers), which also stops zip bombs.
"""

from __future__ import annotations

import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from backend.errors import InvalidModelError, InvalidRequestError, ModelExistsError, PayloadTooLargeError
from backend.services.model_files import inspect_folder

CHUNK = 1024 * 1024
MAX_ZIP_RATIO = 200  # uncompressed/compressed; model weights compress ~1.1x, bombs 1000x
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _safe_relative(name: str) -> PurePosixPath:
    """A file name from the client as a relative path that stays inside its folder, or 400."""
    cleaned = name.replace("\\", "/")
    path = PurePosixPath(cleaned)
    if (
        not cleaned
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in cleaned.split("/"))
        or ":" in path.parts[0]
        or "\x00" in cleaned
    ):
        raise InvalidRequestError(f"Refused file name '{name}': names must be relative paths inside the model.")
    return path


def _model_name(name: str | None, fallback: str) -> str:
    candidate = (name or fallback).strip()
    if not NAME_RE.match(candidate):
        raise InvalidRequestError(
            f"'{candidate}' is not a usable model name: use letters, digits, '.', '_' and '-' (up to 100)."
        )
    return candidate


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def copy(self, src: IO[bytes], dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:
            while chunk := src.read(CHUNK):
                self.used += len(chunk)
                if self.used > self.limit:
                    raise PayloadTooLargeError(
                        f"The upload is larger than the {self.limit / 1e9:.1f} GB limit (ORCHARD_MAX_UPLOAD_GB).",
                        limit_bytes=self.limit,
                    )
                out.write(chunk)


def _extract_zip(src: IO[bytes], dest: Path, budget: _Budget) -> None:
    try:
        archive = zipfile.ZipFile(src)
    except zipfile.BadZipFile as exc:
        raise InvalidRequestError("The uploaded .zip is not a valid zip archive.") from exc
    with archive:
        entries = archive.infolist()
        declared = sum(e.file_size for e in entries)
        if declared > budget.limit:
            raise PayloadTooLargeError(
                f"The archive unpacks to {declared / 1e9:.1f} GB, over the {budget.limit / 1e9:.1f} GB limit.",
                limit_bytes=budget.limit,
            )
        for entry in entries:
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise InvalidRequestError(f"Refused zip entry '{entry.filename}': symbolic links are not allowed.")
            rel = _safe_relative(entry.filename.rstrip("/") if entry.is_dir() else entry.filename)
            if entry.is_dir():
                continue
            if entry.compress_size and entry.file_size / entry.compress_size > MAX_ZIP_RATIO:
                raise InvalidRequestError(f"Refused zip entry '{entry.filename}': suspicious compression ratio.")
            with archive.open(entry) as member:
                budget.copy(member, dest / rel)


def import_model(models_dir: Path, files: Iterable[tuple[str, IO[bytes]]], *, name: str | None, max_bytes: int) -> Path:
    """Store uploaded files as a new model folder under ``models_dir`` and return its path.

    Args:
        models_dir: Where local models live.
        files: ``(relative file name, stream)`` pairs: a folder's files (names may start with the folder's
            name, as browsers send them) or a single ``.zip``.
        name: The new model's folder name; default: the uploaded folder's or zip's name.
        max_bytes: Largest total size accepted, counted uncompressed.

    Raises:
        InvalidRequestError (bad names or archive), PayloadTooLargeError, InvalidModelError (not a model),
        ModelExistsError (the name is taken).
    """
    items = list(files)
    if not items:
        raise InvalidRequestError("No files were uploaded.")
    staging = models_dir / f".upload-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        budget = _Budget(max_bytes)
        if len(items) == 1 and items[0][0].lower().endswith(".zip"):
            zip_name, stream = items[0]
            fallback = PurePosixPath(zip_name.replace("\\", "/")).stem
            _extract_zip(stream, staging, budget)
        else:
            rels = [_safe_relative(filename) for filename, _ in items]
            tops = {r.parts[0] for r in rels}
            fallback = next(iter(tops)) if len(tops) == 1 and all(len(r.parts) > 1 for r in rels) else ""
            if len(rels) == 1 and rels[0].suffix.lower() == ".gguf":  # one GGUF file: a folder holding it
                rels, fallback = [PurePosixPath(rels[0].name)], rels[0].stem
            for rel, (_, stream) in zip(rels, items, strict=True):
                budget.copy(stream, staging / rel)
        root = staging
        children = [p for p in staging.iterdir() if not p.name.startswith(".")]
        if not (staging / "config.json").exists() and len(children) == 1 and children[0].is_dir():
            root = children[0]  # the archive or folder wraps the model in one top folder
            fallback = fallback or root.name
        model_name = _model_name(name, fallback)
        files_found = inspect_folder(root)
        if not files_found.complete:
            raise InvalidModelError(
                f"The upload is not a complete model: {'; '.join(files_found.problems)}.",
                problems=files_found.problems,
            )
        target = models_dir / model_name
        if target.exists():
            raise ModelExistsError(
                f"A local model named '{model_name}' exists; choose another name or delete it.", model_id=model_name
            )
        root.rename(target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
