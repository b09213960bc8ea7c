"""What this machine's processors can do, as training's choices of precision and kernels need to know."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import tensorflow as tf


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo; empty where there is no such file."""
    cpuinfo = Path("/proc/cpuinfo")
    return frozenset(cpuinfo.read_text(errors="ignore").split()) if cpuinfo.exists() else frozenset()


@lru_cache(maxsize=1)
def hardware_supports_bfloat16() -> bool:
    """True when this machine computes in bfloat16 natively, so mixed precision pays off."""
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if tuple(capability) >= (8, 0):
            return True
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
