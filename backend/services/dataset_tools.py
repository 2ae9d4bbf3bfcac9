"""Datasets for fine-tuning: import (JSONL, JSON, CSV, Parquet; uploaded or from the Hub), one normalised form,
statistics and a trained-span preview.

Every row becomes one of two internal forms, stored one per line in ``DATA_DIR/datasets/<id>/data.jsonl``:

- ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` for chat, ShareGPT, instruction
  and prompt/completion rows (instruction: the user turn is ``instruction`` then ``input`` after a blank line);
- ``{"text": str}`` for plain text, which is trained on as a whole.

An import is checked completely before anything is written, then written to a hidden ``.tmp-<id>`` folder and
renamed into place, so a refused or failed import leaves nothing. A Hub import
(:func:`backend.services.dataset_hub.import_from_hub`) picks a split's data files from the repo's file list, checks
their sizes against the upload limit before fetching a byte, fetches them into the Hub cache and then goes through the
same checks as an upload, its shards concatenated. The Chat page's exported conversations import as chat rows.

Token statistics and the preview use the loaded model's tokenizer and its chat template (or chat's fallback
transcript when it has none): the same rendering chat uses, so what is trained is what the model sees when it
answers.

Rows longer than ``max_seq_length`` tokens are *dropped* from training, not truncated: truncation cuts the end of
the reply, end-of-turn token included, and teaches the model not to stop.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from backend.config import Settings
from backend.errors import (
    DatasetNotFoundError,
    InvalidDatasetError,
    ModelNotLoadedError,
    PayloadTooLargeError,
)
from backend.schemas.datasets import (
    CharacterStats,
    DatasetDetail,
    DatasetFormat,
    DatasetInfo,
    DatasetPreview,
    DatasetShape,
    DatasetStats,
    HistogramBin,
    PreviewRow,
    PreviewSegment,
    TokenStats,
)
from backend.services.chat_service import FALLBACK_TEMPLATE
from backend.services.model_service import LoadedModel, ModelCache

logger = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 20
CHUNK = 1024 * 1024
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
# The key that tells a row's shape, in the order they are tried.
SHAPE_KEYS: tuple[tuple[DatasetShape, tuple[str, ...]], ...] = (
    ("chat", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("instruction", ("instruction", "output")),
    ("prompt_completion", ("prompt", "completion")),
    ("text", ("text",)),
)
PARQUET_MAGIC = b"PAR1"  # a Parquet file starts (and ends) with these bytes
TEXT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
PARQUET_BATCH_ROWS = 10_000
DROP_POLICY = (
    "Rows longer than max_seq_length tokens are dropped from training, not truncated: truncating would cut the end "
    "of the reply and its end-of-turn token, and teach the model not to stop."
)

Row = dict[str, Any]  # a normalised row: {"messages": [...]} or {"text": str}


class _Fault(Exception):
    """One located problem in one row (collected, never shown as an exception)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


# ---------------------------------------------------------------------------------------------------- reading


def _read_limited(src: IO[bytes], limit: int, *, before: int = 0) -> bytes:
    """All of ``src``, refused once ``before`` (bytes of earlier files of the same import) plus it passes ``limit``."""
    buf = bytearray()
    while chunk := src.read(CHUNK):
        buf += chunk
        if before + len(buf) > limit:
            raise PayloadTooLargeError(
                f"The dataset is larger than the {limit / 1e6:.0f} MB limit (ORCHARD_MAX_DATASET_MB); split it or "
                "raise the limit.",
                limit_bytes=limit,
            )
    return bytes(buf)


