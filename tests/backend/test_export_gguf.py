"""GGUF export: tiny Llama, Qwen2 and GPT-2 models made by the fixtures (tied and untied embeddings) exported at
every type the gguf package writes, loaded in real llama.cpp (llama-cpp-python) and compared with transformers on
token ids and logits; each architecture's transform checked on the tensors themselves; the tokenizer metadata; and
the export job through the API (a merged adapter, the self-check, cancel, a failing check, the files)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.errors import InvalidRequestError
from backend.main import create_app
from backend.services import export_gguf, llama_engine
from backend.services.chat_service import FALLBACK_TEMPLATE
from tests.factories import LLAMA_CHAT_TEMPLATE, make_model, pretrain

gguf = pytest.importorskip("gguf")
LLAMA_CPP = llama_engine.available()
if not LLAMA_CPP and os.environ.get("ORCHARD_LLAMA") == "1":  # CI: these tests must run, never skip
    raise RuntimeError("ORCHARD_LLAMA=1 but llama-cpp-python cannot be imported")
needs_llama_cpp = pytest.mark.skipif(
    not LLAMA_CPP, reason="llama-cpp-python is not installed (scripts/test adds it where a C++ compiler is found)"
)
ENGINE = "llama.cpp" if LLAMA_CPP else "transformers"
FINISHED = ("ready", "failed", "cancelled", "interrupted")
NUMPY_TYPES = list(export_gguf.NUMPY_TYPES)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pretrained tiny models (confident predictions, as a real model makes), by ``kind-tied|untied``."""
    root = tmp_path_factory.mktemp("export")
    made = {}
    for kind, tied in (("llama", False), ("llama", True), ("qwen2", True), ("qwen2", False), ("gpt2", True),
                       ("gpt2", False)):  # fmt: skip
        name = f"{kind}-{'tied' if tied else 'untied'}"
        made[name] = pretrain(make_model(root / name, kind, tie_embeddings=tied), steps=100)
    return made


def source_of(folder: Path) -> export_gguf.Source:
    from transformers import AutoConfig, AutoTokenizer

    return export_gguf.Source(
        folder=folder, config=AutoConfig.from_pretrained(folder), tokenizer=AutoTokenizer.from_pretrained(folder)
    )


def check_in_llama_cpp(folder: Path, path: Path, quantization: str) -> dict[str, Any]:
    """The file read by llama.cpp and compared with the source model in transformers (f32)."""
    from transformers import AutoModelForCausalLM

    source = source_of(folder)
    texts = export_gguf.probe_texts(source.tokenizer)
    ids = [list(source.tokenizer(t)["input_ids"]) for t in texts]
    reference = export_gguf.reference_logits(AutoModelForCausalLM.from_pretrained(folder), ids)
    got, candidate = export_gguf.run_llama_cpp(path, texts, ids)
    return export_gguf.compare(quantization, "llama.cpp", ids, got, reference, candidate)


CASES = [(name, q) for name in ("llama-untied", "qwen2-tied", "gpt2-tied") for q in NUMPY_TYPES] + [
    (name, q) for name in ("llama-tied", "qwen2-untied", "gpt2-untied") for q in ("f32", "q8_0")
]


@needs_llama_cpp
@pytest.mark.parametrize(("model", "quantization"), CASES)
def test_an_export_loads_in_llama_cpp_and_answers_like_the_source(
    models: dict[str, Path], tmp_path: Path, model: str, quantization: str
) -> None:
    path = tmp_path / f"{model}-{quantization}.gguf"
    report = export_gguf.write_gguf(source_of(models[model]), path, quantization, name=model)
    result = check_in_llama_cpp(models[model], path, quantization)
    assert result["tokenizer_match"], result
    assert result["passed"], result
    if quantization == "f32":
        assert result["max_relative_diff"] < 1e-3, result
    elif quantization in ("f16", "bf16"):
        assert result["max_relative_diff"] < 1e-2, result
    elif quantization == "q8_0":
        assert result["top1_agreement"] >= 0.9, result
    # 1-D tensors (norms, biases) stay f32; every 2-D weight takes the type (the output layer keeps 8 bits below 8)
    written = export_gguf.tensor_types_of(path)
    assert sum(written.values()) == report.tensors
    assert set(written) <= {"F32", "F16", export_gguf.NUMPY_TYPES[quantization][0], "Q8_0"}


