"""The GPU table and the names users type (matrix.predict.gpus)."""

from __future__ import annotations

import pytest

from matrix.predict import gpus


@pytest.mark.parametrize(("text", "name", "sm"), [
    ("5090", "GeForce RTX 5090", "sm_120"), ("rtx5090", "GeForce RTX 5090", "sm_120"),
    ("Tesla T4", "Tesla T4", "sm_75"), ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", "sm_89"),
    ("NVIDIA A100-SXM4-80GB", "A100", "sm_80"), ("NVIDIA H100 80GB HBM3", "H100", "sm_90"),
    ("Tesla V100-SXM2-16GB", "Tesla V100", "sm_70"), ("A10", "A10", "sm_86"), ("a10g", "A10G", "sm_86"),
    ("GTX 1080", "GeForce GTX 1080", "sm_61"), ("1660", "GeForce GTX 1660", "sm_75"),
    ("P40", "Tesla P40", "sm_61"), ("L40S", "L40S", "sm_89"), ("GB200", "GB200", "sm_100"),
    ("Orin", "Jetson AGX Orin", "sm_87"), ("NVIDIA GB10", "DGX Spark", "sm_121"),
    ("Jetson Thor", "Jetson AGX Thor", "sm_110"), ("rtx a6000", "RTX A6000", "sm_86"),
    ("NVIDIA GeForce RTX 3060 Ti", "GeForce RTX 3060", "sm_86"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "RTX PRO 6000 Blackwell", "sm_120"),
])
def test_names_users_type(text: str, name: str, sm: str) -> None:
    gpu = gpus.find_gpu(text)
    assert gpu is not None and (gpu.name, gpu.sm) == (name, sm)


@pytest.mark.parametrize(("text", "sm"), [("sm_75", "sm_75"), ("sm75", "sm_75"), ("8.6", "sm_86"),
                                          ("compute capability 12.1", "sm_121"), ("sm_90a", "sm_90")])
def test_architectures(text: str, sm: str) -> None:
    gpu = gpus.find_gpu(text)
    assert gpu is not None and gpu.sm == sm and gpu.name == f"any {sm} GPU"


def test_unknown_and_lookalikes() -> None:
    assert gpus.find_gpu("banana") is None and gpus.find_gpu("") is None
    assert gpus.find_gpu("A1000") is None  # not the A100
    assert gpus.find_gpu("A100").sm == "sm_80" and gpus.find_gpu("A10").sm == "sm_86"  # type: ignore[union-attr]


def test_jetson_and_arm_hosts() -> None:
    orin = gpus.arch_gpu("sm_87")
    assert orin.jetson and orin.host == "aarch64"
    assert gpus.find_gpu("DGX Spark").host == "aarch64" and not gpus.find_gpu("DGX Spark").jetson  # type: ignore[union-attr]
    assert not gpus.arch_gpu("sm_90").jetson and gpus.arch_gpu("sm_90").host == "any"  # H100 on x86, GH200 on Arm


def test_table_spans_sm50_to_sm121() -> None:
    archs = gpus.archs()
    assert {"sm_50", "sm_52", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90",
            "sm_100", "sm_103", "sm_110", "sm_120", "sm_121"} <= set(archs)
    assert archs[0] == "sm_50" and archs[-1] == "sm_121"
    assert gpus.find_gpu("B200").capability == (10, 0)  # type: ignore[union-attr]