def _detect_format(filename: str, text: str) -> DatasetFormat:
    suffix = Path(filename).suffix.lower()
    first = text.lstrip()[:1]
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json" if first == "[" else "jsonl"  # many ".json" datasets are JSON lines
    if suffix in (".csv", ".tsv"):
        return "csv"
    if first == "[":
        return "json"
    return "jsonl" if first == "{" else "csv"


def _line_of(text: str, pos: int, cache: list[int]) -> int:
    """1-based line of ``pos``; ``cache`` is ``[last_pos, last_line]`` so a forward scan stays linear."""
    cache[1] += text.count("\n", cache[0], pos)
    cache[0] = pos
    return cache[1]


def _iter_jsonl(text: str) -> Iterator[tuple[int, Any]]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters splitlines() breaks on.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Fault(None, f"not valid JSON ({exc.msg} at column {exc.colno}); is the line cut short?")
        except RecursionError:
            yield number, _Fault(None, "nested too deeply to read")


def _iter_json(text: str) -> Iterator[tuple[int, Any]]:
    """The elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    where = [0, 1]
    pos = len(text) - len(text.lstrip())
    if text[pos : pos + 1] != "[":
        raise InvalidDatasetError(
            "A .json dataset must be a list of rows ([{...}, ...]); use .jsonl for one row per line.",
            errors=[{"line": _line_of(text, pos, where), "field": None, "message": "expected '['"}],
            error_count=1,
        )
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1  # a stray or trailing comma is tolerated
        if pos >= len(text):
            raise _file_fault(_line_of(text, pos, where), "the list is not closed with ']': is the file cut short?")
        if text[pos] == "]":
            break
        line = _line_of(text, pos, where)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _file_fault(exc.lineno, f"not valid JSON ({exc.msg}); is the file cut short?") from None
        except RecursionError:
            raise _file_fault(line, "nested too deeply to read") from None
        yield line, value
    if text[pos + 1 :].strip():
        raise _file_fault(_line_of(text, pos, where), "text after the closing ']'")


def _iter_csv(text: str) -> Iterator[tuple[int, Any]]:
    dialect = "excel-tab" if "\t" in text.split("\n", 1)[0] and "," not in text.split("\n", 1)[0] else "excel"
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    start = 2  # the header is line 1
    try:
        for record in reader:
            if any(value for key, value in record.items() if key is not None):
                yield start, {k: v for k, v in record.items() if k is not None}
            start = reader.line_num + 1
    except csv.Error as exc:
        raise _file_fault(reader.line_num, f"not valid CSV ({exc})") from None


def _is_parquet(filename: str, data: bytes) -> bool:
    suffix = Path(filename).suffix.lower()
    return suffix == ".parquet" or (suffix not in TEXT_SUFFIXES and data[:4] == PARQUET_MAGIC)


def _iter_parquet(data: bytes) -> Iterator[tuple[int, Any]]:
    """A Parquet file's rows as dicts (lists of structs become lists of dicts), each with its row number from 1.

    A null column value is left out of its row, as a JSON row would lack the key (a table's rows all have every
    column), so shape detection and the missing-field errors read Parquet rows as they read JSON rows.
    """
    import pyarrow as pa  # imported on first use: only Parquet needs it, and it adds to start-up time
    import pyarrow.parquet as pq

    number = 0
    try:
        for batch in pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                number += 1
                yield number, {key: value for key, value in record.items() if value is not None}
    except (pa.ArrowException, OSError) as exc:  # ArrowInvalid, ArrowIOError, ArrowMemoryError, ...
        logger.info("Unreadable Parquet file: %s: %s", type(exc).__name__, exc)
        raise _file_fault(
            None, "not a valid Parquet file (is it cut short, or another format with a .parquet name?)"
        ) from None


def _file_fault(line: int | None, message: str) -> InvalidDatasetError:
    return InvalidDatasetError(
        f"The file could not be read: {message}",
        errors=[{"line": line, "field": None, "message": message}],
        error_count=1,
    )


# ---------------------------------------------------------------------------------------------------- shapes


def detect_shape(row: Any) -> DatasetShape | None:
    """The shape a raw row has, from its keys; None when it has none Orchard knows."""
    if isinstance(row, dict):
        for shape, keys in SHAPE_KEYS:
            if any(key in row for key in keys):
                return shape
    return None


def _string(row: dict[str, Any], key: str, *, required: bool = True, nonempty: bool = False) -> str:
    value = row.get(key)
    if value is None or (value == "" and not nonempty and not required):
        if required:
            raise _Fault(key, f"missing field '{key}'")
        return ""
    if not isinstance(value, str):
        raise _Fault(key, f"'{key}' must be text, not {type(value).__name__}")
    if nonempty and not value.strip():
        raise _Fault(key, f"'{key}' is empty: there is no reply to learn")
    return value


def _parse_json_cell(value: Any, key: str) -> Any:
    if isinstance(value, str):  # a CSV cell holding the JSON list
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise _Fault(key, f"'{key}' must be a list of messages (JSON)") from None
    return value


def _content(value: Any, field: str) -> str:
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)  # OpenAI-style content parts
    if not isinstance(value, str):
        raise _Fault(field, f"'{field}' must be text")
    return value


def _messages(items: Any, key: str, role_key: str, text_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    items = _parse_json_cell(items, key)
    if not isinstance(items, list) or not items:
        raise _Fault(key, f"'{key}' must be a non-empty list of messages")
    out: list[dict[str, str]] = []
    for i, message in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(message, dict):
            raise _Fault(where, f"'{where}' must be an object with '{role_key}' and '{text_key}'")
        if role_key not in message:
            raise _Fault(f"{where}.{role_key}", f"missing field '{role_key}'")
        raw_role = message[role_key]
        role = roles.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise _Fault(f"{where}.{role_key}", f"unknown role {raw_role!r}; expected one of {', '.join(roles)}")
        if text_key not in message:
            raise _Fault(f"{where}.{text_key}", f"missing field '{text_key}'")
        content = _content(message[text_key], f"{where}.{text_key}")
        if role == "assistant" and not content.strip():
            raise _Fault(f"{where}.{text_key}", "empty assistant reply: there is nothing to learn")
        out.append({"role": role, "content": content})
    return out


def normalise(row: Any, shape: DatasetShape) -> Row:
    """A raw row of ``shape`` in Orchard's internal form. Raises :class:`_Fault` naming the field at fault."""
    if not isinstance(row, dict):
        raise _Fault(None, f"a row must be an object, not {type(row).__name__}")
    if shape == "chat":
        return {"messages": _messages(row.get("messages"), "messages", "role", "content", {r: r for r in ROLES})}
    if shape == "sharegpt":
        return {"messages": _messages(row.get("conversations"), "conversations", "from", "value", SHAREGPT_ROLES)}
    if shape == "text":
        return {"text": _string(row, "text", nonempty=True)}
    if shape == "instruction":
        user = _string(row, "instruction", nonempty=False)
        extra = _string(row, "input", required=False)
        reply = _string(row, "output", nonempty=True)
        system = _string(row, "system", required=False)
        head = [{"role": "system", "content": system}] if system else []
        turns = [{"role": "user", "content": f"{user}\n\n{extra}" if extra else user}]
        return {"messages": [*head, *turns, {"role": "assistant", "content": reply}]}
    prompt, completion = _string(row, "prompt"), _string(row, "completion", nonempty=True)
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]}


