"""The seed's test groups: optimizer, service, API, error handling, performance (memory and batch size)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.api.model_loader import get_cached_model
from backend.config import Settings
from backend.errors import InvalidModelError, ModelNotFoundError, UnsafeModelError
from backend.services.model_service import ModelService
from backend.utils.mac_optimization import GB, MACOptimizer, MemoryStats
from tests.factories import break_config, count_params
from tests.fakes import FakeProbe


class TestMACOptimizer:
    def test_get_device_prefers_mps_then_cuda_then_cpu(self) -> None:
        assert MACOptimizer(FakeProbe(mps=True, cuda=True)).get_device() == "mps"
        assert MACOptimizer(FakeProbe(cuda=True)).get_device() == "cuda"
        assert MACOptimizer(FakeProbe()).get_device() == "cpu"

    def test_device_setting_overrides_detection(self) -> None:
        assert MACOptimizer(FakeProbe(mps=True), device="cpu").get_device() == "cpu"

    def test_class_level_calls_work_as_in_the_seed(self) -> None:
        assert MACOptimizer.get_device() == "cpu"  # this machine has no accelerator
        assert MACOptimizer.estimate_model_memory(1e9) == pytest.approx(1e9 * 4 * 1.05 / GB, rel=1e-3)
        assert MACOptimizer.get_optimal_batch_size(124e6) >= 1

    def test_dtype_choice(self) -> None:
        assert MACOptimizer(FakeProbe()).get_dtype() == "float32"
        assert MACOptimizer(FakeProbe(mps=True, bf16=True)).get_dtype() == "bfloat16"
        assert MACOptimizer(FakeProbe(mps=True, bf16=False)).get_dtype() == "float16"  # macOS < 14
        assert MACOptimizer(FakeProbe(cuda=True, bf16=False)).get_dtype() == "float16"
        assert MACOptimizer(FakeProbe(cuda=True), dtype="float32").get_dtype() == "float32"

    def test_get_memory_stats_reports_accelerator_figures(self) -> None:
        stats = MACOptimizer(
            FakeProbe(cuda=True, accelerator_total=24 * GB, accelerator_free=20 * GB)
        ).get_memory_stats()
        assert type(stats) is dict  # the seed's call returns a plain dict
        assert stats["device"] == "cuda"
        assert stats["accelerator"] is not None and stats["accelerator"]["total_gb"] == 24.0
        assert stats["device_available_gb"] == 20.0
        mps = MACOptimizer(FakeProbe(mps=True, accelerator_free=30 * GB, system_available=12 * GB)).get_memory_stats()
        assert mps["device_available_gb"] == 12.0  # unified memory: bounded by what the system has free
        assert mps["accelerator"] is not None and mps["accelerator"]["driver_allocated_gb"] is not None
        cpu = MACOptimizer(FakeProbe(system_available=10 * GB)).get_memory_stats()
        assert cpu["accelerator"] is None and cpu["device_available_gb"] == 10.0 and cpu["process_rss_gb"] > 0

    def test_memory_stats_is_the_typed_model_of_the_same_figures(self) -> None:
        optimizer = MACOptimizer(FakeProbe(cuda=True, accelerator_total=24 * GB, accelerator_free=20 * GB))
        typed = optimizer.memory_stats()
        assert isinstance(typed, MemoryStats)
        assert typed.accelerator is not None and typed.accelerator.total_gb == 24.0
        plain = optimizer.get_memory_stats()
        assert plain.keys() == typed.model_dump().keys()
        assert {k: v for k, v in plain.items() if k != "process_rss_gb"} == typed.model_dump(exclude={"process_rss_gb"})

    def test_estimate_model_memory_by_dtype(self) -> None:
        opt = MACOptimizer(FakeProbe())
        assert opt.estimate_model_memory(1e9, "float16") == pytest.approx(opt.estimate_model_memory(1e9, "float32") / 2)
        with pytest.raises(ValueError, match="unknown dtype"):
            opt.estimate_model_memory(1e9, "float13")

    def test_get_optimal_batch_size_grows_with_memory_and_never_drops_below_one(self) -> None:
        small = MACOptimizer(FakeProbe(system_available=4 * GB), safety_margin_gb=0).get_optimal_batch_size(124e6)
        large = MACOptimizer(FakeProbe(system_available=64 * GB), safety_margin_gb=0).get_optimal_batch_size(124e6)
        assert 1 <= small <= large <= 64
        assert large & (large - 1) == 0  # a power of two
        starved = MACOptimizer(FakeProbe(system_available=1 * GB)).get_optimal_batch_size(7e9)
        assert starved == 1
        longer = MACOptimizer(FakeProbe(system_available=16 * GB)).get_optimal_batch_size(124e6, seq_len=4096)
        assert longer <= MACOptimizer(FakeProbe(system_available=16 * GB)).get_optimal_batch_size(124e6, seq_len=256)


class TestModelService:
    def test_initialization_uses_settings_and_optimizer(self, settings: Settings) -> None:
        service = ModelService(settings)
        assert service.settings is settings
        assert service.optimizer.get_device() == "cpu"
        assert service.current is None

    def test_empty_local_list(self, settings: Settings) -> None:
        settings.ensure_dirs()
        assert ModelService(settings).list_local_models() == []

    def test_list_local_models_reads_files_without_loading(self, settings: Settings, local_models: Path) -> None:
        models = {m["id"]: m for m in ModelService(settings).list_local_models()}
        assert set(models) == {"tiny-llama", "tiny-gpt2"}
        llama = models["tiny-llama"]
        assert llama["format"] == "safetensors" and llama["architecture"] == "LlamaForCausalLM"
        assert llama["num_parameters"] == count_params(local_models / "tiny-llama")
        assert llama["size_bytes"] > llama["num_parameters"] * 4 and llama["complete"] and not llama["loaded"]
        assert get_cached_model()["model"] is None  # listing loaded nothing

    def test_load_local_returns_model_tokenizer_and_metadata(self, settings: Settings, local_models: Path) -> None:
        service = ModelService(settings)
        model, tokenizer, metadata = service.load_local(local_models / "tiny-llama")
        assert metadata["num_parameters"] == sum(p.numel() for p in model.parameters())
        assert metadata["device"] == "cpu" and metadata["dtype"] == "float32"
        assert metadata["architecture"] == "LlamaForCausalLM" and metadata["model_type"] == "llama"
        assert metadata["vocab_size"] == len(tokenizer) and metadata["context_length"] == 256
        assert metadata["estimated_memory_gb"] > 0 and metadata["measured_memory_gb"] > 0
        assert metadata["has_chat_template"] is True and metadata["source"] == "local"
        assert tokenizer.decode(tokenizer("hello there")["input_ids"]) == "hello there"
        cache = get_cached_model()
        assert cache["model"] is model and cache["tokenizer"] is tokenizer
        assert cache["metadata"]["model_id"] == "tiny-llama"

    def test_load_by_local_id_and_replace(self, settings: Settings, local_models: Path) -> None:
        service = ModelService(settings)
        service.load_local("tiny-llama")
        gpt2, _, meta = service.load_local("tiny-gpt2")
        assert meta["model_type"] == "gpt2" and meta["context_length"] == 128
        assert get_cached_model()["model"] is gpt2
        listed = {m["id"]: m["loaded"] for m in service.list_local_models()}
        assert listed == {"tiny-llama": False, "tiny-gpt2": True}

    def test_metadata_extraction_at_requested_dtype(self, settings: Settings, local_models: Path) -> None:
        model, _, meta = ModelService(settings).load_local("tiny-llama", dtype="bfloat16")
        assert meta["dtype"] == "bfloat16" and str(model.dtype) == "torch.bfloat16"
        assert meta["measured_memory_gb"] == pytest.approx(model.get_memory_footprint() / GB, abs=1e-4)

    def test_sharded_model_counts_and_missing_shard(self, settings: Settings, tmp_path: Path) -> None:
        from tests.factories import make_model

        sharded = make_model(settings.models_path / "sharded", "llama", max_shard_size="100KB")
        assert len(list(sharded.glob("model-*.safetensors"))) > 1
        service = ModelService(settings)
        listed = service.list_local_models()[0]
        assert listed["complete"] and listed["num_parameters"] == count_params(sharded)
        next(sharded.glob("model-*.safetensors")).unlink()
        listed = service.list_local_models()[0]
        assert not listed["complete"] and "missing weight shards" in listed["problems"][0]
        with pytest.raises(InvalidModelError, match="missing weight shards"):
            service.load_local("sharded")

    def test_two_services_share_one_process_cache(self, settings: Settings, local_models: Path) -> None:
        ModelService(settings).load_local("tiny-llama")
        assert ModelService(settings).current is not None


class TestAPI:
    def test_health(self, client: TestClient) -> None:
        assert client.get("/model/health").json()["status"] == "healthy"
        body = client.get("/health").json()
        assert body["status"] == "ok" and body["warmup"] == "off"

    def test_current_with_no_model_loaded(self, client: TestClient) -> None:
        body = client.get("/model/current").json()
        assert body["loaded"] is False and body["metadata"] is None
        assert body["memory"]["system_total_gb"] > 0

    def test_local_models_list(self, client: TestClient, local_models: Path) -> None:
        body = client.get("/model/local-models").json()
        assert sorted(m["id"] for m in body["models"]) == ["tiny-gpt2", "tiny-llama"]
        assert body["models_dir"] == str(local_models)

    def test_unload_with_no_model(self, client: TestClient) -> None:
        response = client.post("/model/unload")
        assert response.status_code == 200 and response.json()["status"] == "not_loaded"

    def test_upload_by_path_then_current_then_unload(self, client: TestClient, local_models: Path) -> None:
        response = client.post("/model/upload", params={"model_path": str(local_models / "tiny-gpt2")})
        assert response.status_code == 200, response.text
        assert response.json()["metadata"]["model_type"] == "gpt2"
        current = client.get("/model/current").json()
        assert current["loaded"] and current["metadata"]["model_id"] == "tiny-gpt2"
        assert client.get("/model/health").json()["model_id"] == "tiny-gpt2"
        unloaded = client.post("/model/unload").json()
        assert unloaded["status"] == "unloaded" and unloaded["model_id"] == "tiny-gpt2"
        assert client.get("/model/current").json()["loaded"] is False

    def test_config_redacts_secrets(self, tmp_path: Path) -> None:
        from backend.main import create_app

        settings = Settings(home_dir=tmp_path / "o", hf_token="hf_secret_value_123", warmup=False)
        with TestClient(create_app(settings)) as client:
            response = client.get("/config")
        assert response.status_code == 200
        assert "hf_secret_value_123" not in response.text
        body = response.json()
        assert body["settings"]["hf_token"] == "**********"
        assert body["settings"]["trust_remote_code"] is False and body["device"] == "cpu"
        assert {"lora_r", "rag_chunk_size", "train_learning_rate", "memory_safety_margin_gb"} <= set(body["settings"])

    def test_info_error_when_hub_unreachable(self, client: TestClient) -> None:
        response = client.get("/model/info/Qwen/Qwen2.5-0.5B")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "hub_unavailable"


class TestErrorHandling:
    def test_invalid_model_id(self, client: TestClient) -> None:
        response = client.post("/model/download", json={"model_id": "not a/valid//id"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"

    def test_invalid_local_path(self, client: TestClient, tmp_path: Path) -> None:
        response = client.post("/model/upload", params={"model_path": str(tmp_path / "nowhere")})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"
        response = client.post("/model/upload", params={"model_path": "no-such-model"})
        assert response.status_code == 404

    def test_folder_that_is_not_a_model(self, client: TestClient, tmp_path: Path) -> None:
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "readme.txt").write_text("hello")
        response = client.post("/model/upload", params={"model_path": str(tmp_path / "notes")})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid_model" and "no config.json" in error["message"]

    def test_validation_errors_have_the_one_shape(self, client: TestClient) -> None:
        response = client.post("/model/download", json={"model_id": "gpt2", "unexpected": 1})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "validation_error" and error["errors"][0]["loc"][-1] == "unexpected"
        assert client.get("/no/such/route").json()["error"]["code"] == "not_found"

    def test_truncated_config_and_corrupt_weights(self, settings: Settings, model_store: Path, tmp_path: Path) -> None:
        service = ModelService(settings)
        broken = shutil.copytree(model_store / "tiny-llama", tmp_path / "broken-config")
        break_config(broken)
        with pytest.raises(InvalidModelError, match=r"config\.json is not valid JSON"):
            service.load_local(broken)
        corrupt = shutil.copytree(model_store / "tiny-llama", tmp_path / "corrupt-weights")
        (corrupt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
        with pytest.raises(InvalidModelError):
            service.load_local(corrupt)
        assert service.current is None

    def test_failed_load_keeps_the_previous_model(self, settings: Settings, local_models: Path, tmp_path: Path) -> None:
        service = ModelService(settings)
        model, _, _ = service.load_local("tiny-llama")
        truncated = shutil.copytree(local_models / "tiny-gpt2", tmp_path / "truncated")
        weights = truncated / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-1000])  # header intact, data cut short
        with pytest.raises(InvalidModelError):
            service.load_local(truncated)
        assert get_cached_model()["model"] is model
        assert get_cached_model()["metadata"]["model_id"] == "tiny-llama"

    def test_pickle_weights_refused_unless_allowed(self, settings: Settings, model_store: Path) -> None:
        pickle_model = model_store / "tiny-llama-pickle"
        with pytest.raises(UnsafeModelError, match="pickle"):
            ModelService(settings).load_local(pickle_model)
        allowed = settings.model_copy(update={"allow_pickle_weights": True})
        _, _, meta = ModelService(allowed).load_local(pickle_model)
        assert meta["num_parameters"] == count_params(model_store / "tiny-llama")

    def test_remote_code_refused_unless_asked_twice(
        self, settings: Settings, model_store: Path, tmp_path: Path
    ) -> None:
        folder = shutil.copytree(model_store / "tiny-llama", tmp_path / "remote-code")
        config = (folder / "config.json").read_text()
        (folder / "config.json").write_text(
            config.replace('"model_type"', '"auto_map": {"AutoModel": "x.Y"}, "model_type"')
        )
        with pytest.raises(UnsafeModelError, match="ORCHARD_TRUST_REMOTE_CODE"):
            ModelService(settings).load_local(folder, trust_remote_code=True)  # the setting is off

    def test_unknown_error_is_a_generic_500(self, client: TestClient) -> None:
        from backend.api.deps import get_model_service

        class Broken:
            def __getattr__(self, name: str) -> object:
                raise RuntimeError("secret internal detail /home/user/.cache")

        client.app.dependency_overrides[get_model_service] = lambda: Broken()  # type: ignore[attr-defined]
        plain = TestClient(client.app, raise_server_exceptions=False)
        response = plain.get("/model/current")
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "secret" not in response.text


class TestPerformance:
    """Memory behaviour a user can check; speed lives in bench/."""

    def test_memory_stats_are_real(self) -> None:
        stats = MACOptimizer.get_memory_stats()
        assert isinstance(stats, dict)
        assert 0 < stats["system_available_gb"] <= stats["system_total_gb"]
        assert 0 < stats["process_rss_gb"] < stats["system_total_gb"]

    def test_batch_size_for_a_real_model(self, settings: Settings, local_models: Path) -> None:
        _, _, meta = ModelService(settings).load_local("tiny-llama")
        batch = MACOptimizer.get_optimal_batch_size(meta["num_parameters"], hidden_size=64, num_layers=2)
        assert 1 <= batch <= 64

    def test_refuses_a_model_that_does_not_fit(self, settings: Settings, local_models: Path) -> None:
        from backend.errors import InsufficientMemoryError

        tight = settings.model_copy(update={"memory_safety_margin_gb": 10_000.0})
        with pytest.raises(InsufficientMemoryError) as refused:
            ModelService(tight).load_local("tiny-llama")
        assert refused.value.status_code == 507
        assert refused.value.details["required_gb"] > 0 and refused.value.details["available_gb"] < 0
        assert "force=true" in refused.value.message
        _, _, meta = ModelService(tight).load_local("tiny-llama", force=True)
        assert meta["model_id"] == "tiny-llama"

    def test_refusal_via_api_has_the_numbers(self, tmp_path: Path, local_models: Path, settings: Settings) -> None:
        from backend.main import create_app

        tight = settings.model_copy(update={"memory_safety_margin_gb": 10_000.0})
        with TestClient(create_app(tight)) as client:
            response = client.post("/model/upload", params={"model_path": "tiny-llama"})
        assert response.status_code == 507
        error = response.json()["error"]
        assert error["code"] == "insufficient_memory" and error["required_gb"] > 0 and "available" in error["message"]


def test_not_found_error_is_a_studio_error() -> None:
    assert ModelNotFoundError("x").status_code == 404
