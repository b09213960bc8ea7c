"""What this machine's processors can do, as training's choices of precision, network size and kernels
need to know: the facts (CPU flags, cores, GPUs, oneDNN's instruction cap) and the kind they make.

The kind is what a recipe is sized for (tasks/train/recipe/machine_recipes.py): a CPU whose matrix or
vector units compute in bfloat16 (AMX tiles, AVX-512 BF16) trains the airbench-style network at up to
twice the rate of one that computes in float32 only (AVX-512, or AVX2), and AMX's tiles faster still,
while `seed`'s small float32 network gains from neither; so each needs its own recipe to stay within
`seed`'s training time. TensorFlow is imported only to list GPUs, so the registry can
read these records without it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# "gpu": at least one GPU that TensorFlow sees. "cpu-amx": a CPU with AMX tiles for bfloat16 (flag
# amx_bf16), bfloat16 matrix units. "cpu-avx512-bf16": AVX-512 vectors that compute bfloat16 (flag
# avx512_bf16), no tiles. "cpu-avx512": AVX-512 in float32 only. "cpu-avx2": AVX2 or less.
MachineKind = Literal["gpu", "cpu-amx", "cpu-avx512-bf16", "cpu-avx512", "cpu-avx2"]
MACHINE_KINDS: tuple[MachineKind, ...] = ("gpu", "cpu-amx", "cpu-avx512-bf16", "cpu-avx512", "cpu-avx2")
BFLOAT16_KINDS: tuple[MachineKind, ...] = ("cpu-amx", "cpu-avx512-bf16")

# The CPU flags the kind depends on; the facts keep only these, so a record stays short.
KNOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

# Values of ONEDNN_MAX_CPU_ISA (oneDNN's documented names) at or above which oneDNN computes bfloat16 on a
# CPU that has the units, and those at or above which it uses AVX-512; anything else caps it at AVX2 or less.
_BFLOAT16_ISA_MARKS = ("BF16", "AMX", "FP16", "AVX10")
_UNCAPPED_ISA = ("ALL", "DEFAULT", "")


class GpuFacts(BaseModel):
    """One GPU TensorFlow sees."""

    name: str  # TensorFlow's device name, e.g. "/physical_device:GPU:0".
    compute_capability: list[int] = []  # [major, minor] for an NVIDIA GPU; empty where unknown.


class MachineFacts(BaseModel):
    """What training's choices are made from: measured, never assumed."""

    cpu: str = "unknown"  # The CPU's model name, from /proc/cpuinfo.
    # "family F model M" from /proc/cpuinfo: tells CPU generations apart where the name does not ("AMD EPYC").
    generation: str | None = None
    cores: int = Field(default=1, ge=1)  # Logical CPUs this process may run on.
    flags: list[str] = []  # Of KNOWN_FLAGS, those the CPU reports, sorted.
    # ONEDNN_MAX_CPU_ISA when set: oneDNN, which runs TensorFlow's convolutions on CPUs, then uses no
    # instruction beyond it, so the flags alone would mislead (None when unset).
    onednn_max_isa: str | None = None
    gpus: list[GpuFacts] = []


def _isa_cap_allows_bfloat16(cap: str | None) -> bool:
    return cap is None or cap.upper() in _UNCAPPED_ISA or any(mark in cap.upper() for mark in _BFLOAT16_ISA_MARKS)


def _isa_cap_allows_amx(cap: str | None) -> bool:
    return cap is None or cap.upper() in _UNCAPPED_ISA or "AMX" in cap.upper()


def _isa_cap_allows_avx512(cap: str | None) -> bool:
    return _isa_cap_allows_bfloat16(cap) or str(cap).upper().startswith("AVX512")


def machine_kind(facts: MachineFacts) -> MachineKind:
    """The kind of machine the facts describe: what a training recipe is sized for."""
    if facts.gpus:
        return "gpu"
    flags = set(facts.flags)
    if "amx_bf16" in flags and _isa_cap_allows_amx(facts.onednn_max_isa):
        return "cpu-amx"
    if flags & BFLOAT16_FLAGS and _isa_cap_allows_bfloat16(facts.onednn_max_isa):
        return "cpu-avx512-bf16"
    if "avx512f" in flags and _isa_cap_allows_avx512(facts.onednn_max_isa):
        return "cpu-avx512"
    return "cpu-avx2"


def computes_bfloat16_natively(facts: MachineFacts) -> bool:
    """True when mixed bfloat16 precision pays off: a GPU of compute capability 8.0 or newer, or a CPU with
    bfloat16 units that oneDNN may use."""
    if facts.gpus:
        return any(tuple(gpu.compute_capability) >= (8, 0) for gpu in facts.gpus)
    return machine_kind(facts) in BFLOAT16_KINDS


def _cpuinfo_field(cpuinfo: str, name: str) -> str | None:
    """The first processor's value of a /proc/cpuinfo field; None where it has none."""
    for line in cpuinfo.splitlines():
        field, _colon, value = line.partition(":")
        if field.strip() == name:
            return value.strip() or None
    return None


def _gpus() -> list[GpuFacts]:
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability") or ()
        found.append(GpuFacts(name=gpu.name, compute_capability=list(capability)))
    return found


@lru_cache(maxsize=1)
def read_machine_facts() -> MachineFacts:
    """This machine's facts, read once per process."""
    cpuinfo_file = Path("/proc/cpuinfo")
    cpuinfo = cpuinfo_file.read_text(errors="ignore") if cpuinfo_file.exists() else ""
    reported = set(cpuinfo.split())
    family, model = _cpuinfo_field(cpuinfo, "cpu family"), _cpuinfo_field(cpuinfo, "model")
    generation = f"family {family} model {model}" if family and model else None
    return MachineFacts(
        cpu=_cpuinfo_field(cpuinfo, "model name") or "unknown",
        generation=generation,
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        flags=sorted(flag for flag in KNOWN_FLAGS if flag in reported),
        onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA") or None,
        gpus=_gpus(),
    )


def hardware_supports_bfloat16() -> bool:
    """True when this machine computes in bfloat16 natively, so mixed precision pays off."""
    return computes_bfloat16_natively(read_machine_facts())
