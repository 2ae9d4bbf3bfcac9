"""The offline Hub server (`tests.hub_server`) driven by the real, unpatched huggingface_hub client."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import (
    HfApi,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import DryRunFileInfo
from huggingface_hub.hf_api import RepoFile
from safetensors.numpy import save_file
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from tests.hub_server import HubServer, RequestRecord, iter_files

REPO = "orchard-test/tiny-model"
TOKEN = "hf_test_token"
# weight (4x3) + bias (3) in F32, embed (5x2) in F16
EXPECTED_PARAMS = {"F32": 15, "F16": 10}


@pytest.fixture(autouse=True)
def _hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub reads these two at import time, so the env vars alone come too late. Unless telemetry
    # is disabled, building the user agent fetches `{HF_ENDPOINT at import}/api/agent-harnesses`
    # (huggingface.co), the one request that `endpoint=` does not redirect. And an HF_HUB_OFFLINE=1 meant
    # for the rest of the suite must not block the local server.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "tokenizer").mkdir(parents=True)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 3}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(
        {
            "weight": np.arange(12, dtype=np.float32).reshape(4, 3),
            "bias": np.ones(3, dtype=np.float32),
            "embed": np.zeros((5, 2), dtype=np.float16),
        },
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (folder / "tokenizer" / "vocab.txt").write_text("hello\nworld\n")
    (folder / "weights.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    return folder


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


def _files(folder: Path) -> dict[str, bytes]:
    return dict(iter_files(folder))


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _gets(records: list[RequestRecord], suffix: str) -> list[RequestRecord]:
    return [r for r in records if r.method == "GET" and r.path.endswith(suffix)]


# --------------------------------------------------------------------------- model info / tree


def test_model_info(hub: HubServer, model_dir: Path) -> None:
    sha = hub.add_repo(REPO, model_dir, pipeline_tag="text-generation")
    api = HfApi(endpoint=hub.endpoint, token=False)

    info = api.model_info(REPO)

    assert info.id == REPO
    assert info.sha == sha and len(sha) == 40
    assert int(sha, 16) >= 0
    assert hub.add_repo(REPO, model_dir) == sha  # deterministic: same contents, same commit
    assert info.private is False and info.gated is False
    assert info.last_modified is not None
    assert info.library_name == "transformers" and info.pipeline_tag == "text-generation"
    assert info.tags is not None and "safetensors" in info.tags
    assert info.config == {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    assert info.siblings is not None
    assert sorted(s.rfilename for s in info.siblings) == sorted(_files(model_dir))
    assert all(s.size is None and s.blob_id is None for s in info.siblings)
    assert info.safetensors is not None
    assert info.safetensors.parameters == EXPECTED_PARAMS
    assert info.safetensors.total == 25

    only_sha = api.model_info(REPO, expand=["sha", "notAProperty"])  # type: ignore[list-item]
    assert only_sha.sha == sha and only_sha.siblings is None and only_sha.safetensors is None


def test_model_info_files_metadata_and_tree(hub: HubServer, model_dir: Path) -> None:
    sha = hub.add_repo(REPO, model_dir)
    api = HfApi(endpoint=hub.endpoint, token=False)
    files = _files(model_dir)

    info = api.model_info(REPO, files_metadata=True)

    assert info.siblings is not None
    siblings = {s.rfilename: s for s in info.siblings}
    for name, data in files.items():
        assert siblings[name].size == len(data)
    for lfs_name in ("model.safetensors", "weights.bin"):
        lfs = siblings[lfs_name].lfs
        assert lfs is not None
        assert lfs.sha256 == hashlib.sha256(files[lfs_name]).hexdigest()
        assert lfs.size == len(files[lfs_name])
    for text_name in ("config.json", "tokenizer/vocab.txt"):
        assert siblings[text_name].lfs is None
        assert siblings[text_name].blob_id == _git_blob_sha1(files[text_name])

    tree = {e.path: e for e in api.list_repo_tree(REPO, recursive=True, revision=sha)}
    assert set(tree) == {*files, "tokenizer"}
    top_level = {e.path for e in api.list_repo_tree(REPO)}
    assert top_level == {"config.json", "model.safetensors", "tokenizer", "weights.bin"}
    assert [e.path for e in api.list_repo_tree(REPO, path_in_repo="tokenizer")] == ["tokenizer/vocab.txt"]
    assert sorted(api.list_repo_files(REPO)) == sorted(files)
    assert api.file_exists(REPO, "tokenizer/vocab.txt") and not api.file_exists(REPO, "nope.txt")

    # A second branch with its own folder, reachable by name and by commit sha.
    (model_dir / "config.json").write_text("{}")
    dev_sha = hub.add_repo(REPO, model_dir, revision="dev")
    assert dev_sha != sha
    assert api.model_info(REPO, revision="dev").sha == dev_sha
    assert api.model_info(REPO, revision=sha).sha == sha
    assert api.model_info(REPO).sha == sha


# --------------------------------------------------------------------------- snapshot_download


def test_snapshot_download_reproduces_files(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    sha = hub.add_repo(REPO, model_dir)

    path = snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False)

    assert Path(path).name == sha
    assert _files(Path(path)) == _files(model_dir)
    records = hub.requests
    assert [r.path for r in records if "/api/" in r.path] == [
        f"/api/models/{REPO}/revision/main",
        f"/api/models/{REPO}/tree/{sha}",
    ]
    assert all(r.status == 200 for r in records)
    assert not any(r.range for r in records)
    assert len(_gets(records, "/weights.bin")) == 1


def test_snapshot_download_dry_run(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    sha = hub.add_repo(REPO, model_dir)
    cache = tmp_path / "cache"
    files = _files(model_dir)

    dry = snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=cache, token=False, dry_run=True)

    assert all(isinstance(item, DryRunFileInfo) for item in dry)
    by_name = {item.filename: item for item in dry}
    assert set(by_name) == set(files)
    for name, item in by_name.items():
        assert item.file_size == len(files[name])
        assert item.commit_hash == sha
        assert item.will_download and not item.is_cached
    assert not _gets(hub.requests, "/weights.bin")  # nothing downloaded
    assert not cache.joinpath(f"models--{REPO.replace('/', '--')}", "blobs").exists()

    snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=cache, token=False)
    again = snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=cache, token=False, dry_run=True)
    assert all(item.is_cached and not item.will_download for item in again)


def test_snapshot_download_tqdm_class_gets_byte_progress(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    hub.add_repo(REPO, model_dir)
    bars: list[Any] = []

    class RecordingTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("file", io.StringIO())
            super().__init__(*args, **kwargs)
            bars.append(self)

    snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False, tqdm_class=RecordingTqdm)

    total = sum(len(data) for data in _files(model_dir).values())
    byte_bars = [bar for bar in bars if bar.unit == "B"]
    assert byte_bars
    reconstruct = [bar for bar in byte_bars if bar.desc.startswith("Reconstruction complete")]
    assert len(reconstruct) == 1
    assert reconstruct[0].n == reconstruct[0].total == total
    assert all(bar.n == total for bar in byte_bars)


# --------------------------------------------------------------------------- resume / throttle


def test_dropped_transfer_is_resumed_with_range(hub: HubServer, tmp_path: Path) -> None:
    # http_get only writes (and counts as resumable) whole DOWNLOAD_CHUNK_SIZE (10 MiB) chunks: a drop
    # before the first full chunk makes it start over from byte 0 *without* a Range header. So the file
    # must be bigger than one chunk and the drop must come after it for the retry to be a real resume.
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    folder = tmp_path / "big"
    folder.mkdir()
    data = os.urandom(chunk + 1024 * 1024)
    (folder / "big.bin").write_bytes(data)
    hub.add_repo(REPO, folder)
    hub.fail_after_bytes = chunk

    path = hf_hub_download(REPO, "big.bin", endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False)

    assert Path(path).read_bytes() == data
    first, second = _gets(hub.requests, "/big.bin")
    assert (first.range, first.status, first.body_bytes) == (None, 200, chunk)
    assert (second.range, second.status) == (f"bytes={chunk}-", 206)
    assert first.body_bytes + second.body_bytes == len(data)


def test_throttle(hub: HubServer, tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "blob.bin").write_bytes(os.urandom(400_000))
    hub.add_repo(REPO, folder)
    hub.throttle_bytes_per_s = 1_000_000

    start = time.monotonic()
    hf_hub_download(REPO, "blob.bin", endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False)

    assert time.monotonic() - start >= 0.3


# --------------------------------------------------------------------------- safetensors


def test_get_safetensors_metadata(hub: HubServer, model_dir: Path) -> None:
    hub.add_repo(REPO, model_dir)

    meta = HfApi(endpoint=hub.endpoint, token=False).get_safetensors_metadata(REPO)

    assert meta.sharded is False
    assert meta.parameter_count == EXPECTED_PARAMS
    file_meta = meta.files_metadata["model.safetensors"]
    assert file_meta.metadata == {"format": "pt"}
    assert file_meta.tensors["weight"].shape == [4, 3]
    ranged = _gets(hub.requests, "/model.safetensors")
    assert [(r.range, r.status) for r in ranged] == [("bytes=0-100000", 206)]


# --------------------------------------------------------------------------- errors and access control


def test_error_mapping(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    hub.add_repo(REPO, model_dir)
    api = HfApi(endpoint=hub.endpoint, token=False)
    cache = tmp_path / "cache"

    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/missing", "config.json", endpoint=hub.endpoint, cache_dir=cache, token=False)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            REPO,
            "config.json",
            revision="no-such-branch",
            endpoint=hub.endpoint,
            cache_dir=cache,
            token=False,
        )
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        hf_hub_download(REPO, "missing.txt", endpoint=hub.endpoint, cache_dir=cache, token=False)
    assert isinstance(missing.value, EntryNotFoundError)
    assert missing.value.response.status_code == 404


def test_gated_repo(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    hub.add_repo(REPO, model_dir, gated=True, token=TOKEN)
    cache = tmp_path / "cache"

    # Like on the Hub, the repo info is public and says it is gated...
    assert HfApi(endpoint=hub.endpoint, token=False).model_info(REPO).gated == "auto"
    # ... but the files are not.
    with pytest.raises(GatedRepoError) as no_token:
        hf_hub_download(REPO, "config.json", endpoint=hub.endpoint, cache_dir=cache, token=False)
    assert no_token.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong_token:
        hf_hub_download(REPO, "config.json", endpoint=hub.endpoint, cache_dir=cache, token="hf_wrong")
    assert wrong_token.value.response.status_code == 403
    with pytest.raises(GatedRepoError):
        snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=cache, token=False)

    path = hf_hub_download(REPO, "config.json", endpoint=hub.endpoint, cache_dir=cache, token=TOKEN)
    assert Path(path).read_bytes() == (model_dir / "config.json").read_bytes()


def test_private_repo(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    sha = hub.add_repo(REPO, model_dir, private=True, token=TOKEN)

    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=False).model_info(REPO)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=False)

    info = HfApi(endpoint=hub.endpoint, token=TOKEN).model_info(REPO)
    assert info.private is True and info.sha == sha
    path = snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=TOKEN)
    assert _files(Path(path)) == _files(model_dir)
    assert {r.token for r in hub.requests if r.status == 200} == {TOKEN}


def test_lfs_redirect_to_cdn(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    hub.add_repo(REPO, model_dir, private=True, token=TOKEN)
    hub.lfs_redirect = True
    data = (model_dir / "weights.bin").read_bytes()

    url = hf_hub_url(REPO, "weights.bin", endpoint=hub.endpoint)
    meta = get_hf_file_metadata(url, token=TOKEN)
    assert meta.location.startswith(f"http://localhost:{hub.port}/cdn-lfs/")
    assert meta.etag == hashlib.sha256(data).hexdigest()  # from X-Linked-Etag
    assert meta.size == len(data)  # from X-Linked-Size

    hub.reset_log()
    path = hf_hub_download(REPO, "weights.bin", endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=TOKEN)
    assert Path(path).read_bytes() == data
    head, cdn_get = hub.requests
    assert (head.method, head.status, head.token) == ("HEAD", 302, TOKEN)
    # The signed "CDN" URL is on another origin: huggingface_hub drops the Authorization header.
    assert (cdn_get.method, cdn_get.status, cdn_get.token) == ("GET", 200, None)
    assert cdn_get.path.startswith("/cdn-lfs/")

    # Small text files are still served directly.
    assert hf_hub_download(REPO, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=TOKEN)


def test_repo_without_org_and_quoted_revision(hub: HubServer, model_dir: Path, tmp_path: Path) -> None:
    sha = hub.add_repo("tiny", model_dir, revision="refs/pr/1")
    api = HfApi(endpoint=hub.endpoint, token=False)

    assert api.model_info("tiny", revision="refs/pr/1").sha == sha
    assert api.model_info("tiny").sha == sha  # only revision => it is the default one
    path = hf_hub_download(
        "tiny",
        "tokenizer/vocab.txt",
        revision="refs/pr/1",
        endpoint=hub.endpoint,
        cache_dir=tmp_path,
        token=False,
    )
    assert Path(path).read_text() == "hello\nworld\n"
    assert any(r.path == "/tiny/resolve/refs%2Fpr%2F1/tokenizer/vocab.txt" for r in hub.requests)
    by_sha = hf_hub_download("tiny", "config.json", revision=sha, endpoint=hub.endpoint, cache_dir=tmp_path)
    assert Path(by_sha).read_bytes() == (model_dir / "config.json").read_bytes()


# --------------------------------------------------------------------------- raw protocol


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_raw_http_protocol(hub: HubServer, model_dir: Path) -> None:
    sha = hub.add_repo(REPO, model_dir)
    files = _files(model_dir)
    base = f"{hub.endpoint}/{REPO}/resolve/main"

    status, headers, body = _request(f"{base}/weights.bin", "HEAD")
    assert status == 200 and body == b""
    assert headers["ETag"] == f'"{hashlib.sha256(files["weights.bin"]).hexdigest()}"'
    assert headers["X-Repo-Commit"] == sha
    assert headers["Content-Length"] == str(len(files["weights.bin"]))
    assert headers["Accept-Ranges"] == "bytes"
    assert not [name for name in headers if name.lower().startswith("x-xet")]

    status, headers, _ = _request(f"{base}/config.json", "HEAD")
    assert headers["ETag"] == f'"{_git_blob_sha1(files["config.json"])}"'

    status, headers, body = _request(f"{base}/weights.bin", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == files["weights.bin"][10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(files['weights.bin'])}"
    status, _, body = _request(f"{base}/config.json", headers={"Range": "bytes=-5"})
    assert status == 206 and body == files["config.json"][-5:]
    status, headers, _ = _request(f"{base}/config.json", headers={"Range": "bytes=99999-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(files['config.json'])}"

    status, headers, _ = _request(f"{base}/nope.txt")
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (404, "EntryNotFound", sha)
    status, headers, _ = _request(f"{hub.endpoint}/{REPO}/resolve/nope/config.json")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, headers, _ = _request(f"{hub.endpoint}/x/y/resolve/main/config.json")
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")

    status, headers, body = _request(f"{hub.endpoint}/api/whoami-v2")
    assert status == 404 and "X-Error-Code" not in headers
    assert "error" in json.loads(body)


# --------------------------------------------------------------------------- dataset repos

DATASET = "orchard-test/tiny-dataset"


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Tiny\n")
    (folder / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1" + os.urandom(2048) + b"PAR1")
    (folder / "test.jsonl").write_text('{"text": "hello"}\n')
    return folder


def test_dataset_info_listing_and_download(hub: HubServer, dataset_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    sha = hub.add_repo(DATASET, dataset_dir, repo_type="dataset")
    api = HfApi(endpoint=hub.endpoint, token=False)
    files = _files(dataset_dir)
    cache = tmp_path / "cache"

    info = api.dataset_info(DATASET)
    assert info.id == DATASET and info.sha == sha and info.private is False and info.gated is False
    assert info.siblings is not None and sorted(s.rfilename for s in info.siblings) == sorted(files)
    assert api.dataset_info(DATASET, revision=sha).sha == sha
    sized = api.dataset_info(DATASET, files_metadata=True).siblings
    assert sized is not None and {s.rfilename: s.size for s in sized} == {n: len(d) for n, d in files.items()}
    assert sorted(api.list_repo_files(DATASET, repo_type="dataset")) == sorted(files)
    tree = {e.path: e for e in api.list_repo_tree(DATASET, recursive=True, expand=True, repo_type="dataset")}
    assert set(tree) == {*files, "data"}
    parquet = tree["data/train-00000-of-00001.parquet"]
    assert isinstance(parquet, RepoFile) and parquet.lfs is not None and parquet.last_commit is not None
    assert parquet.lfs.sha256 == hashlib.sha256(files["data/train-00000-of-00001.parquet"]).hexdigest()
    assert [e.path for e in api.list_repo_tree(DATASET, path_in_repo="data", repo_type="dataset")] == [parquet.path]

    for name in ("test.jsonl", "data/train-00000-of-00001.parquet"):
        path = hf_hub_download(DATASET, name, repo_type="dataset", endpoint=hub.endpoint, cache_dir=cache, token=False)
        assert Path(path).read_bytes() == files[name]
        assert f"datasets--{DATASET.replace('/', '--')}" in path
    assert {(r.method, r.path) for r in hub.requests if "/resolve/" in r.path} == {
        (method, f"/datasets/{DATASET}/resolve/main/{name}")
        for method in ("HEAD", "GET")
        for name in ("test.jsonl", "data/train-00000-of-00001.parquet")
    }
    snapshot = snapshot_download(DATASET, repo_type="dataset", endpoint=hub.endpoint, cache_dir=cache, token=False)
    assert Path(snapshot).name == sha and _files(Path(snapshot)) == files

    # Models and datasets are separate namespaces: the same id names two repos, each found only as its type.
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(DATASET)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(DATASET, "test.jsonl", endpoint=hub.endpoint, cache_dir=cache, token=False)
    model_sha = hub.add_repo(DATASET, model_dir)
    assert model_sha != sha and api.model_info(DATASET).sha == model_sha and api.dataset_info(DATASET).sha == sha
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("orchard-test/tiny-model")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(DATASET, revision="no-such-branch")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(DATASET, "nope.csv", repo_type="dataset", endpoint=hub.endpoint, cache_dir=cache)


def test_dataset_access_control_and_headers(hub: HubServer, dataset_dir: Path, tmp_path: Path) -> None:
    gated_sha = hub.add_repo("org/gated-data", dataset_dir, repo_type="dataset", gated=True, token=TOKEN)
    hub.add_repo("org/private-data", dataset_dir, repo_type="dataset", private=True, token=TOKEN)
    cache = tmp_path / "cache"

    def download(repo_id: str, token: str | bool) -> str:
        return hf_hub_download(
            repo_id, "test.jsonl", repo_type="dataset", endpoint=hub.endpoint, cache_dir=cache, token=token
        )

    # Gated: the info and the file list are public, the files need access (401 without a token, 403 with another).
    assert HfApi(endpoint=hub.endpoint, token=False).dataset_info("org/gated-data").gated == "auto"
    assert "test.jsonl" in HfApi(endpoint=hub.endpoint).list_repo_files("org/gated-data", repo_type="dataset")
    with pytest.raises(GatedRepoError) as no_token:
        download("org/gated-data", False)
    assert no_token.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong_token:
        download("org/gated-data", "hf_wrong")
    assert wrong_token.value.response.status_code == 403
    assert Path(download("org/gated-data", TOKEN)).read_text() == '{"text": "hello"}\n'
    # Private: without the token the repo does not exist, for every route.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=False).dataset_info("org/private-data")
    with pytest.raises(RepositoryNotFoundError):
        download("org/private-data", False)
    assert HfApi(endpoint=hub.endpoint, token=TOKEN).dataset_info("org/private-data").private is True
    assert Path(download("org/private-data", TOKEN)).read_text() == '{"text": "hello"}\n'

    # The resolve route answers with the model routes' headers, LFS redirect included.
    files = _files(dataset_dir)
    base = f"{hub.endpoint}/datasets/org/gated-data/resolve/main"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, headers, body = _request(f"{base}/test.jsonl", "HEAD", auth)
    assert (status, body, headers["X-Repo-Commit"]) == (200, b"", gated_sha)
    assert headers["ETag"] == f'"{_git_blob_sha1(files["test.jsonl"])}"'
    assert headers["Content-Length"] == str(len(files["test.jsonl"])) and headers["Accept-Ranges"] == "bytes"
    status, headers, body = _request(
        f"{base}/data/train-00000-of-00001.parquet", headers={**auth, "Range": "bytes=0-3"}
    )
    assert (status, body) == (206, b"PAR1")
    hub.lfs_redirect = True
    url = hf_hub_url("org/gated-data", "data/train-00000-of-00001.parquet", repo_type="dataset", endpoint=hub.endpoint)
    meta = get_hf_file_metadata(url, token=TOKEN)
    assert meta.location.startswith(f"http://localhost:{hub.port}/cdn-lfs/") and meta.commit_hash == gated_sha
    assert meta.etag == hashlib.sha256(files["data/train-00000-of-00001.parquet"]).hexdigest()
    status, headers, _ = _request(f"{hub.endpoint}/datasets/org/gated-data/resolve/main/nope.csv", headers=auth)
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    status, headers, _ = _request(f"{hub.endpoint}/datasets/nobody/missing/resolve/main/train.csv")
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
