"""Settings from the environment and .env, and the server started the ways the README shows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.config import Settings, get_settings


def test_defaults_are_safe(tmp_path: Path) -> None:
    settings = Settings(home_dir=tmp_path)
    assert settings.host == "127.0.0.1" and settings.port == 8000
    assert settings.trust_remote_code is False and settings.allow_pickle_weights is False
    assert settings.models_dir == tmp_path / "models" and settings.outputs_dir == tmp_path / "outputs"
    assert not (tmp_path / "models").exists()  # created at start-up, not when settings are built


def test_environment_and_hugging_face_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCHARD_PORT", "9123")
    monkeypatch.setenv("ORCHARD_CORS_ORIGINS", '["http://localhost:3000"]')
    monkeypatch.setenv("ORCHARD_HOME_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1234/")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.port == 9123 and settings.cors_origins == ["http://localhost:3000"]
    assert settings.hf_token is not None and settings.hf_token.get_secret_value() == "hf_from_env"
    assert settings.hf_endpoint == "http://127.0.0.1:1234"
    assert settings.hf_cache_dir == tmp_path / "hf" / "hub"
    assert settings.models_dir == tmp_path / "home" / "models"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("ORCHARD_HF_TOKEN", "hf_orchard_wins")
    get_settings.cache_clear()
    assert get_settings().hf_cache_dir == tmp_path / "hub-cache"
    assert get_settings().token() == "hf_orchard_wins" and get_settings().token("hf_request") == "hf_request"
    assert "hf_orchard_wins" not in repr(get_settings()) and "hf_orchard_wins" not in str(get_settings().public_dict())


def test_dot_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ORCHARD_DTYPE=bfloat16\nORCHARD_MEMORY_SAFETY_MARGIN_GB=2.5\n")
    settings = Settings(_env_file=tmp_path / ".env")  # type: ignore[call-arg]
    assert settings.dtype == "bfloat16" and settings.memory_safety_margin_gb == 2.5


def test_bad_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHARD_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        Settings()


def test_env_example_and_readme_table_are_current() -> None:
    """Both are generated from Settings: `uv run python scripts/settings_docs.py` updates them."""
    import importlib.util

    root = Path(__file__).parents[2]
    spec = importlib.util.spec_from_file_location("settings_docs", root / "scripts" / "settings_docs.py")
    assert spec is not None and spec.loader is not None
    docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs)
    assert (root / ".env.example").read_text() == docs.env_example()
    readme = (root / "README.md").read_text()
    assert docs.readme_with_table(readme) == readme and "`ORCHARD_DISK_QUOTA_GB`" in readme


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["-m", "backend.cli", "serve"], ["-m", "uvicorn", "backend.main:app"]])
def test_server_starts_and_answers_health(command: list[str], tmp_path: Path) -> None:
    port = _free_port()
    env = os.environ | {"ORCHARD_HOME_DIR": str(tmp_path / "home"), "ORCHARD_PORT": str(port)}
    args = [sys.executable, *command] + ([] if "serve" in command else ["--port", str(port)])
    process = subprocess.Popen(
        args, env=env, cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                assert time.monotonic() < deadline, "server did not answer within 60 s"
                time.sleep(0.2)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert (tmp_path / "home" / "models").is_dir()  # created at start-up
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_hub_telemetry_is_off_unless_asked() -> None:
    """huggingface_hub's telemetry calls the real Hub; Orchard turns it off before the library reads the variable."""
    code = "import backend.main; from huggingface_hub import constants; print(constants.HF_HUB_DISABLE_TELEMETRY)"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_TELEMETRY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    env["HF_HUB_DISABLE_TELEMETRY"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
