"""Service-wide routes: health and configuration."""

from __future__ import annotations

from fastapi import APIRouter

from backend import __version__
from backend.api.deps import ModelServiceDep, SettingsDep
from backend.schemas.system import ConfigResponse, EngineInfo, HealthResponse
from backend.services import llama_engine

router = APIRouter(tags=["system"])


@router.get("/health", operation_id="health", response_model=HealthResponse)
async def health(service: ModelServiceDep) -> HealthResponse:
    """The server is up; ``warmup`` tells whether the first load will still pay the import cost."""
    return HealthResponse(version=__version__, warmup=service.warmup_state)


@router.get("/config", operation_id="getConfig", response_model=ConfigResponse)
def config(settings: SettingsDep, service: ModelServiceDep) -> ConfigResponse:
    """Every setting, secrets redacted, with the device and dtype the optimizer chose, and the engines here."""
    device = service.optimizer.get_device()
    current = service.current
    batch = None
    if current is not None and current.engine == "transformers":
        batch = service.optimizer.get_optimal_batch_size(
            current.metadata.num_parameters, settings.train_max_seq_length, current.metadata.dtype
        )
    return ConfigResponse(
        settings=settings.public_dict(),
        device=device,
        dtype=service.optimizer.get_dtype(device),
        recommended_batch_size=batch,
        engines=engines(),
    )


def engines() -> list[EngineInfo]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    llama = llama_engine.available()
    return [
        EngineInfo(
            name="transformers",
            available=True,
            version=installed("transformers"),
            runs="every model: training, adapters, merging, export; GGUF files dequantized",
        ),
        EngineInfo(
            name="llama.cpp",
            available=llama,
            version=installed("llama_cpp_python") if llama else None,
            runs="GGUF files as they are (quantized), several times faster for chat",
            gpu_offload=llama_engine.gpu_offload() if llama else None,
            hint=None if llama else llama_engine.INSTALL_HINT,
        ),
    ]
