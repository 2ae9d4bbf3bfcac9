"""A Hub repo of GGUF files from the Models page: the lookup asks which quantization to fetch, the verdict is for that
file, and the download fetches only it and loads it (on llama.cpp where it is installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from backend.services import export_gguf, llama_engine
from tests.e2e.support import Orchard

REPO = "orchard-test/tiny-GGUF"


@pytest.fixture(scope="module")
def gguf_repo(tmp_path_factory: pytest.TempPathFactory, small_llama: Path) -> Path:
    from transformers import AutoConfig, AutoTokenizer

    repo = tmp_path_factory.mktemp("gguf-repo")
    source = export_gguf.Source(
        folder=small_llama,
        config=AutoConfig.from_pretrained(small_llama),
        tokenizer=AutoTokenizer.from_pretrained(small_llama),
    )
    for quantization in ("f16", "q8_0"):
        export_gguf.write_gguf(source, repo / f"small-{quantization}.gguf", quantization, name="small")
    (repo / "README.md").write_text("# small, in GGUF\n")
    return repo


def test_a_gguf_repo_asks_for_the_file_then_downloads_and_loads_it(
    page: Page, orchard: Orchard, gguf_repo: Path
) -> None:
    orchard.hub.add_repo(REPO, gguf_repo)
    q8 = gguf_repo / "small-q8_0.gguf"
    page.goto("/models")
    main = page.get_by_role("main")
    page.get_by_label("Hugging Face model id").fill(REPO)
    page.get_by_role("button", name="Look up").click()

    choice = main.get_by_label("GGUF file")
    expect(choice).to_be_visible()
    expect(choice.locator("option")).to_have_count(3)  # the prompt and the two quantizations
    download = main.get_by_role("button", name="Download", exact=True)
    expect(download).to_be_disabled()  # nothing to fetch until a file is chosen

    with page.expect_response(lambda r: "/model/check/" in r.url and "gguf_file=small-q8_0.gguf" in r.url) as checked:
        choice.select_option("small-q8_0.gguf")
    verdict = checked.value.json()
    assert checked.value.status == 200 and verdict["bytes_total"] == q8.stat().st_size, verdict
    expect(main.get_by_text(verdict["memory_reason"])).to_be_visible()

    orchard.hub.reset_log()
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/model/download")) as sent:
        download.click()
    assert sent.value.request.post_data_json["gguf_file"] == "small-q8_0.gguf"
    expect(main.get_by_text("Ready", exact=True)).to_be_visible(timeout=60_000)
    current = orchard.get("/model/current").json()["metadata"]
    assert current["model_id"] == REPO
    assert current["engine"] == ("llama.cpp" if llama_engine.available() else "transformers")
    fetched = {r.path.rsplit("/", 1)[-1] for r in orchard.hub.requests if r.method == "GET" and "/resolve/" in r.path}
    assert fetched == {"small-q8_0.gguf"}