@dataclass
class RawRows:
    """One file's rows as read, before shape detection: ``(line, value)``, where ``line`` is a Parquet file's row
    number (from 1) and ``value`` a :class:`_Fault` for a line that could not be read. ``file`` is named in each
    error when an import reads several files (a Hub import)."""

    fmt: DatasetFormat
    rows: list[tuple[int, Any]]
    file: str | None = None


def read_rows(data: bytes, filename: str, *, file: str | None = None) -> RawRows:
    """Read one file's rows; the format comes from the name, else from the first bytes.

    Raises:
        InvalidDatasetError: the file as a whole cannot be read (not UTF-8, empty, not Parquet...), ``line: null``.
    """
    if _is_parquet(filename, data):  # binary: never decoded as text
        return RawRows("parquet", list(_iter_parquet(data)), file)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_fault(None, f"the file is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if not text.strip():
        raise _file_fault(None, "the file is empty")
    exported = _chat_export(text)
    if exported is not None:
        return RawRows("json", exported, file)
    fmt = _detect_format(filename, text)
    reader = {"jsonl": _iter_jsonl, "json": _iter_json, "csv": _iter_csv}[fmt]
    return RawRows(fmt, list(reader(text)), file)


def _chat_export(text: str) -> list[tuple[int, Any]] | None:
    """The Chat page's export (``{"source": "orchard", "conversations": [{"messages": [...]}, ...]}``) as chat rows,
    each located by its conversation's number; None for any other file."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        whole = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None  # JSON lines, say: read as such
    conversations = whole.get("conversations") if isinstance(whole, dict) else None
    if not isinstance(conversations, list) or whole.get("source") != "orchard":
        return None
    return [
        (number, {"messages": c.get("messages")} if isinstance(c, dict) else c)
        for number, c in enumerate(conversations, start=1)
    ]


def _located(file: str | None, line: int, field: str | None, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"line": line, "field": field, "message": message}
    if file is not None:
        error["file"] = file
    return error


def check_rows(parts: list[RawRows], *, retry: str = "fix them and upload again") -> tuple[DatasetShape, list[Row]]:
    """Detect the shape of the rows of every part together and normalise them all, or raise
    :class:`InvalidDatasetError` locating every faulty row (``retry`` ends its message: what to do)."""
    total = sum(len(part.rows) for part in parts)
    if not total:
        raise _file_fault(None, "the file holds no rows")
    shapes = Counter(
        s for part in parts for _, value in part.rows if not isinstance(value, _Fault) and (s := detect_shape(value))
    )
    if not shapes:
        first_part = next(part for part in parts if part.rows)
        raise InvalidDatasetError(
            "No row has fields Orchard recognises. Use messages (role/content), conversations (from/value), "
            "instruction/input/output, prompt/completion or text.",
            errors=[_located(first_part.file, first_part.rows[0][0], None, "no recognised fields")],
            error_count=total,
        )
    shape = max(shapes, key=lambda s: shapes[s])  # the most common; ties go to the first seen (Counter order)
    rows: list[Row] = []
    errors: list[dict[str, Any]] = []
    first_where = ""
    for part in parts:
        for line, value in part.rows:
            try:
                if isinstance(value, _Fault):
                    raise value
                found = detect_shape(value)
                if found is None and isinstance(value, dict):
                    raise _Fault(None, f"no {shape} fields ({', '.join(dict(SHAPE_KEYS)[shape])})")
                if found is not None and found != shape:
                    raise _Fault(dict(SHAPE_KEYS)[found][0], f"a {found} row in a {shape} dataset")
                rows.append(normalise(value, shape))
            except _Fault as fault:
                errors.append(_located(part.file, line, fault.field, fault.message))
                if not first_where:
                    first_where = f"{'row' if part.fmt == 'parquet' else 'line'} {line}"
                    first_where += f" of {part.file}" if part.file else ""
    if errors:
        raise InvalidDatasetError(
            f"{len(errors)} of {total} rows cannot be used (first: {first_where}: {errors[0]['message']}); "
            f"{retry}. Nothing was stored.",
            errors=errors[:MAX_REPORTED_ERRORS],
            error_count=len(errors),
        )
    return shape, rows


def parse_dataset(data: bytes, filename: str) -> tuple[DatasetFormat, DatasetShape, list[Row]]:
    """Read and normalise a whole file, or raise :class:`InvalidDatasetError` locating every faulty row."""
    raw = read_rows(data, filename)
    shape, rows = check_rows([raw])
    return raw.fmt, shape, rows


# ---------------------------------------------------------------------------------------------------- rendering


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    templated = bool(getattr(tokenizer, "chat_template", None))
    text = tokenizer.apply_chat_template(
        messages,
        chat_template=None if templated else FALLBACK_TEMPLATE,
        add_generation_prompt=generation_prompt,
        tokenize=False,
    )
    return str(text)


def render_segments(tokenizer: Any, row: Row) -> list[PreviewSegment]:
    """The row as the model is trained on it: the rendered text cut into trained (assistant turns) and context.

    Each assistant turn's span is the difference between the conversation rendered up to it with the generation
    prompt and rendered including it, so the span holds exactly what the model must write, end-of-turn included.
    Raises ValueError when the template does not render conversations as growing prefixes of each other.
    """
    if "text" in row:
        return [PreviewSegment(text=row["text"], trained=True)]
    messages = row["messages"]
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not upto.startswith(before) or not full.startswith(upto) or (spans and len(before) < spans[-1][1]):
            raise ValueError("the chat template does not render this conversation turn by turn")
        spans.append((len(before), len(upto)))
    segments: list[PreviewSegment] = []
    pos = 0
    for start, end in spans:
        if start > pos:
            segments.append(PreviewSegment(text=full[pos:start], trained=False))
        segments.append(PreviewSegment(text=full[start:end], trained=True))
        pos = end
    if pos < len(full):
        segments.append(PreviewSegment(text=full[pos:], trained=False))
    return segments


def encode_example(tokenizer: Any, row: Row) -> tuple[list[int], list[int]]:
    """The token ids training feeds the model for ``row``, and its labels: the id where the loss counts, -100
    where it does not (the prompt, system and user turns). One source for training, statistics and the plan.

    Chat rows are tokenized whole (the template writes BOS itself, as in chat) and each token is labelled by where
    its characters fall, so the ids are exactly chat's; a plain-text row is trained on whole and ends with EOS, so
    the model learns to stop.
    """
    if "text" in row:
        ids = list(tokenizer(row["text"], add_special_tokens=True)["input_ids"])
        eos = tokenizer.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        return ids, list(ids)
    segments = render_segments(tokenizer, row)
    text = "".join(s.text for s in segments)
    trained: list[tuple[int, int]] = []
    pos = 0
    for segment in segments:
        if segment.trained:
            trained.append((pos, pos + len(segment.text)))
        pos += len(segment.text)
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        labels = [
            tid if any(start < span_end and end > span_start for span_start, span_end in trained) else -100
            for tid, (start, end) in zip(ids, encoded["offset_mapping"], strict=True)
        ]
        return ids, labels
    ids, labels = [], []  # a slow tokenizer has no offsets: tokenize segment by segment
    for segment in segments:
        part = list(tokenizer(segment.text, add_special_tokens=False)["input_ids"])
        ids += part
        labels += part if segment.trained else [-100] * len(part)
    return ids, labels


def _count_tokens(tokenizer: Any, row: Row) -> int:
    return len(encode_example(tokenizer, row)[0])


def histogram(lengths: list[int], bins: int) -> list[HistogramBin]:
    """``bins`` equal bins from 0 to the longest length; ``end`` is exclusive except in the last bin."""
    if not lengths:
        return []
    width = max(1, math.ceil((max(lengths) + 1) / bins))
    counts = Counter(min(length // width, bins - 1) for length in lengths)
    return [HistogramBin(start=k * width, end=(k + 1) * width, count=counts.get(k, 0)) for k in range(bins)]


def _characters(row: Row) -> int:
    if "text" in row:
        return len(row["text"])
    return sum(len(m["content"]) for m in row["messages"])


def _trainable(row: Row) -> bool:
    if "text" in row:
        return bool(row["text"].strip())
    return any(m["role"] == "assistant" and m["content"].strip() for m in row["messages"])


# ---------------------------------------------------------------------------------------------------- service


class DatasetService:
    """Datasets on disk under ``DATA_DIR/datasets``: import, list, statistics, preview, delete."""

    def __init__(self, settings: Settings, cache: ModelCache) -> None:
        self.settings = settings
        self.cache = cache
        self.root = settings.data_path / "datasets"
        self._lock = threading.Lock()
        self._clean_partial()

    def _clean_partial(self) -> None:
        """Remove what an import or delete stopped by a crash left behind (hidden folders only)."""
        if self.root.is_dir():
            for leftover in self.root.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def _dir(self, dataset_id: str) -> Path:
        # Ids are made here (hex); anything else cannot name a dataset, and never reaches the file system.
        if not (len(dataset_id) == 32 and all(c in "0123456789abcdef" for c in dataset_id)):
            raise DatasetNotFoundError(f"No dataset '{dataset_id}'. GET /datasets lists them.", dataset_id=dataset_id)
        path = self.root / dataset_id
        if not (path / "meta.json").is_file():
            raise DatasetNotFoundError(f"No dataset '{dataset_id}'. GET /datasets lists them.", dataset_id=dataset_id)
        return path

    def create(self, src: IO[bytes], filename: str, name: str | None = None) -> DatasetInfo:
        """Import an uploaded file: check every row, normalise, store atomically.

        Raises:
            InvalidDatasetError: the file or some rows cannot be used (each located); nothing is stored.
            PayloadTooLargeError: over ``ORCHARD_MAX_DATASET_MB``.
        """
        data = _read_limited(src, self.limit_bytes)
        fmt, shape, rows = parse_dataset(data, filename)
        label = (name or "").strip() or Path(filename).stem.strip() or "dataset"
        return self.store(rows, name=label, fmt=fmt, shape=shape, source_filename=filename, source_bytes=len(data))

    @property
    def limit_bytes(self) -> int:
        return int(self.settings.max_dataset_mb * 1e6)

    def store(
        self,
        rows: list[Row],
        *,
        name: str,
        fmt: DatasetFormat,
        shape: DatasetShape,
        source_filename: str,
        source_bytes: int,
        source: str = "upload",
    ) -> DatasetInfo:
        """Write checked rows and their metadata to a hidden folder, then rename it into place."""
        dataset_id = uuid.uuid4().hex
        info = DatasetInfo(
            id=dataset_id,
            name=name[:200],
            format=fmt,
            shape=shape,
            num_examples=len(rows),
            created_at=datetime.now(UTC),
            source_filename=source_filename[:255],
            source_bytes=source_bytes,
            source=source,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{dataset_id}"
        try:
            staging.mkdir()
            with (staging / "data.jsonl").open("w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            (staging / "meta.json").write_text(info.model_dump_json(indent=2), encoding="utf-8")
            staging.rename(self.root / dataset_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("Imported dataset %s from %s (%s, %s, %d rows)", dataset_id, source, fmt, shape, len(rows))
        return info

    def list_all(self) -> list[DatasetInfo]:
        """Every stored dataset, newest first."""
        if not self.root.is_dir():
            return []
        found = []
        for meta in self.root.glob("[!.]*/meta.json"):
            try:
                found.append(DatasetInfo.model_validate_json(meta.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                logger.warning("Skipping unreadable dataset metadata %s", meta)
        return sorted(found, key=lambda d: d.created_at, reverse=True)

    def info(self, dataset_id: str) -> DatasetInfo:
        return DatasetInfo.model_validate_json((self._dir(dataset_id) / "meta.json").read_text(encoding="utf-8"))

    def rows(self, dataset_id: str) -> list[Row]:
        """The normalised rows (what training reads)."""
        with (self._dir(dataset_id) / "data.jsonl").open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]

    def delete(self, dataset_id: str) -> int:
        """Delete a dataset; returns the bytes freed."""
        path = self._dir(dataset_id)
        with self._lock:
            doomed = self.root / f".deleting-{dataset_id}"
            freed = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            path.rename(doomed)  # gone from listings at once, even if the removal below is slow
        shutil.rmtree(doomed, ignore_errors=True)
        return freed

    def detail(self, dataset_id: str, *, max_seq_length: int | None = None, bins: int = 10) -> DatasetDetail:
        """The dataset with its statistics; token statistics need a loaded model (null with a reason otherwise)."""
        info, rows = self.info(dataset_id), self.rows(dataset_id)
        chars = [_characters(row) for row in rows]
        digests = Counter(hashlib.sha256(json.dumps(r, sort_keys=True).encode()).digest() for r in rows)
        loaded = self.cache.current
        tokens, reason = None, None
        if loaded is None:
            reason = "Token statistics need the model's tokenizer: load a model (POST /model/load) and ask again."
        else:
            tokens = self._token_stats(loaded, rows, max_seq_length or self.settings.train_max_seq_length, bins)
        stats = DatasetStats(
            num_examples=len(rows),
            characters=CharacterStats(
                min=min(chars, default=0),
                max=max(chars, default=0),
                mean=sum(chars) / max(len(chars), 1),
                total=sum(chars),
            ),
            duplicates=sum(n - 1 for n in digests.values()),
            no_trainable_tokens=sum(not _trainable(row) for row in rows),
            tokens=tokens,
            tokens_reason=reason,
        )
        return DatasetDetail(**info.model_dump(), statistics=stats)

    def _token_stats(self, loaded: LoadedModel, rows: list[Row], max_seq_length: int, bins: int) -> TokenStats:
        lengths: list[int] = []
        unrenderable = 0
        for row in rows:
            try:
                lengths.append(_count_tokens(loaded.tokenizer, row))
            except Exception:  # jinja's own errors: a template that refuses, e.g., system turns
                unrenderable += 1
        over = sum(length > max_seq_length for length in lengths)
        return TokenStats(
            model_id=loaded.metadata.model_id,
            chat_template="model" if getattr(loaded.tokenizer, "chat_template", None) else "fallback",
            max_seq_length=max_seq_length,
            min=min(lengths, default=0),
            max=max(lengths, default=0),
            mean=sum(lengths) / max(len(lengths), 1),
            total=sum(lengths),
            histogram=histogram(lengths, bins),
            over_max_seq_length=over,
            unrenderable=unrenderable,
            kept_examples=len(lengths) - over,
            policy="drop",
            policy_note=DROP_POLICY,
        )

    def preview(self, dataset_id: str, *, offset: int = 0, limit: int = 5) -> DatasetPreview:
        """Rows rendered through the loaded model's chat template, with the trained spans marked.

        Raises:
            ModelNotLoadedError: no model is loaded (the template and tokenizer are the model's).
        """
        rows = self.rows(dataset_id)
        loaded = self.cache.current
        if loaded is None:
            raise ModelNotLoadedError(
                "The preview renders rows with the model's chat template: load a model first (POST /model/load).",
                dataset_id=dataset_id,
            )
        tokenizer = loaded.tokenizer
        out: list[PreviewRow] = []
        for index, row in enumerate(rows[offset : offset + limit], start=offset):
            try:
                segments = render_segments(tokenizer, row)
                warning = None
            except Exception as exc:  # jinja errors, or a template that is not turn-by-turn
                logger.info("Preview of dataset %s row %d: %s", dataset_id, index, exc)
                segments, warning = [], f"The chat template could not render this row: {type(exc).__name__}."
            text = "".join(s.text for s in segments)
            num_tokens = len(tokenizer(text, add_special_tokens="text" in row)["input_ids"]) if segments else 0
            out.append(PreviewRow(index=index, segments=segments, text=text, num_tokens=num_tokens, warning=warning))
        return DatasetPreview(
            dataset_id=dataset_id,
            model_id=loaded.metadata.model_id,
            chat_template="model" if getattr(tokenizer, "chat_template", None) else "fallback",
            total=len(rows),
            rows=out,
        )
