"""GPU memory in the probe: emulated VRAM budgets, peaks per GPU, `max_memory` per GPU, where layers landed.
Stdlib at import (it runs in the cell's interpreter); torch is passed in."""

from __future__ import annotations

import re
from pathlib import Path

GIB = 1024**3
MIB = 1024**2


def emulate_budget(torch, gpus: list[int], budget: float) -> list:
    """Emulate cards of `budget` GiB: on every GPU, fill the rest so mem_get_info (what device_map="auto"
    reads) and the allocator both see `budget` GiB of card, less the CUDA context a real card also carries."""
    ballast = []
    for i in gpus:
        free, total = torch.cuda.mem_get_info(i)
        fill = int(total - budget * GIB)
        if fill < 0:
            raise RuntimeError(f"cannot emulate {budget} GiB on GPU {i}: the card has {total / GIB:.1f} GiB")
        if fill > free:
            raise RuntimeError(f"cannot emulate {budget} GiB on GPU {i}: only {free / GIB:.1f} GiB free")
        ballast.append(torch.empty(fill, dtype=torch.uint8, device=f"cuda:{i}"))
    return ballast


def gpu_peaks(torch, base: dict[int, int], name: str) -> dict[str, float]:
    """Peak allocated by torch since the reset, summed over GPUs, plus one figure per GPU when there are several."""
    peaks = {i: (torch.cuda.max_memory_allocated(i) - start) / MIB for i, start in base.items()}
    out = {name: round(sum(peaks.values()), 1)}
    if len(peaks) > 1:
        out.update({f"{name}_gpu{i}": round(v, 1) for i, v in peaks.items()})
    return out


def expand_max_memory(kwargs: dict, gpu_count: int, checkpoint: Path) -> dict:
    """Recipes are data and do not know the GPU count: `max_memory = {each_gpu = X, ...}` becomes one entry
    per GPU. X is a size ("6GiB") or "even": the 4-bit model's estimated size split evenly over the GPUs,
    plus 1 GiB for buffers (fp16 checkpoint bytes / 3: linears shrink 4x, embeddings and norms do not)."""
    wanted = kwargs.get("max_memory")
    if not isinstance(wanted, dict) or "each_gpu" not in wanted:
        return kwargs
    rest = {k: v for k, v in wanted.items() if k != "each_gpu"}
    each = wanted["each_gpu"]
    if each == "even":
        size = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
        each = f"{(size / 3 / max(gpu_count, 1) + GIB) / GIB:.1f}GiB"
    return {**kwargs, "max_memory": {**{i: each for i in range(gpu_count)}, **rest}}


def layers_per_device(device_map: dict, n_layers: int) -> dict[str, int]:
    """Where the decoder layers landed: device -> number of layers. Entries for a parent module ("", "model",
    "model.layers") place every layer not listed on its own."""
    counts: dict[str, int] = {}
    whole = None
    for name, device in device_map.items():
        if re.fullmatch(r"(model\.)?layers\.\d+", name):
            counts[str(device)] = counts.get(str(device), 0) + 1
        elif name in ("", "model", "model.layers", "layers"):
            whole = str(device)
    if whole is not None and sum(counts.values()) < n_layers:
        counts[whole] = counts.get(whole, 0) + n_layers - sum(counts.values())
    return counts
