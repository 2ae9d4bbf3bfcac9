"""Hardware decisions: which device, which dtype, how much memory, what batch size.

The seed's calls work on the class itself, using this machine's hardware::

    MACOptimizer.get_device()                      # "mps" on an Apple-silicon Mac, else "cuda", else "cpu"
    MACOptimizer.estimate_model_memory(1e9)        # GB for 1B parameters at the chosen dtype
    MACOptimizer.get_optimal_batch_size(124e6)

and on an instance built with an injected :class:`AcceleratorProbe`, which is how tests exercise the MPS and
CUDA decisions on a CPU-only machine: ``MACOptimizer(probe=FakeProbe(mps=True)).get_device() == "mps"``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

import psutil
from pydantic import BaseModel

if TYPE_CHECKING:
    from backend.config import Settings

GB = 1024**3
DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "int8": 1,
    "int4": 0.5,
}
# What a load costs beyond the weights themselves (buffers, allocator slack, Python objects), as a fraction.
LOAD_OVERHEAD = 0.05


@dataclass(frozen=True)
class AcceleratorMemory:
    """What an accelerator reports about its memory, in bytes."""

    total: int
    free: int
    allocated: int
    driver_allocated: int | None = None  # MPS only
    name: str | None = None


class AcceleratorProbe(Protocol):
    """What the optimizer asks of the hardware. :class:`TorchProbe` asks torch and psutil."""

    def mps_available(self) -> bool: ...
    def cuda_available(self) -> bool: ...
    def bf16_supported(self, device: str) -> bool: ...
    def accelerator_memory(self, device: str) -> AcceleratorMemory | None: ...
    def system_memory(self) -> tuple[int, int]:
        """(total, available) system RAM in bytes."""
        ...


class TorchProbe:
    """The real probe: torch for MPS/CUDA, psutil for system RAM. torch is imported only when asked.

    It imports plain ``torch`` rather than calling :func:`~backend.utils.libraries.import_libraries`: the probe
    answers ``/model/health`` on the event loop, which must not wait seconds for a warm-up to release the library
    lock, and torch (not a lazy module like transformers) is safe to import from several threads.
    """

    def mps_available(self) -> bool:
        import torch

        return bool(torch.backends.mps.is_available())

    def cuda_available(self) -> bool:
        import torch

        return bool(torch.cuda.is_available())

    def bf16_supported(self, device: str) -> bool:
        import torch

        if device == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        if device == "mps":
            # MPS gained bf16 with macOS 14 (Sonoma); older systems must use fp16.
            return bool(torch.backends.mps.is_macos_or_newer(14, 0))
        return True

    def accelerator_memory(self, device: str) -> AcceleratorMemory | None:
        import torch

        if device == "cuda":
            free, total = torch.cuda.mem_get_info()
            return AcceleratorMemory(
                total=total,
                free=free,
                allocated=torch.cuda.memory_allocated(),
                name=torch.cuda.get_device_name(),
            )
        if device == "mps":
            # Unified memory: the GPU may use up to the recommended working set, shared with the CPU.
            total = torch.mps.recommended_max_memory()
            driver = torch.mps.driver_allocated_memory()
            return AcceleratorMemory(
                total=total,
                free=max(total - driver, 0),
                allocated=torch.mps.current_allocated_memory(),
                driver_allocated=driver,
                name="Apple GPU (MPS)",
            )
        return None

    def system_memory(self) -> tuple[int, int]:
        vm = psutil.virtual_memory()
        return vm.total, vm.available


class AcceleratorStats(BaseModel):
    name: str | None
    total_gb: float
    free_gb: float
    allocated_gb: float
    driver_allocated_gb: float | None = None


class MemoryStats(BaseModel):
    """Memory as the optimizer sees it, in GB."""

    device: str
    system_total_gb: float
    system_available_gb: float
    system_used_percent: float
    process_rss_gb: float
    accelerator: AcceleratorStats | None
    device_available_gb: float  # what the chosen device can still hold (before the safety margin)
    safety_margin_gb: float


P = ParamSpec("P")
R = TypeVar("R")


class _hybridmethod(Generic[P, R]):
    """A method that works on an instance, or on the class through its default instance (the seed's calls)."""

    def __init__(self, func: Callable[Concatenate[MACOptimizer, P], R]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, obj: MACOptimizer | None, cls: type[MACOptimizer]) -> Callable[P, R]:
        return functools.partial(self.func, obj if obj is not None else cls.default())


def _gb(n: float) -> float:
    return round(n / GB, 3)


class MACOptimizer:
    """Picks device and dtype, reports memory, estimates model memory and batch size.

    Args:
        probe: Where hardware facts come from (default: :class:`TorchProbe`).
        device: ``"auto"`` (mps > cuda > cpu) or a device to force.
        dtype: ``"auto"`` or a dtype name to force.
        safety_margin_gb: Memory left free when deciding what fits.
        max_batch_size: Upper bound of :meth:`get_optimal_batch_size`.
    """

    def __init__(
        self,
        probe: AcceleratorProbe | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        safety_margin_gb: float = 1.0,
        max_batch_size: int = 64,
    ) -> None:
        self.probe: AcceleratorProbe = probe or TorchProbe()
        self.device_setting = device
        self.dtype_setting = dtype
        self.safety_margin_gb = safety_margin_gb
        self.max_batch_size = max_batch_size

    @classmethod
    def from_settings(cls, settings: Settings, probe: AcceleratorProbe | None = None) -> MACOptimizer:
        return cls(
            probe,
            device=settings.device,
            dtype=settings.dtype,
            safety_margin_gb=settings.memory_safety_margin_gb,
            max_batch_size=settings.train_max_batch_size,
        )

    @classmethod
    def default(cls) -> MACOptimizer:
        """The instance the class-level calls use: this machine's hardware and the process settings."""
        return _default_optimizer()

    @_hybridmethod
    def get_device(self) -> str:
        """``"mps"`` when available, else ``"cuda"``, else ``"cpu"``; a device setting other than auto wins."""
        if self.device_setting != "auto":
            return self.device_setting
        if self.probe.mps_available():
            return "mps"
        if self.probe.cuda_available():
            return "cuda"
        return "cpu"

    @_hybridmethod
    def get_dtype(self, device: str | None = None) -> str:
        """The dtype to load weights in on ``device``.

        bf16 where the device supports it (CUDA with bf16, MPS on macOS 14+), fp16 on MPS without bf16 and on
        old CUDA cards, fp32 on CPU (CPU matmuls in half precision are slow and lossy). A dtype setting wins.
        """
        if self.dtype_setting != "auto":
            return self.dtype_setting
        device = device or self.get_device()
        if device == "cpu":
            return "float32"
        return "bfloat16" if self.probe.bf16_supported(device) else "float16"

    @_hybridmethod
    def get_memory_stats(self, device: str | None = None) -> dict[str, Any]:
        """System RAM, this process's resident memory, and the accelerator's own figures, as a plain dict.

        The seed's call: ``memory = MACOptimizer.get_memory_stats(); memory["system_available_gb"]``. The keys are
        the fields of :class:`MemoryStats`; :meth:`memory_stats` returns the typed model.
        """
        return self.memory_stats(device).model_dump()

    @_hybridmethod
    def memory_stats(self, device: str | None = None) -> MemoryStats:
        """System RAM, this process's resident memory, and the accelerator's own figures (GB)."""
        device = device or self.get_device()
        total, available = self.probe.system_memory()
        accel = self.probe.accelerator_memory(device) if device != "cpu" else None
        if accel is None:
            device_available = available
        elif device == "mps":
            device_available = min(accel.free, available)  # unified memory: bounded by both
        else:
            device_available = accel.free
        return MemoryStats(
            device=device,
            system_total_gb=_gb(total),
            system_available_gb=_gb(available),
            system_used_percent=round(100 * (1 - available / total), 1) if total else 0.0,
            process_rss_gb=_gb(psutil.Process(os.getpid()).memory_info().rss),
            accelerator=(
                AcceleratorStats(
                    name=accel.name,
                    total_gb=_gb(accel.total),
                    free_gb=_gb(accel.free),
                    allocated_gb=_gb(accel.allocated),
                    driver_allocated_gb=_gb(accel.driver_allocated) if accel.driver_allocated is not None else None,
                )
                if accel
                else None
            ),
            device_available_gb=_gb(device_available),
            safety_margin_gb=self.safety_margin_gb,
        )

    @_hybridmethod
    def estimate_model_memory(self, num_params: float, dtype: str | None = None) -> float:
        """GB needed to hold a model of ``num_params`` parameters at ``dtype`` (default: the chosen dtype)."""
        dtype = dtype or self.get_dtype()
        try:
            per_param = DTYPE_BYTES[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPE_BYTES)}") from None
        return round(num_params * per_param * (1 + LOAD_OVERHEAD) / GB, 6)

    @_hybridmethod
    def get_optimal_batch_size(
        self,
        model_params: float,
        seq_len: int = 512,
        dtype: str | None = None,
        *,
        hidden_size: int | None = None,
        num_layers: int | None = None,
    ) -> int:
        """The largest power-of-two training batch that fits beside the model, never below 1.

        Activation memory per sequence follows Korthikanti et al. (2022): about 34 bytes per token, per layer,
        per hidden unit in 16-bit, scaled to ``dtype``. Without ``hidden_size``/``num_layers`` the shape is
        inferred from the parameter count (12·h²·L parameters with L ≈ h/128, true of most decoder LMs).
        """
        dtype = dtype or self.get_dtype()
        per_value = DTYPE_BYTES.get(dtype, 4)
        if hidden_size is None or num_layers is None:
            hidden = hidden_size or max(64, round((max(model_params, 1.0) * 128 / 12) ** (1 / 3)))
            layers = num_layers or max(1, round(max(model_params, 1.0) / (12 * hidden * hidden)))
        else:
            hidden, layers = hidden_size, num_layers
        free_gb = self.memory_stats().device_available_gb - self.safety_margin_gb
        free_gb -= self.estimate_model_memory(model_params, dtype)
        per_sequence = seq_len * hidden * layers * 17 * per_value
        fits = int(max(free_gb, 0) * GB // per_sequence) if per_sequence else 1
        batch = 1
        while batch * 2 <= min(fits, self.max_batch_size):
            batch *= 2
        return batch

    def memory_available_gb(self, device: str | None = None) -> float:
        """What a new model may use on ``device``: the device's free memory less the safety margin."""
        return round(self.memory_stats(device).device_available_gb - self.safety_margin_gb, 3)


@functools.lru_cache(maxsize=1)
def _default_optimizer() -> MACOptimizer:
    from backend.config import get_settings

    return MACOptimizer.from_settings(get_settings())


def torch_dtype(name: str) -> Any:
    """The torch dtype object for a dtype name (``"bfloat16"`` -> ``torch.bfloat16``)."""
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype
