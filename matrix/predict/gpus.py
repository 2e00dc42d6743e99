"""The GPUs users name ("5090", "Tesla T4", "NVIDIA A100-SXM4-80GB", "sm_75") and the architecture each is.

The table is `data/gpus.toml` (name, sm, vram_gib, aliases, jetson, host). `find_gpu(text)` matches without
regard to case, spaces, hyphens or the words NVIDIA, GeForce, Tesla, Quadro; the strings
`torch.cuda.get_device_name()` returns ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3") match too, and so
does an architecture ("sm_75", "sm75", "compute capability 7.5", "8.6"), which gives a GPU named for it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

GPUS_TOML = Path(__file__).with_name("data") / "gpus.toml"
NOISE = {"nvidia", "geforce", "tesla", "quadro", "laptop", "gpu", "mobile", "maxq", "pcie", "sxm", "sxm2", "sxm4",
         "sxm5", "sxm6", "hbm3", "hbm3e", "nvl", "workstation", "server", "edition", "generation", "card"}
ARCH_TEXT = re.compile(r"^(?:sm|compute|cc|compute capability|capability)?[ _]?(\d{1,2})[._]?(\d)[a-z]?$")


@dataclass(frozen=True)
class Gpu:
    """One GPU model: `sm` is its architecture as `sm_XY`; `jetson` an L4T board; `host` "aarch64" where the GPU
    only comes with an Arm CPU (Jetson, Grace, DGX Spark), else "any"."""

    name: str
    sm: str
    vram_gib: float | None = None
    aliases: tuple[str, ...] = ()
    jetson: bool = False
    host: str = "any"

    @property
    def capability(self) -> tuple[int, int]:
        """`sm_86` -> (8, 6); `sm_120` -> (12, 0)."""
        number = int(re.sub(r"\D", "", self.sm))
        return number // 10, number % 10


def normalise(text: str) -> str:
    """Lower case, words of NOISE and memory sizes ("80gb") dropped, then every non-alphanumeric removed."""
    words = re.split(r"[^a-z0-9]+", text.lower().replace("max-q", "maxq"))
    return "".join(w for w in words if w and w not in NOISE and not re.fullmatch(r"\d+gb", w))


@lru_cache(maxsize=1)
def load_gpus(path: Path = GPUS_TOML) -> tuple[Gpu, ...]:
    """Every GPU of the table, in file order (oldest architecture first)."""
    table = tomllib.loads(path.read_text())
    out = []
    for number, entry in enumerate(table.get("gpu", []), 1):
        if not {"name", "sm"} <= entry.keys() or not re.fullmatch(r"sm_\d{2,3}", entry["sm"]):
            raise ValueError(f"{path}: gpu entry {number} needs a name and an sm like 'sm_86' (got {entry!r})")
        out.append(Gpu(name=entry["name"], sm=entry["sm"], vram_gib=entry.get("vram_gib"),
                       aliases=tuple(entry.get("aliases", ())), jetson=bool(entry.get("jetson", False)),
                       host=entry.get("host", "any")))
    return tuple(out)


@lru_cache(maxsize=1)
def _keys() -> dict[str, Gpu]:
    """Normalised spelling -> GPU. Names and aliases first; then each name without its leading "rtx"/"gtx" (so
    "5090" finds the RTX 5090) where that shorter key is not shared by two GPUs."""
    keys: dict[str, Gpu] = {}
    for gpu in load_gpus():
        for spelling in (gpu.name, *gpu.aliases):
            keys.setdefault(normalise(spelling), gpu)
    short: dict[str, set[Gpu]] = {}
    for gpu in load_gpus():
        for spelling in (gpu.name, *gpu.aliases):
            key = re.sub(r"^(rtx|gtx)", "", normalise(spelling))
            short.setdefault(key, set()).add(gpu)
    for key, found in short.items():
        if len(found) == 1 and key not in keys and len(key) >= 3:
            keys[key] = next(iter(found))
    return keys


def arch_gpu(sm: str) -> Gpu:
    """A GPU standing for a whole architecture ("sm_75"): Jetson or Arm-only when every known GPU of it is."""
    known = [g for g in load_gpus() if g.sm == sm]
    jetson = bool(known) and all(g.jetson for g in known)
    host = "aarch64" if known and all(g.host == "aarch64" for g in known) else "any"
    return Gpu(name=f"any {sm} GPU", sm=sm, jetson=jetson, host=host,
               aliases=tuple(g.name for g in known))


def find_gpu(text: str) -> Gpu | None:
    """The GPU a user means, or None when the text names none we know (see the module docstring)."""
    raw = text.strip().lower()
    arch = ARCH_TEXT.match(raw.replace("sm_", "sm").replace("compute_", "compute"))
    if arch and (raw.startswith(("sm", "compute", "cc", "capability")) or "." in raw):
        return arch_gpu(f"sm_{int(arch.group(1))}{arch.group(2)}")
    key = normalise(text)
    if not key:
        return None
    keys = _keys()
    if key in keys:
        return keys[key]
    # "NVIDIA GeForce RTX 4090 D", "Tesla V100-SXM2-16GB-LS": the longest known key the text starts with,
    # where the next character is not a digit (so "a1000" is not the "a100")
    starts = [k for k in keys if key.startswith(k) and not key[len(k)].isdigit()]
    return keys[max(starts, key=len)] if starts else None


def archs() -> list[str]:
    """Every architecture of the table, oldest first."""
    return sorted({g.sm for g in load_gpus()}, key=lambda sm: int(sm[3:]))


@lru_cache(maxsize=1)
def names_by_arch() -> dict[str, str]:
    """`sm_86` -> "RTX 3060, RTX 3090, A10, ..." (short names, for page headings)."""
    out: dict[str, list[str]] = {}
    for gpu in load_gpus():
        short = re.sub(r"^(GeForce |Tesla |Quadro )", "", gpu.name)
        out.setdefault(gpu.sm, []).append(short)
    return {sm: ", ".join(names) for sm, names in sorted(out.items(), key=lambda kv: int(kv[0][3:]))}
