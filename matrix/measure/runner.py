"""The runner: what machine measured a record, and its name (the slug) on the site and in results files.

Owns the facts (CPU, memory, GPUs via nvidia-smi, so no CUDA context is made), the slug format
('cpu-x86_64', 'h100-sm90', '2x-h100-sm90'), its parse (GPU count), the page label and which profile a kind of
runner measures by default. Stdlib only: the probe imports it inside each cell venv, before any torch exists.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

GIB = 1024**3
PROFILE_BY_KIND = {"cpu": "cpu", "gpu": "cuda"}  # the profile a runner of each kind measures unless told
_COUNT = re.compile(r"(\d+)x-")  # slugs of machines with several GPUs start with their count: "2x-h100-sm90"


def _nvidia_smi() -> list[dict[str, str]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    fields = "name,compute_cap,driver_version,memory.total"
    try:
        out = subprocess.run([smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.strip().splitlines() if out.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(dict(zip(("name", "capability", "driver", "memory_mib"), parts)))
    return gpus


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_short_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100', 'NVIDIA GeForce RTX 4090' -> 'rtx-4090'."""
    words = [w for w in re.split(r"[\s_]+", name) if w and w.upper() not in ("NVIDIA", "TESLA", "GEFORCE", "AMD")]
    kept = []
    for word in words:
        if re.fullmatch(r"\d+GB|HBM\d*e?|PCIE|SXM\d*|NVL|-", word, re.I):
            break
        kept.append(word.lower())
    return "-".join(kept[:2]) or "gpu"


def slug(gpu_names: list[str], capability: str = "", machine: str = "") -> str:
    """The runner's name: '[Nx-]<gpu>-sm<cc>' after the first GPU, or 'cpu-<machine>' without a GPU."""
    if not gpu_names:
        name = f"cpu-{machine.lower()}"
    else:
        count = f"{len(gpu_names)}x-" if len(gpu_names) > 1 else ""
        name = f"{count}{gpu_short_name(gpu_names[0])}-sm{capability.replace('.', '')}"
    # only what records.RUNNER_SLUG accepts on read: a GPU named "Foo (ES)/X" still gives a usable slug
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).lstrip("-._")[:64] or "unknown"


def gpu_count(runner_slug: str) -> int:
    """How many GPUs the runner named `runner_slug` has (0 for a CPU runner)."""
    if is_cpu(runner_slug):
        return 0
    match = _COUNT.match(runner_slug)
    return int(match.group(1)) if match else 1


def is_cpu(runner_slug: str) -> bool:
    """True for a runner without a GPU."""
    return runner_slug.startswith("cpu-")


def default_profile(kind: str) -> str:
    """The profile a runner of this kind ('cpu', 'gpu') measures by default; an unknown kind names itself."""
    return PROFILE_BY_KIND.get(kind, kind)


def label(row: Any) -> str:
    """A runner's one-line description for pages: its GPU and compute capability, else its CPU model."""
    gpu = row.get("runner_gpu_name") if hasattr(row, "get") else ""
    if isinstance(gpu, str) and gpu:
        cc = row.get("runner_compute_capability") or ""
        return f"{gpu}" + (f", compute capability {cc}" if cc else "")
    cpu = row.get("runner_cpu_model") if hasattr(row, "get") else ""
    return cpu if isinstance(cpu, str) else ""


def runner_facts() -> dict[str, Any]:
    """What machine this is: CPU, memory, GPUs (via nvidia-smi, so no CUDA context is created), and its slug."""
    gpus = _nvidia_smi()
    try:
        ram_gib: float | None = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1)
    except (ValueError, OSError):
        ram_gib = None
    facts: dict[str, Any] = {
        "kind": "gpu" if gpus else "cpu", "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "ram_gib": ram_gib, "machine": platform.machine(), "os": platform.platform(terse=True),
        "gpu_count": len(gpus), "gpus": [], "gpu_name": "", "compute_capability": "", "arch": "",
        "driver": "", "gpu_memory_gib": None}
    for gpu in gpus:
        try:
            mem: float | None = round(float(gpu["memory_mib"]) / 1024, 1)
        except ValueError:
            mem = None
        facts["gpus"].append({"name": gpu["name"], "capability": gpu["capability"], "memory_gib": mem})
    if gpus:
        first = facts["gpus"][0]
        cc = first["capability"]
        facts.update(gpu_name=first["name"], compute_capability=cc, arch="sm_" + cc.replace(".", ""),
                     driver=gpus[0]["driver"], gpu_memory_gib=first["memory_gib"])
    facts["slug"] = slug([g["name"] for g in gpus], gpus[0]["capability"] if gpus else "", platform.machine())
    return facts
