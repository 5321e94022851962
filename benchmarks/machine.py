"""What machine a benchmark ran on, for its JSON lines (imported by the scripts of this folder,
which is on sys.path when they run as scripts)."""

from __future__ import annotations

import platform


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in info.split("\n\n")[0].splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def cpu_name() -> str:
    """/proc/cpuinfo's "model name" (e.g. "AMD EPYC"), else the platform's processor name."""
    return _cpuinfo_fields().get("model name") or platform.processor() or platform.machine()


def cpu_model() -> str:
    """The name with its family and model numbers and AVX-512 BF16 support: "AMD EPYC" alone
    hides the generation, and float kernels (and bfloat16) differ between them."""
    fields = _cpuinfo_fields()
    if not fields:
        return cpu_name()
    return f"{cpu_name()} family {fields.get('cpu family', '')} model {fields.get('model', '')}" + (
        " avx512_bf16" if "avx512_bf16" in fields.get("flags", "").split() else "")
