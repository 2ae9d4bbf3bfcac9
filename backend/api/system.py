"""Service-wide routes: health and configuration."""

from __future__ import annotations

from fastapi import APIRouter

from backend import __version__
from backend.api.deps import ModelServiceDep, SettingsDep
from backend.schemas.system import ConfigResponse, HealthResponse

router = APIRouter(tags=["system"])


@router.get("/health", operation_id="health", response_model=HealthResponse)
async def health(service: ModelServiceDep) -> HealthResponse:
    """The server is up; ``warmup`` tells whether the first load will still pay the import cost."""
    return HealthResponse(version=__version__, warmup=service.warmup_state)


@router.get("/config", operation_id="getConfig", response_model=ConfigResponse)
def config(settings: SettingsDep, service: ModelServiceDep) -> ConfigResponse:
    """Every setting, secrets redacted, with the device and dtype the optimizer chose."""
    device = service.optimizer.get_device()
    current = service.current
    batch = None
    if current is not None:
        batch = service.optimizer.get_optimal_batch_size(
            current.metadata.num_parameters, settings.train_max_seq_length, current.metadata.dtype
        )
    return ConfigResponse(
        settings=settings.public_dict(),
        device=device,
        dtype=service.optimizer.get_dtype(device),
        recommended_batch_size=batch,
    )
