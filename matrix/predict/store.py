"""Where the predicted layer keeps what it read: `results/binaries/` (bitsandbytes wheel readings by sha256,
torch builds under `torch/`), committed so that a site build needs no network."""

from __future__ import annotations

from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parents[2] / "results" / "binaries"
TORCH_CACHE = CACHE_DIR / "torch"
