"""A hardware probe for tests: MPS and CUDA machines, described rather than patched."""

from __future__ import annotations

from dataclasses import dataclass

from backend.utils.mac_optimization import GB, AcceleratorMemory


@dataclass
class FakeProbe:
    mps: bool = False
    cuda: bool = False
    bf16: bool = True
    system_total: int = 32 * GB
    system_available: int = 16 * GB
    accelerator_total: int = 24 * GB
    accelerator_free: int = 20 * GB

    def mps_available(self) -> bool:
        return self.mps

    def cuda_available(self) -> bool:
        return self.cuda

    def bf16_supported(self, device: str) -> bool:
        return self.bf16 if device in ("mps", "cuda") else True

    def accelerator_memory(self, device: str) -> AcceleratorMemory | None:
        if device == "mps" and self.mps:
            driver = self.accelerator_total - self.accelerator_free
            return AcceleratorMemory(self.accelerator_total, self.accelerator_free, driver, driver, "Apple GPU (MPS)")
        if device == "cuda" and self.cuda:
            used = self.accelerator_total - self.accelerator_free
            return AcceleratorMemory(self.accelerator_total, self.accelerator_free, used, None, "Fake GPU")
        return None

    def system_memory(self) -> tuple[int, int]:
        return self.system_total, self.system_available
