"""The machine's facts and its kind: from CPU flags, GPUs and oneDNN's instruction cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionflow.network import hardware
from visionflow.network.hardware import (
    GpuFacts,
    MachineFacts,
    computes_bfloat16_natively,
    machine_kind,
    read_machine_facts,
)

AMX = ["amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512f", "fma"]
ZEN4 = ["avx2", "avx512_bf16", "avx512_vnni", "avx512f", "fma"]
SKYLAKE_X = ["avx2", "avx512f", "fma"]
ZEN3 = ["avx2", "fma"]


@pytest.mark.parametrize(
    ("flags", "cap", "kind"),
    [
        (AMX, None, "cpu-amx"),
        (ZEN4, None, "cpu-avx512-bf16"),
        (SKYLAKE_X, None, "cpu-avx512"),
        (ZEN3, None, "cpu-avx2"),
        ([], None, "cpu-avx2"),
        # oneDNN capped below bfloat16 computes in float32 whatever the flags say.
        (ZEN4, "AVX2", "cpu-avx2"),
        (AMX, "avx512_core", "cpu-avx512"),
        (AMX, "AVX512_CORE_AMX", "cpu-amx"),
        (AMX, "AVX512_CORE_BF16", "cpu-avx512-bf16"),
        (ZEN4, "ALL", "cpu-avx512-bf16"),
        (ZEN3, "AVX512_CORE_BF16", "cpu-avx2"),
    ],
    ids=[
        "amx",
        "avx512-bf16",
        "avx512",
        "avx2",
        "no-flags",
        "bf16-capped-avx2",
        "amx-capped-avx512",
        "amx-cap-allows",
        "amx-capped-avx512-bf16",
        "cap-all",
        "cap-above-the-cpu",
    ],  # fmt: skip
)
def test_the_kind_follows_the_flags_and_the_onednn_cap(flags, cap, kind):
    facts = MachineFacts(flags=flags, onednn_max_isa=cap)
    assert machine_kind(facts) == kind
    assert computes_bfloat16_natively(facts) == (kind in ("cpu-amx", "cpu-avx512-bf16"))


def test_a_gpu_makes_a_gpu_machine_and_bfloat16_needs_ampere_or_newer():
    ampere = MachineFacts(flags=ZEN3, gpus=[GpuFacts(name="GPU:0", compute_capability=[8, 0])])
    turing = MachineFacts(flags=AMX, gpus=[GpuFacts(name="GPU:0", compute_capability=[7, 5])])
    assert machine_kind(ampere) == machine_kind(turing) == "gpu"
    assert computes_bfloat16_natively(ampere) and not computes_bfloat16_natively(turing)


def _flags_of_this_cpu() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="this machine has no /proc/cpuinfo to read flags from")
def test_this_machines_kind_is_the_one_its_flags_give(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    read_machine_facts.cache_clear()
    try:
        facts = read_machine_facts()
    finally:
        read_machine_facts.cache_clear()
    flags = _flags_of_this_cpu()
    assert set(facts.flags) == flags & set(hardware.KNOWN_FLAGS) and facts.cores >= 1 and facts.cpu
    if facts.gpus:
        expected = "gpu"
    elif "amx_bf16" in flags:
        expected = "cpu-amx"
    elif "avx512_bf16" in flags:
        expected = "cpu-avx512-bf16"
    elif "avx512f" in flags:
        expected = "cpu-avx512"
    else:
        expected = "cpu-avx2"
    assert machine_kind(facts) == expected


def test_the_facts_read_the_onednn_cap_from_the_environment(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    read_machine_facts.cache_clear()
    try:
        facts = read_machine_facts()
    finally:
        read_machine_facts.cache_clear()
    assert facts.onednn_max_isa == "AVX2"
    assert machine_kind(facts) in ("gpu", "cpu-avx2")
