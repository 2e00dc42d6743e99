"""Multi-GPU logic of the probe on emulated devices (no GPU needed): per-GPU budgets, per-GPU peaks,
max_memory for every GPU, and where the decoder layers landed. Real two-GPU records need a two-GPU runner."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from matrix.measure import gpu_memory, runner
from matrix.measure.axes import load_axes

GIB = 1024**3


class FakeCuda:
    """torch.cuda as far as the probe uses it, for `n` cards of `total` bytes."""

    def __init__(self, n: int, total: int = 80 * GIB) -> None:
        self.total, self.used = total, [1 * GIB] * n  # a CUDA context's worth already in use
        self.peak = [0] * n

    def mem_get_info(self, i: int) -> tuple[int, int]:
        return self.total - self.used[i], self.total

    def max_memory_allocated(self, i: int) -> int:
        return self.peak[i]


def fake_torch(n: int) -> SimpleNamespace:
    cuda = FakeCuda(n)

    def empty(size: int, dtype=None, device: str = "cuda:0"):
        i = int(device.split(":")[1])
        cuda.used[i] += size
        return SimpleNamespace(numel=lambda: size, device=device)

    return SimpleNamespace(cuda=cuda, empty=empty, uint8="uint8")


def test_budget_is_emulated_on_every_gpu():
    torch = fake_torch(2)
    ballast = gpu_memory.emulate_budget(torch, [0, 1], 6)
    assert [b.device for b in ballast] == ["cuda:0", "cuda:1"]
    for i in (0, 1):
        free, total = torch.cuda.mem_get_info(i)
        assert free == 6 * GIB - 1 * GIB  # what device_map="auto" sees: the budget less the context


def test_budget_larger_than_the_free_memory_is_refused():
    with pytest.raises(RuntimeError, match="cannot emulate 90 GiB on GPU 0: the card has 80.0 GiB"):
        gpu_memory.emulate_budget(fake_torch(1), [0], 90)
    busy = fake_torch(2)
    busy.cuda.used[1] = 78 * GIB  # another process holds most of GPU 1
    with pytest.raises(RuntimeError, match="cannot emulate 6 GiB on GPU 1: only 2.0 GiB free"):
        gpu_memory.emulate_budget(busy, [0, 1], 6)


def test_peaks_are_summed_and_kept_per_gpu_when_there_are_several():
    torch = fake_torch(2)
    torch.cuda.peak = [3 * GIB, 2 * GIB]
    peaks = gpu_memory.gpu_peaks(torch, {0: 1 * GIB, 1: 0}, "gpu_load_peak")
    assert peaks == {"gpu_load_peak": 4096.0, "gpu_load_peak_gpu0": 2048.0, "gpu_load_peak_gpu1": 2048.0}
    assert gpu_memory.gpu_peaks(torch, {0: 0}, "gpu_load_peak") == {"gpu_load_peak": 3072.0}


def test_max_memory_each_gpu_expands_per_gpu(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\0" * (6 * 1024**2))
    kwargs = {"device_map": "auto", "max_memory": {"each_gpu": "even", "cpu": "64GiB"}}
    two = gpu_memory.expand_max_memory(kwargs, 2, tmp_path)["max_memory"]
    assert set(two) == {0, 1, "cpu"} and two[0] == two[1] == "1.0GiB" and two["cpu"] == "64GiB"
    fixed = gpu_memory.expand_max_memory({"max_memory": {"each_gpu": "5GiB"}}, 3, tmp_path)
    assert fixed["max_memory"] == {0: "5GiB", 1: "5GiB", 2: "5GiB"}
    assert gpu_memory.expand_max_memory({"device_map": "auto"}, 2, tmp_path) == {"device_map": "auto"}


def test_layers_per_device_reads_accelerates_device_map():
    sharded = {"model.embed_tokens": 0, **{f"model.layers.{i}": 0 for i in range(14)},
               **{f"model.layers.{i}": 1 for i in range(14, 32)}, "model.norm": 1, "lm_head": 1}
    assert gpu_memory.layers_per_device(sharded, 32) == {"0": 14, "1": 18}
    assert gpu_memory.layers_per_device({"": 0}, 32) == {"0": 32}
    assert gpu_memory.layers_per_device({"model.layers": 0, "lm_head": "cpu"}, 16) == {"0": 16}


def test_runner_slug_keys_cells_by_gpu_count(monkeypatch):
    gpu = {"name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "driver": "580", "memory_mib": "81559"}
    monkeypatch.setattr(runner, "_nvidia_smi", lambda: [gpu, gpu])
    facts = runner.runner_facts()
    assert facts["slug"] == "2x-h100-sm90" and facts["gpu_count"] == 2 and len(facts["gpus"]) == 2
    assert runner.gpu_count(facts["slug"]) == 2
    monkeypatch.setattr(runner, "_nvidia_smi", lambda: [gpu])
    assert runner.runner_facts()["slug"] == "h100-sm90" and runner.gpu_count("h100-sm90") == 1
    assert runner.gpu_count("cpu-x86_64") == 0


def test_the_multi_gpu_profile_compares_plain_auto_and_balanced():
    profile = load_axes().profile("multi-gpu")
    assert {"plain", "seed-fix", "balanced"} <= set(profile.recipes)
    assert "8b" in profile.budget_shapes and min(profile.budgets_gib) < 5.5  # 8B in 4-bit is about 5.5 GiB
