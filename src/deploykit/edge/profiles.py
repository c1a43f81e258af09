"""Device profiles: what a Raspberry Pi, a Coral board or a Jetson runs, for checks and emulation
without the device. One JSON file per profile in `profiles/` (package data), so adding a device is
adding a file."""

from __future__ import annotations

import json
from importlib import resources
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploykit.errors import ManifestError, unknown_name

__all__ = ["DeviceProfile", "load_profiles", "get_profile"]


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    title: str
    board: str = Field(description="what /proc/device-tree/model says on it (prefix)")
    soc: str
    cpu: str = Field(description="core type")
    clock_ghz: float
    arch: str
    cores: int = Field(ge=1)
    memory_gb: list[float]
    os: str
    python: str = Field(description="the OS's Python (major.minor)")
    runtimes: list[str] = Field(min_length=1, description="TFLite runtimes commonly found, as pip specs; the first is the default")
    accelerator: Optional[str] = None
    notes: str = ""

    @property
    def default_runtime(self) -> str:
        return self.runtimes[0]

    def describe(self) -> str:
        return f"{self.title}: {self.cores}× {self.cpu} @ {self.clock_ghz} GHz ({self.soc}), {self.os}, Python {self.python}"


def load_profiles() -> dict[str, DeviceProfile]:
    profiles = {}
    folder = resources.files("deploykit.edge") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        try:
            profile = DeviceProfile.model_validate(json.loads(entry.read_text()))
        except (ValueError, ValidationError) as exc:  # a packaging bug: say which file
            raise ManifestError(f"device profile {entry.name} is invalid: {exc}") from exc
        profiles[profile.name] = profile
    return profiles


def get_profile(name: str) -> DeviceProfile:
    profiles = load_profiles()
    if name not in profiles:
        raise unknown_name("device profile", name, profiles)
    return profiles[name]
