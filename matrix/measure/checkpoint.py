"""The probe's checkpoints: a random-weight Llama per shape, made once per machine in a child process and
cached. Stdlib at import (it runs in the cell's interpreter); torch and transformers inside functions.

Run as `python -m matrix.measure.checkpoint SHAPE_JSON DIR` (the probe does this).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO


def checkpoint_dir(cache: Path, shape: dict) -> Path:
    key = hashlib.sha256(json.dumps(shape["config"], sort_keys=True).encode()).hexdigest()[:12]
    return cache / f"{shape['name']}-{key}"


def make_checkpoint(shape: dict, target: Path) -> None:
    """Random-weight Llama in fp16, written by save_pretrained (same files, config and dtype as a saved model).

    The model is built on the meta device (names and shapes only, no init kernels) and its weights are drawn in
    bulk, on the GPU when there is one, with the distribution Llama's own init uses (normal(0, 0.02) for
    matrices and embeddings, ones for norms); save_pretrained then writes that state dict.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape["config"], max_position_embeddings=2048, tie_word_embeddings=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_default_dtype(torch.float16)  # save_pretrained records the weights' dtype in config.json
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    generator = torch.Generator(device).manual_seed(0)
    state = {}
    for name, meta in model.state_dict().items():
        if meta.dim() == 1:  # RMSNorm weights
            state[name] = torch.ones(meta.shape, dtype=torch.float16)
        else:
            values = torch.empty(meta.shape, dtype=torch.float16, device=device)
            state[name] = values.normal_(0.0, config.initializer_range, generator=generator).cpu()
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    model.save_pretrained(tmp, state_dict=state, safe_serialization=True, max_shard_size="4GB")
    tmp.rename(target)  # atomic: a half-written checkpoint is never found under the final name


class CheckpointMaker:
    """The cached checkpoint of a shape, made if needed in a child process (no CUDA in this parent) that runs
    while the parent imports torch and transformers: `start()` first, `wait()` when the path is needed."""

    def __init__(self, shape: dict, cache: Path, timeout: float) -> None:
        self.target, self.cache, self.shape, self.timeout = checkpoint_dir(cache, shape), cache, shape, timeout
        self.proc: subprocess.Popen | None = None
        self.lock: IO[str] | None = None
        self.started = 0.0

    def start(self) -> CheckpointMaker:
        import fcntl

        self.started = time.monotonic()
        if not self.target.is_dir():
            self.cache.mkdir(parents=True, exist_ok=True)
            lock = self.lock = open(self.cache / f".{self.target.name}.lock", "w")  # noqa: SIM115 - held until wait()
            fcntl.flock(lock, fcntl.LOCK_EX)  # two cells on one machine make it once
            if not self.target.is_dir():
                self.proc = subprocess.Popen([sys.executable, "-m", "matrix.measure.checkpoint",
                                              json.dumps(self.shape), str(self.target)])
        return self

    def wait(self) -> tuple[Path, float]:
        """(path, seconds since start); raises CalledProcessError / TimeoutExpired like subprocess.run."""
        try:
            if self.proc is not None:
                try:
                    code = self.proc.wait(timeout=max(1.0, self.timeout - (time.monotonic() - self.started)))
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    raise
                if code != 0:
                    raise subprocess.CalledProcessError(code, self.proc.args)
        finally:
            if self.lock is not None:
                self.lock.close()  # releases the flock
                self.lock = None
        return self.target, time.monotonic() - self.started


if __name__ == "__main__":
    make_checkpoint(json.loads(sys.argv[1]), Path(sys.argv[2]))
