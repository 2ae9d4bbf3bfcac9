"""A small, real Hugging Face Hub-compatible HTTP server for offline tests.

Point ``huggingface_hub`` (``endpoint=`` or ``HF_ENDPOINT``) at :attr:`HubServer.endpoint` and it talks
to this server exactly as it talks to the real Hub: model and dataset info, tree listing, ``HEAD``/``GET``
on ``resolve`` URLs (with ``Range`` support) and the error headers (``X-Error-Code``) that
``huggingface_hub`` maps to its exceptions. Model repos live under ``/api/models/...`` and ``/{repo_id}/resolve/...``,
dataset repos (``add_repo(..., repo_type="dataset")``) under ``/api/datasets/...`` and
``/datasets/{repo_id}/resolve/...``; the two namespaces are separate, as on the Hub. Spaces are not served.
Only the standard library is used. Xet is never advertised (no ``X-Xet-*`` headers, no ``xetHash``), so the
library always uses plain HTTP downloads.

Example::

    with HubServer() as hub:
        sha = hub.add_repo("org/tiny", folder)
        path = snapshot_download("org/tiny", endpoint=hub.endpoint, cache_dir=tmp_path, token=False)
        hub.add_repo("org/data", data_folder, repo_type="dataset")
        hf_hub_download("org/data", "train.jsonl", repo_type="dataset", endpoint=hub.endpoint, cache_dir=tmp_path)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import mimetypes
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, quote, unquote

__all__ = ["HubServer", "RequestRecord", "iter_files"]

# Extensions that the Hub's default `.gitattributes` stores with Git LFS.
_LFS_EXTENSIONS = frozenset(
    {
        ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gguf", ".gz", ".h5", ".joblib", ".mlmodel",
        ".model", ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt",
        ".pth", ".rar", ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
    }
)  # fmt: skip
_LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub refuses non-LFS files above 10 MiB
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 64 * 1024

RepoType = Literal["model", "dataset"]
_API_PREFIXES: dict[str, RepoType] = {"models": "model", "datasets": "dataset"}  # /api/{prefix}/{repo_id}


@dataclass(frozen=True)
class RequestRecord:
    """One request handled by the server, as seen on the wire.

    Attributes:
        method: HTTP method (``GET``, ``HEAD``...).
        path: raw (still URL-quoted) request path, without the query string.
        query: raw query string ("" when none).
        range: the ``Range`` request header, if any.
        token: the bearer token sent in ``Authorization``, if any.
        status: HTTP status code of the response.
        body_bytes: number of response body bytes actually written to the socket.
    """

    method: str
    path: str
    query: str
    range: str | None
    token: str | None
    status: int
    body_bytes: int


@dataclass(frozen=True)
class _File:
    path: str
    data: bytes
    blob_id: str  # git object id: blob sha1 of the content, or of the LFS pointer for LFS files
    sha256: str | None  # set for LFS files
    pointer_size: int | None

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


@dataclass(frozen=True)
class _Revision:
    sha: str
    files: dict[str, _File]
    last_modified: str
    safetensors: dict[str, int]  # dtype -> parameter count
    config: dict[str, object] | None


@dataclass
class _Repo:
    repo_id: str
    private: bool
    gated: bool
    token: str | None
    pipeline_tag: str | None
    library_name: str | None
    tags: list[str]
    created_at: str
    repo_type: RepoType = "model"
    revisions: dict[str, _Revision] = field(default_factory=dict)
    commits: dict[str, _Revision] = field(default_factory=dict)

    def resolve(self, revision: str) -> _Revision | None:
        return self.revisions.get(revision) or self.commits.get(revision)

    @property
    def default_revision(self) -> _Revision:
        return self.revisions.get("main") or next(iter(self.revisions.values()))


@dataclass
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    is_file: bool = False  # file bodies are subject to throttling / dropped transfers


class _HttpError(Exception):
    """Raised inside handlers to answer with a Hub-style error."""

    def __init__(self, status: int, message: str, error_code: str | None = None, **headers: str) -> None:
        super().__init__(message)
        self.response = _json_response(status, {"error": message})
        self.response.headers["X-Error-Message"] = message
        if error_code is not None:
            self.response.headers["X-Error-Code"] = error_code
        self.response.headers.update(headers)


def _json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(payload).encode()
    return _Response(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str, data: bytes) -> bool:
    return Path(path).suffix.lower() in _LFS_EXTENSIONS or len(data) >= _LFS_SIZE_THRESHOLD or b"\0" in data[:8000]


def _make_file(path: str, data: bytes) -> _File:
    if not _is_lfs(path, data):
        return _File(path, data, _git_blob_sha1(data), None, None)
    sha256 = hashlib.sha256(data).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
    return _File(path, data, _git_blob_sha1(pointer), sha256, len(pointer))


def _safetensors_header(data: bytes) -> dict[str, object] | None:
    if len(data) < 8:
        return None
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def _safetensors_parameters(files: dict[str, _File]) -> dict[str, int]:
    params: dict[str, int] = {}
    for path, file in files.items():
        if not path.endswith(".safetensors"):
            continue
        for name, info in (_safetensors_header(file.data) or {}).items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            dtype = str(info.get("dtype"))
            params[dtype] = params.get(dtype, 0) + math.prod(int(d) for d in info.get("shape", []))
    return params


def _is_true(values: list[str] | None) -> bool:
    return values is not None and len(values) > 0 and values[-1].lower() in ("1", "true", "yes")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not block stop()

    def __init__(self, hub: HubServer, address: tuple[str, int]) -> None:
        self.hub = hub
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _ThreadingServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hub._serve(self)

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET
    do_OPTIONS = do_GET


class HubServer:
    """A Hugging Face Hub look-alike served on ``127.0.0.1`` from a background thread.

    Repos are registered with :meth:`add_repo`; their files are snapshotted in memory at that time (like a
    commit).

    Attributes:
        throttle_bytes_per_s: when set, file bodies are streamed at about this rate.
        fail_after_bytes: when set, every file body ``GET`` whose body is longer than this closes the
            connection (cleanly, without finishing the body) after sending that many body bytes, to simulate a
            dropped transfer. ``huggingface_hub`` then resumes with a ``Range`` request; each response is cut
            independently, so a download progresses by at most that many bytes per attempt.
        lfs_redirect: when True, ``resolve`` answers LFS files like the real Hub: ``302`` to a "CDN" on
            another origin (``http://localhost:<port>/cdn-lfs/<sha256>``, no auth needed) carrying
            ``X-Linked-Etag`` and ``X-Linked-Size``; ``huggingface_hub`` then downloads from there without
            its ``Authorization`` header. Default False: LFS files are served directly with
            ``ETag: "<sha256>"``.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.throttle_bytes_per_s: int | None = None
        self.fail_after_bytes: int | None = None
        self.lfs_redirect: bool = False
        self._address = (host, port)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._log: list[RequestRecord] = []
        self._repos: dict[tuple[RepoType, str], _Repo] = {}  # (repo type, repo id): the namespaces are separate
        self._blobs: dict[str, _File] = {}  # sha256 -> LFS file, for the CDN route
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HubServer:
        """Bind the socket (port 0 lets the OS pick) and serve from a daemon thread. Returns ``self``."""
        if self._server is not None:
            return self
        self._server = _ThreadingServer(self, self._address)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.connections_lock:
            for conn in list(server.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only once started)."""
        if self._server is None:
            raise RuntimeError("HubServer is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """Base URL to pass as ``endpoint=`` / ``HF_ENDPOINT``, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self._address[0]}:{self.port}"

    # ------------------------------------------------------------------ repos
    def add_repo(
        self,
        repo_id: str,
        folder: Path,
        *,
        revision: str = "main",
        gated: bool = False,
        private: bool = False,
        token: str | None = None,
        pipeline_tag: str | None = None,
        library_name: str | None = None,
        tags: list[str] | None = None,
        repo_type: RepoType = "model",
    ) -> str:
        """Serve the files under ``folder`` (recursively, ``.git`` excluded) as ``repo_id`` at ``revision``.

        A repo can have several revisions (branch names), each with its own folder; calling again with the
        same revision moves the branch (the previous commit stays reachable by its sha). The repo-level
        settings (``gated``, ``private``, ``token``, ``pipeline_tag``, ``library_name``, ``tags``) are taken
        from the latest call.

        Args:
            gated: like a gated repo on the Hub: info and tree listing stay public, file downloads need
                ``token`` (401 ``GatedRepo`` without a token, 403 ``GatedRepo`` with a wrong one).
            private: without ``token``, the repo does not exist (404 ``RepoNotFound``) for every route.
            token: the bearer token (``Authorization: Bearer <token>``) that grants access; required when
                ``gated`` or ``private``.
            library_name: defaults to ``"transformers"`` when a model repo's folder has a ``config.json``.
            repo_type: ``"model"`` (``/api/models``, ``/{repo_id}/resolve``) or ``"dataset"`` (``/api/datasets``,
                ``/datasets/{repo_id}/resolve``, what ``repo_type="dataset"`` calls reach). A model and a dataset
                may share a repo id.

        Returns:
            The commit sha: a deterministic 40-hex string derived from ``repo_id`` and the files'
            contents. The revision can also be requested by that sha.
        """
        if (gated or private) and not token:
            raise ValueError("a gated or private repo needs a `token`")
        root = Path(folder)
        if not root.is_dir():
            raise NotADirectoryError(root)
        files = {rel: _make_file(rel, data) for rel, data in iter_files(root)}
        # Models keep the digest they always had; other repo types add theirs, so a dataset's commit differs.
        digest = hashlib.sha1(f"commit\0{repo_id}\0".encode())
        if repo_type != "model":
            digest.update(f"{repo_type}\0".encode())
        for rel, f in files.items():
            digest.update(f"{rel}\0{f.blob_id}\0".encode())
        config: dict[str, object] | None = None
        if repo_type == "model" and "config.json" in files:
            try:
                loaded = json.loads(files["config.json"].data)
                config = {k: loaded[k] for k in ("architectures", "model_type") if k in loaded}
            except (ValueError, TypeError):
                config = None
        rev = _Revision(
            sha=digest.hexdigest(),
            files=files,
            last_modified=_iso(time.time()),
            safetensors=_safetensors_parameters(files),
            config=config,
        )
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is None:
                repo = _Repo(repo_id, private, gated, token, None, None, [], _iso(time.time()), repo_type)
                self._repos[(repo_type, repo_id)] = repo
            repo.private, repo.gated, repo.token = private, gated, token
            repo.pipeline_tag = pipeline_tag
            repo.library_name = library_name or (
                "transformers" if repo_type == "model" and "config.json" in files else None
            )
            repo.tags = list(tags or [])
            repo.revisions[revision] = rev
            repo.commits[rev.sha] = rev
            for f in files.values():
                if f.sha256 is not None:
                    self._blobs[f.sha256] = f
        return rev.sha

    # ------------------------------------------------------------------ request log
    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log (waits up to 5 s for requests still being answered to be logged)."""
        self.wait_idle(5.0)
        with self._lock:
            return list(self._log)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being answered; returns False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def reset_log(self) -> None:
        """Forget all requests so far; one still being answered (say, to a client that was killed) is waited for
        first (up to 10 s), so that it is not logged after the reset."""
        self.wait_idle(10.0)
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------------ HTTP plumbing
    def _serve(self, handler: _Handler) -> None:
        with self._lock:
            self._in_flight += 1
        method = handler.command
        raw_path, _, query = handler.path.partition("?")
        auth = handler.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        range_header = handler.headers.get("Range")
        status, sent = 500, 0
        try:
            length = handler.headers.get("Content-Length") or "0"
            if length.isdigit() and int(length) > 0:
                handler.rfile.read(int(length))  # keep the keep-alive connection in sync
            params = parse_qs(query, keep_blank_values=True)
            try:
                response = self._route(method, raw_path, params, token, handler)
            except _HttpError as err:
                response = err.response
            except Exception as err:  # a bug in this server: answer 500 rather than dropping the connection
                response = _json_response(500, {"error": f"{type(err).__name__}: {err}"})
            status = response.status
            sent = self._send(handler, method, response)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            handler.close_connection = True
        finally:
            record = RequestRecord(method, raw_path, query, range_header, token, status, sent)
            with self._idle:
                self._log.append(record)
                self._in_flight -= 1
                self._idle.notify_all()

    def _send(self, handler: _Handler, method: str, response: _Response) -> int:
        """Write the response; returns the number of body bytes written."""
        body = response.body
        headers = {
            "X-Request-Id": handler.headers.get("X-Amzn-Trace-Id") or str(uuid.uuid4()),
            "Content-Length": str(len(body)),
            **response.headers,
        }
        handler.send_response(response.status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if method == "HEAD" or not body:
            handler.wfile.flush()
            return 0
        if not response.is_file:
            handler.wfile.write(body)
            return len(body)
        limit = self.fail_after_bytes
        view = memoryview(body)
        to_send = view if limit is None else view[: max(limit, 0)]
        sent = 0
        start = time.monotonic()
        for offset in range(0, len(to_send), _CHUNK):
            chunk = to_send[offset : offset + _CHUNK]
            try:
                handler.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):  # the client went away
                handler.close_connection = True
                return sent
            sent += len(chunk)
            rate = self.throttle_bytes_per_s
            if rate:
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        if sent < len(body):  # simulate a dropped transfer: FIN before the announced Content-Length
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_WR)
        return sent

    # ------------------------------------------------------------------ routing
    def _route(
        self, method: str, raw_path: str, query: dict[str, list[str]], token: str | None, handler: _Handler
    ) -> _Response:
        seg = [unquote(s) for s in raw_path.split("/")[1:]]
        raw_seg = raw_path.split("/")[1:]
        if method in ("GET", "HEAD"):
            if len(seg) >= 3 and seg[0] == "api" and seg[1] in _API_PREFIXES:
                return self._api_repo(_API_PREFIXES[seg[1]], seg[2:], raw_seg[2:], query, token)
            if len(seg) >= 3 and seg[:2] == ["api", "spaces"]:
                raise _HttpError(404, "Repository not found", "RepoNotFound")
            if seg == ["api", "agent-harnesses"]:  # fetched by huggingface_hub's user-agent builder
                return _json_response(200, {"standardEnvVars": [], "harnesses": {}})
            if len(seg) == 2 and seg[0] == "cdn-lfs" and _SHA256_RE.match(seg[1]):
                return self._cdn(seg[1], handler)
            if seg and seg[0] == "spaces" and "resolve" in seg:
                raise _HttpError(404, "Repository not found", "RepoNotFound")
            # Files: /{repo_id}/resolve/{rev}/{path} for models, /datasets/{repo_id}/resolve/... for datasets.
            repo_type: RepoType = "dataset" if seg and seg[0] == "datasets" else "model"
            skip = 0 if repo_type == "model" else 1
            seg, raw_seg = seg[skip:], raw_seg[skip:]
            if len(seg) >= 5 and seg[2] == "resolve":
                return self._resolve(repo_type, f"{seg[0]}/{seg[1]}", raw_seg[3:], token, handler)
            if len(seg) >= 4 and seg[1] == "resolve":
                return self._resolve(repo_type, seg[0], raw_seg[2:], token, handler)
            if repo_type == "dataset" and "resolve" in seg:
                raise _HttpError(404, "Repository not found", "RepoNotFound")
        raise _HttpError(404, f"Sorry, we can't find the page you are looking for: {method} {raw_path}")

    def _lookup(self, repo_type: RepoType, repo_id: str, token: str | None) -> _Repo:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and token != repo.token):
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _check_gate(self, repo: _Repo, token: str | None) -> None:
        if not repo.gated or token == repo.token:
            return
        if token is None:
            raise _HttpError(
                401,
                f"Access to {repo.repo_type} {repo.repo_id} is restricted. You must have access to it and be"
                " authenticated to access it. Please log in.",
                "GatedRepo",
            )
        raise _HttpError(
            403,
            f"Access to {repo.repo_type} {repo.repo_id} is restricted and you are not in the authorized list."
            f" Visit /{repo.repo_id} on the Hub to ask for access.",
            "GatedRepo",
        )

    @staticmethod
    def _revision(repo: _Repo, revision: str) -> _Revision:
        rev = repo.resolve(revision)
        if rev is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return rev

    def _api_repo(
        self, repo_type: RepoType, seg: list[str], raw_seg: list[str], query: dict[str, list[str]], token: str | None
    ) -> _Response:
        """``/api/models/...`` or ``/api/datasets/...``: info, info at a revision, tree, safetensors metadata."""
        with self._lock:
            known = {repo_id for kind, repo_id in self._repos if kind == repo_type}
        if len(seg) >= 2 and f"{seg[0]}/{seg[1]}" in known:
            repo_id, tail, raw_tail = f"{seg[0]}/{seg[1]}", seg[2:], raw_seg[2:]
        elif seg[0] in known:
            repo_id, tail, raw_tail = seg[0], seg[1:], raw_seg[1:]
        else:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        repo = self._lookup(repo_type, repo_id, token)
        info = self._model_info if repo_type == "model" else self._dataset_info
        if not tail:
            return _json_response(200, info(repo, repo.default_revision, query))
        if tail[0] == "revision" and len(tail) >= 2:
            rev = self._revision(repo, unquote("/".join(raw_tail[1:])))
            return _json_response(200, info(repo, rev, query))
        if tail[0] == "tree" and len(tail) >= 2:
            rev = self._revision(repo, tail[1])
            return self._tree(rev, unquote("/".join(raw_tail[2:])).strip("/"), query)
        if tail[0] == "safetensors-metadata" and len(tail) >= 2 and repo_type == "model":
            self._check_gate(repo, token)
            return self._sharded_safetensors(repo.default_revision, unquote("/".join(raw_tail[1:])))
        raise _HttpError(404, f"Sorry, we can't find the page you are looking for: {'/'.join(seg)}")

    # ------------------------------------------------------------------ API payloads
    @staticmethod
    def _siblings(rev: _Revision, query: dict[str, list[str]]) -> list[dict[str, object]]:
        blobs = _is_true(query.get("blobs"))
        siblings: list[dict[str, object]] = []
        for f in rev.files.values():
            sibling: dict[str, object] = {"rfilename": f.path}
            if blobs:
                sibling.update(size=len(f.data), blobId=f.blob_id)
                if f.sha256 is not None:
                    sibling["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": f.pointer_size}
            siblings.append(sibling)
        return siblings

    @staticmethod
    def _only_expanded(info: dict[str, object], query: dict[str, list[str]]) -> dict[str, object]:
        expand = [e for v in query.get("expand", []) + query.get("expand[]", []) for e in v.split(",") if e]
        if expand:  # like the Hub: only the requested properties (unknown ones are ignored)
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        return info

    def _model_info(self, repo: _Repo, rev: _Revision, query: dict[str, list[str]]) -> dict[str, object]:
        siblings = self._siblings(rev, query)
        tags = list(repo.tags)
        extra = [repo.library_name, "safetensors" if rev.safetensors else None]
        extra += [str(rev.config["model_type"])] if rev.config and "model_type" in rev.config else []
        tags += [t for t in extra if t and t not in tags]
        info: dict[str, object] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": rev.sha,
            "lastModified": rev.last_modified,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "pipeline_tag": repo.pipeline_tag,
            "library_name": repo.library_name,
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(len(f.data) for f in rev.files.values()),
        }
        if rev.config is not None:
            info["config"] = rev.config
        if rev.safetensors:
            total = sum(rev.safetensors.values())
            info["safetensors"] = {"parameters": dict(rev.safetensors), "total": total}
        return self._only_expanded(info, query)

    def _dataset_info(self, repo: _Repo, rev: _Revision, query: dict[str, list[str]]) -> dict[str, object]:
        """``GET /api/datasets/{repo_id}[/revision/{rev}]``: what the Hub's dataset info holds (no model fields)."""
        info: dict[str, object] = {
            "_id": hashlib.sha1(f"dataset:{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": rev.sha,
            "lastModified": rev.last_modified,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(repo.tags),
            "siblings": self._siblings(rev, query),
            "usedStorage": sum(len(f.data) for f in rev.files.values()),
        }
        return self._only_expanded(info, query)

    def _tree(self, rev: _Revision, path: str, query: dict[str, list[str]]) -> _Response:
        recursive = _is_true(query.get("recursive"))
        expand = _is_true(query.get("expand"))
        dirs: set[str] = set()
        for p in rev.files:
            parts = p.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        if path and path not in dirs:
            raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound", **{"X-Repo-Commit": rev.sha})
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

        entries: list[dict[str, object]] = []
        last_commit = {"id": rev.sha, "title": "Upload folder", "date": rev.last_modified}
        for d in sorted(filter(wanted, dirs)):
            entry: dict[str, object] = {"type": "directory", "oid": _git_blob_sha1(f"{rev.sha}{d}".encode())}
            entry.update(size=0, path=d)
            if expand:
                entry["lastCommit"] = last_commit
            entries.append(entry)
        for p in sorted(filter(wanted, rev.files)):
            f = rev.files[p]
            entry = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": p}
            if f.sha256 is not None:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": f.pointer_size}
            if expand:
                entry["lastCommit"] = last_commit
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
            entries.append(entry)
        return _json_response(200, entries)

    def _sharded_safetensors(self, rev: _Revision, filename: str) -> _Response:
        index_file = rev.files.get(filename)
        if index_file is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", **{"X-Repo-Commit": rev.sha})
        index = json.loads(index_file.data)
        folder = filename.rsplit("/", 1)[0] + "/" if "/" in filename else ""
        headers: dict[str, object] = {}
        for shard in sorted(set(index.get("weight_map", {}).values())):
            shard_file = rev.files.get(folder + shard)
            if shard_file is not None:
                headers[shard] = _safetensors_header(shard_file.data) or {}
        return _json_response(200, {"index": index, "headers": headers})

    # ------------------------------------------------------------------ files
    def _resolve(
        self, repo_type: RepoType, repo_id: str, raw_tail: list[str], token: str | None, handler: _Handler
    ) -> _Response:
        repo = self._lookup(repo_type, repo_id, token)
        self._check_gate(repo, token)
        rev = self._revision(repo, unquote(raw_tail[0]))
        filename = unquote("/".join(raw_tail[1:]))
        f = rev.files.get(filename)
        if f is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", **{"X-Repo-Commit": rev.sha})
        if f.sha256 is not None and self.lfs_redirect:
            # Another origin than the endpoint, like cdn-lfs.hf.co: the client stops following there.
            cdn_host = "127.0.0.1" if self._address[0] == "localhost" else "localhost"
            location = f"http://{cdn_host}:{self.port}/cdn-lfs/{f.sha256}?filename={quote(filename, safe='')}"
            headers = {
                "Location": location,
                "X-Repo-Commit": rev.sha,
                "ETag": f'"{f.blob_id}"',
                "X-Linked-Etag": f'"{f.sha256}"',
                "X-Linked-Size": str(len(f.data)),
            }
            return _Response(302, headers)
        return self._file_response(f, handler, {"X-Repo-Commit": rev.sha})

    def _cdn(self, sha256: str, handler: _Handler) -> _Response:
        with self._lock:
            f = self._blobs.get(sha256)
        if f is None:
            return _Response(404, {"Content-Type": "text/plain"}, b"NoSuchKey")
        return self._file_response(f, handler, {})

    @staticmethod
    def _file_response(f: _File, handler: _Handler, headers: dict[str, str]) -> _Response:
        size = len(f.data)
        name = f.path.rsplit("/", 1)[-1]
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        base = {
            **headers,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": content_type,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
        }
        range_header = handler.headers.get("Range")
        if range_header is None or "," in range_header:  # multi-range requests are not supported: ignore them
            return _Response(200, base, f.data, is_file=True)
        span = _parse_range(range_header, size)
        if span is None:
            err = _HttpError(416, "Requested Range Not Satisfiable", **{"Content-Range": f"bytes */{size}"})
            return err.response
        start, end = span
        base["Content-Range"] = f"bytes {start}-{end}/{size}"
        return _Response(206, base, f.data[start : end + 1], is_file=True)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse one ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range; None if unsatisfiable or malformed."""
    match = _RANGE_RE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0 or size == 0:
            return None
        return max(size - int(last), 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or start > end:
        return None
    return start, min(end, size - 1)


def iter_files(folder: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(relative posix path, content)`` for every file ``add_repo`` would serve from ``folder``."""
    for p in sorted(Path(folder).rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and ".git" not in rel.split("/"):
            yield rel, p.read_bytes()