def tensors_of(path: Path) -> dict[str, Any]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


def field(path: Path, key: str) -> Any:
    value = gguf.GGUFReader(path).fields[key]
    return value.contents()


def test_llama_q_and_k_are_permuted_for_llama_cpp_rotary_layout(models: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    folder = models["llama-untied"]
    path = tmp_path / "llama.gguf"
    export_gguf.write_gguf(source_of(folder), path, "f32", name="llama")
    weights, tensors = load_file(folder / "model.safetensors"), tensors_of(path)
    q, k = weights["model.layers.0.self_attn.q_proj.weight"], weights["model.layers.0.self_attn.k_proj.weight"]
    assert not np.array_equal(tensors["blk.0.attn_q.weight"], q)  # not copied as stored
    assert np.array_equal(tensors["blk.0.attn_q.weight"], export_gguf.permute_qk(q, 4))  # 4 heads
    assert np.array_equal(tensors["blk.0.attn_k.weight"], export_gguf.permute_qk(k, 2))  # 2 kv heads
    # the permutation interleaves each head's two rotary halves: row 1 of head 0 is the first row of its 2nd half
    head_dim = q.shape[0] // 4
    assert np.array_equal(tensors["blk.0.attn_q.weight"][1], q[head_dim // 2])
    # Qwen2 uses the NEOX rotary layout in llama.cpp: its q is written as stored
    qwen = tmp_path / "qwen.gguf"
    export_gguf.write_gguf(source_of(models["qwen2-tied"]), qwen, "f32", name="qwen")
    qwen_q = load_file(models["qwen2-tied"] / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert np.array_equal(tensors_of(qwen)["blk.0.attn_q.weight"], qwen_q)


def test_gpt2_conv1d_weights_are_transposed(models: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    folder = models["gpt2-tied"]
    path = tmp_path / "gpt2.gguf"
    export_gguf.write_gguf(source_of(folder), path, "f32", name="gpt2")
    weights, tensors = load_file(folder / "model.safetensors"), tensors_of(path)
    c_attn = weights["transformer.h.0.attn.c_attn.weight"]  # [in, out] in HF's Conv1D
    assert c_attn.shape == (64, 192)
    assert np.array_equal(tensors["blk.0.attn_qkv.weight"], c_attn.T)
    assert np.array_equal(tensors["blk.0.ffn_up.weight"], weights["transformer.h.0.mlp.c_fc.weight"].T)
    assert "blk.0.attn.bias" not in tensors and not any("masked_bias" in n for n in tensors)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_tied_embeddings_leave_out_the_output_layer_and_untied_ones_keep_it(
    models: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    tied, untied = tmp_path / "tied.gguf", tmp_path / "untied.gguf"
    export_gguf.write_gguf(source_of(models[f"{kind}-tied"]), tied, "f32", name="t")
    export_gguf.write_gguf(source_of(models[f"{kind}-untied"]), untied, "f32", name="u")
    assert "output.weight" not in tensors_of(tied)  # llama.cpp reuses token_embd.weight
    untied_tensors = tensors_of(untied)
    assert "output.weight" in untied_tensors
    assert not np.array_equal(untied_tensors["output.weight"], untied_tensors["token_embd.weight"])


@needs_llama_cpp
def test_rope_freq_base_is_written_from_the_config(tmp_path: Path) -> None:
    """A model with a rope theta other than llama.cpp's default: loaded with the default, its logits would be
    wrong; the check in llama.cpp passes only with the right base written."""
    import json as json_module

    folder = make_model(tmp_path / "rope", "llama")
    config = json_module.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    config.pop("rope_theta", None)
    (folder / "config.json").write_text(json_module.dumps(config))
    pretrain(folder, steps=60)
    path = tmp_path / "rope.gguf"
    export_gguf.write_gguf(source_of(folder), path, "f32", name="rope")
    assert field(path, "llama.rope.freq_base") == pytest.approx(500000.0)
    result = check_in_llama_cpp(folder, path, "f32")
    assert result["passed"], result


def test_tokenizer_metadata_comes_from_the_tokenizer_chat_uses(models: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = models["llama-untied"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    path = tmp_path / "tok.gguf"
    export_gguf.write_gguf(source_of(folder), path, "f32", name="tok")
    assert field(path, "tokenizer.ggml.model") == "gpt2"
    assert field(path, "tokenizer.ggml.pre") == "gpt-2"  # byte-level BPE with GPT-2's split
    assert len(field(path, "tokenizer.ggml.tokens")) == len(tokenizer)
    assert len(field(path, "tokenizer.ggml.merges")) > 0
    assert field(path, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert field(path, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    # the template closes a reply with </s>: that is the end-of-turn token llama.cpp stops on
    assert field(path, "tokenizer.ggml.eot_token_id") == tokenizer.convert_tokens_to_ids("</s>")
    assert field(path, "tokenizer.ggml.add_bos_token") is False  # this tokenizer adds no BOS: no double BOS
    assert field(path, "tokenizer.chat_template") == LLAMA_CHAT_TEMPLATE
    # a model without a template gets the one Orchard's chat renders it with
    gpt2 = tmp_path / "gpt2.gguf"
    export_gguf.write_gguf(source_of(models["gpt2-tied"]), gpt2, "f32", name="gpt2")
    assert field(gpt2, "tokenizer.chat_template") == FALLBACK_TEMPLATE


def test_pre_tokenizers_are_named_from_their_structure_and_unknown_ones_refused() -> None:
    def split(regex: str) -> dict[str, Any]:
        return {
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated"},
                    {"type": "ByteLevel", "use_regex": False},
                ],
            }
        }

    assert export_gguf.pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel"}}) == "gpt-2"
    assert export_gguf.pre_tokenizer_name(split(export_gguf.LLAMA3_REGEX)) == "llama-bpe"
    assert export_gguf.pre_tokenizer_name(split(export_gguf.QWEN2_REGEX)) == "qwen2"
    digits = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                     {"type": "ByteLevel"}]}  # fmt: skip
    assert export_gguf.pre_tokenizer_name({"pre_tokenizer": digits}) == "smollm"
    with pytest.raises(InvalidRequestError, match="pre-tokenizer"):
        export_gguf.pre_tokenizer_name(split(r"\p{L}+"))


def test_the_transformers_reader_checks_an_export_where_llama_cpp_is_not_installed(
    models: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    folder = models["llama-untied"]
    path = tmp_path / "hf.gguf"
    export_gguf.write_gguf(source_of(folder), path, "f32", name="hf")
    source = source_of(folder)
    texts = export_gguf.probe_texts(source.tokenizer)
    ids = [list(source.tokenizer(t)["input_ids"]) for t in texts]
    reference = export_gguf.reference_logits(AutoModelForCausalLM.from_pretrained(folder), ids)
    got, candidate = export_gguf.run_transformers(path, texts, ids)
    result = export_gguf.compare("f32", "transformers", ids, got, reference, candidate)
    assert result["passed"] and result["max_relative_diff"] < 1e-5, result  # f32 read back exactly


def test_the_modelfile_template_renders_as_the_chat_template_does(models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["llama-untied"])
    template = export_gguf.ollama_template(tokenizer, LLAMA_CHAT_TEMPLATE)
    assert template is not None
    # Ollama fills .System, .Prompt and .Response; filled by hand it must read as the Jinja template renders
    filled = template.replace("{{ if .System }}", "").split("{{ else }}")[0] + template.split("{{ end }}")[1]
    filled = (
        filled.replace("{{ .System }}", "Be brief.").replace("{{ .Prompt }}", "Hi").replace("{{ .Response }}", "Hello")
    )
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello"}], tokenize=False)  # fmt: skip
    assert filled == expected


@needs_llama_cpp
def test_k_quants_go_through_llama_cpp_s_quantizer(models: dict[str, Path], tmp_path: Path) -> None:
    folder = models["llama-untied"]
    f16, target = tmp_path / "f16.gguf", tmp_path / "q4_k_m.gguf"
    export_gguf.write_gguf(source_of(folder), f16, "f16", name="k")
    export_gguf.quantize_with_llama_cpp(f16, target, "q4_k_m")
    types = export_gguf.tensor_types_of(target)
    assert any(t.endswith("_K") or t.startswith("Q") for t in types), types
    result = check_in_llama_cpp(folder, target, "q4_k_m")
    assert result["tokenizer_match"] and result["passed"], result


def test_without_llama_cpp_k_quants_are_refused_plainly() -> None:
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from backend.services import export_gguf as e\n"
        "print(e.k_quants_available()); print(e.k_quant_unavailable('q4_k_m'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}, check=True)
    available, message = out.stdout.splitlines()[:2]
    assert available == "False"
    assert "llama.cpp" in message and "q8_0" in message


# ---------------------------------------------------------------------------------------------- the job, by the API


@pytest.fixture
def client(settings: Settings, models: dict[str, Path]) -> Iterator[TestClient]:
    settings.ensure_dirs()
    shutil.copytree(models["llama-untied"], settings.models_path / "tiny-llama")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def wait_job(client: TestClient, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        assert time.monotonic() < deadline, f"timed out: {job}"
        time.sleep(0.1)


def make_adapter(settings: Settings, base: Path) -> str:
    """A LoRA adapter on the base, as a training run leaves one (peft's files and Orchard's record), with
    non-zero weights so that merging it changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    adapter_id = "a1b2c3d4e5f6"
    folder = settings.outputs_path / "adapters" / adapter_id
    model.save_pretrained(folder)
    record = {
        "id": adapter_id, "name": "tuned", "base_model_id": "tiny-llama", "base_model_path": str(base),
        "base_architecture": "LlamaForCausalLM", "dataset_id": "d", "dataset_name": "d",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
        "chat_template": LLAMA_CHAT_TEMPLATE, "eos_token": "</s>", "steps": 1, "train_loss": None,
        "eval_loss": None, "size_bytes": 1, "created_at": "2026-01-01T00:00:00Z", "job_id": adapter_id,
    }  # fmt: skip
    (folder / "orchard_adapter.json").write_text(json.dumps(record))
    return adapter_id


def test_an_export_job_writes_a_checked_file_with_its_modelfile(client: TestClient, settings: Settings) -> None:
    options = client.get("/export/gguf/options", params={"model_id": "tiny-llama"}).json()
    assert options["supported"] and options["architecture"] == "LlamaForCausalLM"
    sizes = {q["name"]: q["expected_bytes"] for q in options["quantizations"]}
    assert sizes["f32"] > sizes["f16"] > sizes["q8_0"] > sizes["q4_0"]

    response = client.post("/export/gguf", json={"model_id": "tiny-llama", "quantization": "q8_0"})
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["id"])
    assert job["status"] == "ready", job
    assert job["progress"]["unit"] == "tensors" and job["progress"]["completed"] == job["progress"]["total"] > 0
    result = job["result"]
    assert result["name"] == "tiny-llama-q8_0" and result["file_name"] == "tiny-llama-q8_0.gguf"
    check = result["check"]
    assert check["passed"] and check["tokenizer_match"] and check["engine"] == ENGINE
    assert check["top1_agreement"] >= 0.9

    listed = client.get("/exports").json()["exports"]
    assert [e["id"] for e in listed] == [job["id"]]
    data = client.get(f"/exports/{job['id']}/file").content
    assert len(data) == result["size_bytes"] and hashlib.sha256(data).hexdigest() == result["sha256"]
    modelfile = client.get(f"/exports/{job['id']}/modelfile").text
    assert modelfile.startswith("FROM ./tiny-llama-q8_0.gguf\n")
    assert 'PARAMETER stop "</s>"' in modelfile and "PARAMETER num_ctx 256" in modelfile
    assert "TEMPLATE" in modelfile and "{{ .Prompt }}" in modelfile

    exports_root = settings.outputs_path / "exports"
    assert sorted(p.name for p in exports_root.iterdir()) == [job["id"]]  # no staging folder left
    deleted = client.delete(f"/exports/{job['id']}")
    assert deleted.status_code == 200 and deleted.json()["freed_bytes"] >= result["size_bytes"]
    assert client.get(f"/exports/{job['id']}").status_code == 404
    assert client.get("/exports").json()["exports"] == []


@needs_llama_cpp
def test_the_loaded_model_exports_with_its_adapter_merged(client: TestClient, settings: Settings) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = settings.models_path / "tiny-llama"
    adapter_id = make_adapter(settings, base)
    assert client.post("/model/load", json={"model_id": "tiny-llama", "wait": True}).status_code == 200
    assert client.post("/model/adapter", json={"adapter_id": adapter_id}).status_code == 200

    response = client.post("/export/gguf", json={"quantization": "f32"})  # the loaded model, adapter and all
    assert response.status_code == 202, response.text
    assert response.json()["adapter_id"] == adapter_id and response.json()["model_id"] == "tiny-llama"
    job = wait_job(client, response.json()["id"])
    assert job["status"] == "ready", job
    assert job["result"]["check"]["passed"], job

    # llama.cpp on the file gives the merged model's logits, not the base's
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(
        settings.outputs_path / "adapters" / adapter_id)).merge_and_unload()  # fmt: skip
    plain = AutoModelForCausalLM.from_pretrained(base)
    ids = list(AutoTokenizer.from_pretrained(base)("Orchard runs language models")["input_ids"])
    _, (candidate,) = export_gguf.run_llama_cpp(Path(job["result"]["path"]), ["x"], [ids])
    with torch.no_grad():
        want = merged(torch.tensor([ids])).logits[0].numpy()
        base_logits = plain(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(candidate - want).max() < 1e-2
    assert np.abs(candidate - base_logits).max() > 0.1  # the adapter changed the answers


def test_an_unsupported_architecture_is_refused_before_any_work(client: TestClient, settings: Settings) -> None:
    folder = settings.models_path / "odd"
    shutil.copytree(settings.models_path / "tiny-llama", folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["FalconForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    response = client.post("/export/gguf", json={"model_id": "odd", "quantization": "f16"})
    assert response.status_code == 400, response.text
    body = response.json()["error"]
    assert "FalconForCausalLM" in body["message"] and "LlamaForCausalLM" in body["message"]
    assert client.get("/jobs", params={"kind": "export"}).json()["jobs"] == []
    assert client.get("/export/gguf/options", params={"model_id": "odd"}).json()["supported"] is False


def test_a_failing_check_fails_the_job_with_its_figures_and_leaves_nothing(
    client: TestClient, settings: Settings
) -> None:
    """A tokenizer that lowercases its input (a normalizer, which llama.cpp's BPE does not apply): the file is
    written, and its check finds that llama.cpp tokenizes the probes differently."""
    folder = settings.models_path / "lowercase"
    shutil.copytree(settings.models_path / "tiny-llama", folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "Lowercase"}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    response = client.post("/export/gguf", json={"model_id": "lowercase", "quantization": "f32"})
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["id"])
    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "export_check_failed" and error["details"]["status_code"] == 422
    assert error["details"]["tokenizer_match"] is False and error["details"]["mismatched_probes"]
    assert "tokenizer gave other ids" in error["message"]
    exports_root = settings.outputs_path / "exports"
    assert list(exports_root.iterdir()) == [] and client.get("/exports").json()["exports"] == []


def test_a_cancelled_export_leaves_no_half_file_and_resumes(client: TestClient, settings: Settings) -> None:
    response = client.post("/export/gguf", json={"model_id": "tiny-llama", "quantization": "f16"})
    job_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/jobs/{job_id}").json()["status"] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    cancelled = wait_job(client, job_id)  # the answer waits 10 s for the child process; a busy machine takes longer
    assert cancelled["status"] == "cancelled" and cancelled["resumable"]
    exports_root = settings.outputs_path / "exports"
    assert list(exports_root.iterdir()) == []
    assert client.post(f"/jobs/{job_id}/resume").status_code == 202
    assert wait_job(client, job_id)["status"] == "ready"
    assert [e["id"] for e in client.get("/exports").json()["exports"]] == [job_id]


# ---------------------------------------------------------------------------------------------- import


def chat_reply(client: TestClient) -> str:
    body = {"messages": [{"role": "user", "content": "hello there"}], "max_new_tokens": 12, "temperature": 0,
            "stream": False}  # fmt: skip
    response = client.post("/chat", json=body)
    assert response.status_code == 200, response.text
    reply: str = response.json()["message"]["content"]
    return reply


def test_a_gguf_file_imports_is_listed_from_its_metadata_and_loads(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    source = settings.models_path / "tiny-llama"
    exported = tmp_path / "tiny.gguf"
    export_gguf.write_gguf(source_of(source), exported, "f32", name="tiny")

    # uploaded through the seed's upload endpoint: it becomes a folder holding the file
    with exported.open("rb") as f:
        response = client.post("/model/upload", files=[("files", ("tiny.gguf", f, "application/octet-stream"))])
    assert response.status_code == 200, response.text
    listed = response.json()["model"]
    assert listed["id"] == "tiny" and listed["format"] == "gguf" and listed["complete"], listed
    assert listed["architecture"] == "llama" and listed["quantization"] == "F32"
    assert listed["context_length"] == 256
    from tests.factories import count_params

    assert listed["num_parameters"] == count_params(source)
    assert not listed["loaded"]
    # a .gguf file dropped into the models directory is a model too
    shutil.copy(exported, settings.models_path / "dropped.gguf")
    models = {m["id"]: m for m in client.get("/model/local-models").json()["models"]}
    assert models["dropped.gguf"]["format"] == "gguf" and models["dropped.gguf"]["complete"]

    # it answers like the model it was exported from (transformers dequantizes it; greedy replies match)
    assert client.post("/model/load", json={"model_id": "tiny-llama", "wait": True}).status_code == 200
    want = chat_reply(client)
    loaded = client.post("/model/load", json={"model_id": "tiny", "wait": True})
    assert loaded.status_code == 200, loaded.text
    metadata = loaded.json()["result"]
    assert metadata["engine"] == ENGINE and metadata["has_chat_template"]  # llama.cpp where it is installed
    assert chat_reply(client) == want
    by_path = client.post("/model/load", json={"model_path": str(settings.models_path / "dropped.gguf"), "wait": True})
    assert by_path.status_code == 200, by_path.text
    assert client.post("/model/unload").status_code == 200
    assert client.delete("/model/local-models/dropped.gguf").status_code == 200
    assert not (settings.models_path / "dropped.gguf").exists()


def test_a_damaged_gguf_is_refused_at_upload_and_listed_with_its_problem(
    client: TestClient, settings: Settings
) -> None:
    response = client.post("/model/upload", files=[("files", ("broken.gguf", b"GGUF\x03\x00\x00\x00garbage"))])
    assert response.status_code == 422, response.text
    assert "GGUF" in response.json()["error"]["message"]
    assert not (settings.models_path / "broken").exists()
    (settings.models_path / "broken.gguf").write_bytes(b"not a gguf file at all")
    models = {m["id"]: m for m in client.get("/model/local-models").json()["models"]}
    assert models["broken.gguf"]["complete"] is False and "GGUF" in models["broken.gguf"]["problems"][0]
    assert client.post("/model/load", json={"model_id": "broken.gguf", "wait": True}).status_code == 422
