"""Predictions from the committed wheel and torch readings, the agreement with measured cells, the GPUs page."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest
from packaging.version import Version

from matrix.publish import gpus as gpus_page, render
from matrix.predict import gpus, predict, torch_builds, wheels

AXES_BUILDS = {"2.11.0+cu130": {"variant": "cu130"}, "2.11.0+cu128": {"variant": "cu128"},
               "2.13.0+cpu": {"variant": "cpu"}}


@pytest.fixture(scope="module")
def readings() -> list[dict]:
    return wheels.load_cache()


@pytest.fixture(scope="module")
def builds() -> list[dict]:
    return torch_builds.all_builds(torch_builds.load_builds(), AXES_BUILDS)


@pytest.fixture(scope="module")
def preds(readings: list[dict], builds: list[dict]) -> pd.DataFrame:
    return predict.predictions(readings, builds)


def card(name: str) -> gpus.Gpu:
    found = gpus.find_gpu(name)
    assert found is not None, name
    return found


def build(builds: list[dict], name: str, platform: str = "linux-x86_64") -> dict:
    return next(b for b in builds if b["build"] == name and b["platform"] == platform)


def wheel(readings: list[dict], release: str, platform: str = "linux-x86_64") -> dict:
    return next(w for w in readings if w["release"] == release and w["platform"] == platform)


def test_compatibility_rules() -> None:
    assert predict.sass_runs_on("sm_80", "sm_86") and predict.sass_runs_on("sm_86", "sm_89")
    assert predict.sass_runs_on("sm_120", "sm_121") and predict.sass_runs_on("sm_80", "sm_87")
    assert not predict.sass_runs_on("sm_90", "sm_100") and not predict.sass_runs_on("sm_86", "sm_80")
    assert predict.ptx_jits_on("compute_75", "sm_120") and not predict.ptx_jits_on("compute_90", "sm_86")


def test_torch_builds_read_scripted_and_reported(builds: list[dict]) -> None:
    default = build(builds, "2.6.0")  # PyPI's default: read from its wheel, it is the CUDA 12.4 build
    assert default["cuda"] == "12.4" and default["archs_kind"] == "read" and "sm_50" in default["archs"]
    twin = build(builds, "2.11.0+cu130")  # an axes name for PyPI's 2.11.0: the same read facts
    assert twin["archs_kind"] == "read" and "sm_90" in twin["archs"] and "sm_60" not in twin["archs"]
    cu128 = build(builds, "2.11.0+cu128")  # PyTorch's index: the arch list as reported in pytorch#182250
    assert cu128["cuda"] == "12.8" and cu128["archs_kind"] == "reported" and "sm_70" not in cu128["archs"]
    older = build(builds, "2.3.0+cu118")  # from pytorch/builder's release/2.3 build script
    assert older["archs_kind"] == "build-script" and "release/2.3" in older["archs_source"]
    assert not any(b["build"] == "2.13.0+cpu" for b in builds)
    windows = [b for b in builds if b["platform"] == "windows-x86_64"]
    assert windows and all(b["index"] == "pytorch" for b in windows)  # PyPI's Windows torch is a CPU build
    assert any(b["platform"] == "linux-aarch64" and b["index"] == "pypi" for b in builds)


def test_pypi_defaults_and_linux_unknown_share(preds: pd.DataFrame) -> None:
    pypi = preds[preds.torch_index == "pypi"]
    assert len(pypi) and not (pypi.verdict == "unknown").any()
    linux = preds[(preds.platform == "linux-x86_64") & preds.bnb.map(lambda v: Version(v) >= Version("0.43.1"))]
    assert (linux.verdict == "unknown").mean() < 0.03
    for release in ("0.41.3", "0.42.0"):
        assert (preds[preds.bnb == release].verdict != "unknown").mean() > 0.9
    assert {"linux-x86_64", "linux-aarch64", "windows-x86_64"} <= set(preds.platform)
    assert {"sm_50", "sm_87", "sm_100", "sm_120", "sm_121"} <= set(preds.gpu_arch)


def test_release_without_the_cuda_library(readings: list[dict], builds: list[dict]) -> None:
    cell = predict.predict_cell("sm_90", build(builds, "2.11.0+cu130"), wheel(readings, "0.45.5"))
    assert (cell["verdict"], cell["signature"], cell["library"]) == (
        "no-library", "native-library-missing", "libbitsandbytes_cuda130")
    assert "CPU library" in cell["reason"]  # 0.45.5's own source falls back to the CPU library
    assert [step["step"] for step in cell["chain"]] == ["torch", "loader", "wheel"]


def test_release_that_loads_on_h100(readings: list[dict], builds: list[dict]) -> None:
    cell = predict.predict_cell(card("NVIDIA H100 80GB HBM3"), build(builds, "2.11.0+cu130"),
                                wheel(readings, "0.50.2"))
    assert cell["verdict"] == "loads" and "sm_90" in cell["reason"] and cell["signature"] is None
    assert any(step["step"] == "driver" and "580" in step["fact"] for step in cell["chain"])


def test_the_loader_in_full(readings: list[dict], builds: list[dict]) -> None:
    v100 = card("Tesla V100")
    cell = predict.predict_cell(v100, build(builds, "2.4.0+cu124"), wheel(readings, "0.43.3"), bnb_cuda_version="124")
    assert cell["library"] == "libbitsandbytes_cuda124_nocublaslt124" and cell["verdict"] == "no-library"
    plain = predict.predict_cell(v100, build(builds, "2.4.0+cu124"), wheel(readings, "0.43.3"))
    assert plain["library"] == "libbitsandbytes_cuda124_nocublaslt"
    later = predict.predict_cell(v100, build(builds, "2.4.0+cu124"), wheel(readings, "0.44.1"), bnb_cuda_version="121")
    assert later["library"] == "libbitsandbytes_cuda121_nocublaslt"  # 0.44 replaces cudaXYZ inside the name
    older = predict.predict_cell("sm_80", build(builds, "2.6.0"), wheel(readings, "0.42.0"))
    assert older["verdict"] == "setup-failed" and older["signature"] == "cuda-setup-failed"
    system = predict.predict_cell("sm_80", build(builds, "2.6.0"), wheel(readings, "0.39.1"))
    assert system["verdict"] == "no-library" and system["signature"] == "compiled-without-gpu"  # no system CUDA
    assert predict.predict_cell("sm_80", build(builds, "2.6.0"), wheel(readings, "0.39.1"),
                                system_cuda="12.2")["verdict"] == "setup-failed"  # no cuda122 library in 0.39.1


def test_glibc_floor(readings: list[dict], builds: list[dict]) -> None:
    old = predict.predict_cell("sm_86", build(builds, "2.7.0"), wheel(readings, "0.45.5"), glibc="2.31")
    assert old["library"] == "libbitsandbytes_cuda126" and old["glibc_floor"] == "2.34"
    assert old["verdict"] == "glibc-too-old" and "GLIBC_2.34" in old["reason"]
    assert predict.predict_cell("sm_86", build(builds, "2.7.0"), wheel(readings, "0.45.5"),
                                glibc="2.35")["verdict"] == "loads"


def test_driver_and_jetson(readings: list[dict], builds: list[dict]) -> None:
    old = predict.predict_cell("sm_90", build(builds, "2.11.0+cu130"), wheel(readings, "0.50.2"), driver="550.54.15")
    assert old["verdict"] == "driver-too-old" and "580" in old["reason"]
    orin = [w for w in readings if w["release"] == "0.50.2" and w["platform"] == "linux-aarch64"][0]
    arm = next(b for b in builds if b["platform"] == "linux-aarch64" and b.get("archs"))
    cell = predict.predict_cell(card("Jetson AGX Orin"), arm, orin)
    assert cell["verdict"] == "l4t-abi" and "named symbol not found" in cell["reason"]
    spark = predict.predict_cell(card("DGX Spark"), arm, orin)
    assert spark["verdict"] != "l4t-abi"


def test_torch_without_kernels_for_the_gpu(readings: list[dict], builds: list[dict]) -> None:
    cell = predict.predict_cell("sm_60", build(builds, "2.11.0+cu130"), wheel(readings, "0.50.2"))
    assert (cell["verdict"], cell["signature"]) == ("torch-unsupported", "no-kernel-image")


def test_unknown_torch_arch_list_never_claims_a_load(readings: list[dict]) -> None:
    torch = {"build": "x", "cuda": "13.0", "archs": None, "archs_kind": "unknown", "archs_source": "none"}
    cell = predict.predict_cell("sm_90", torch, wheel(readings, "0.50.2"))
    assert cell["verdict"] == "unknown" and "arch list is unknown" in cell["reason"]


def test_no_kernel_when_the_library_stops_before_the_gpu(readings: list[dict]) -> None:
    lib: dict[str, Any] = {"name": "libbitsandbytes_cuda124.so", "cuda": "12.4", "nocublaslt": False,
                           "fatbin": {"sass": ["sm_80", "sm_90"], "ptx": [], "error": None},
                           "cuobjdump": {"sass": ["sm_80", "sm_90"], "ptx": [], "error": None}}
    real = wheel(readings, "0.45.5")
    fake = {"release": "0.45.5", "platform": "linux-x86_64", "libraries": [lib], "loader": real["loader"]}
    torch = {"build": "t", "cuda": "12.4", "archs": ["sm_80", "sm_90", "sm_120"]}
    cell = predict.predict_cell("sm_120", torch, fake)
    assert (cell["verdict"], cell["signature"]) == ("no-kernel", "no-kernel-image")
    lib["fatbin"]["ptx"] = lib["cuobjdump"]["ptx"] = ["compute_90"]
    assert predict.predict_cell("sm_120", torch, fake)["verdict"] == "loads-ptx-jit"


def test_agreement_with_measured_cells(preds: pd.DataFrame) -> None:
    base = {"runner": "h100-sm90", "runner_compute_capability": "9.0", "torch": "2.11.0+cu130"}
    latest = pd.DataFrame([
        {**base, "bnb": "0.50.2", "outcome": "pass", "signature": "", "stage": ""},
        {**base, "bnb": "0.50.2", "outcome": "fail", "signature": "cuda-oom", "stage": "load"},
        {**base, "bnb": "0.47.0", "outcome": "fail", "signature": "native-library-missing", "stage": "load"},
        {**base, "bnb": "0.45.5", "outcome": "fail", "signature": "bnb-too-old", "stage": "load"},
        {**base, "bnb": "0.48.2", "outcome": "fail", "signature": "no-kernel-image", "stage": "load"},
        # an import that failed before any library was loaded (triton) says nothing about the library
        {**base, "bnb": "0.44.1", "outcome": "fail", "signature": "triton-ops-missing", "stage": "import"},
        {"runner": "cpu", "runner_compute_capability": None, "torch": "2.13.0+cpu", "bnb": "0.50.2",
         "outcome": "pass", "signature": "", "stage": ""},
    ])
    rows = {r["bnb"]: r for r in gpus_page.agreement(latest, preds)}
    assert set(rows) == {"0.50.2", "0.47.0", "0.45.5", "0.48.2", "0.44.1"}
    assert rows["0.44.1"]["measured"] == "stopped before loading" and rows["0.44.1"]["agrees"] == "not comparable"
    assert rows["0.50.2"]["agrees"] == "yes"
    assert rows["0.47.0"]["agrees"] == "yes" and rows["0.47.0"]["predicted"] == "no-library"
    assert rows["0.45.5"]["agrees"] == "not comparable" and "bnb-too-old" in rows["0.45.5"]["why"]
    assert rows["0.48.2"]["agrees"] == "no" and "predicted loads" in rows["0.48.2"]["why"]


def test_cell_prediction_for_a_measured_cell(preds: pd.DataFrame) -> None:
    cell = gpus_page.cell_prediction(preds, "9.0", "2.11.0+cu130", "0.48.2")
    assert cell is not None and cell["verdict"] == "loads"
    assert gpus_page.cell_prediction(preds, "", "2.13.0+cpu", "0.48.2") is None


def test_exports_are_tidy(readings: list[dict], preds: pd.DataFrame) -> None:
    table = pd.read_csv(io.BytesIO(gpus_page.binaries_csv(readings)))
    assert list(table.columns[:7]) == ["release", "platform", "library", "backend", "cuda", "kind", "arch"]
    assert set(table.kind) <= {"sass", "ptx", "unknown"} and set(table.status) <= {"compiled", "unknown"}
    assert not table.duplicated(["release", "platform", "library", "kind", "arch", "section"]).any()
    table = pd.read_csv(io.BytesIO(gpus_page.predictions_csv(preds)))
    assert not table.duplicated(["gpu_arch", "torch", "bnb", "platform"]).any()
    assert not table.reason.str.contains("/tmp/|Invalid ELF|exit [0-9]", regex=True).any()  # no tool text or path
    assert set(table.verdict) <= set(predict.VERDICTS)
    assert {"sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"} <= set(table.gpu_arch)


def test_gpus_page_renders_marked_as_predicted(readings: list[dict], builds: list[dict], preds: pd.DataFrame) -> None:
    latest = pd.DataFrame([{"runner": "h100-sm90", "runner_compute_capability": "9.0", "torch": "2.11.0+cu130",
                            "bnb": "0.50.2", "outcome": "pass", "signature": ""}])
    ctx = gpus_page.gpus_context(readings, builds, latest, axes_names=list(AXES_BUILDS), preds=preds)
    env = render.environment()
    catalogue = render.load_catalogue()
    env.globals.update(signatures=catalogue, known_error=lambda s: s if s in catalogue else "unclassified",
                       has_fix_page=lambda name: True)
    text = env.get_template("gpus.md.j2").render(here="gpus/", **ctx)
    assert "predicted from the binaries" in text
    assert "errors/unclassified" not in text  # a cell that loads links no error page
    assert "RTX 5090" in text and "(sm-120/index.md)" in text  # the index links each architecture's grid
    grid = next(g for g in ctx["grid"] if g["arch"] == "sm_120")
    arch_page = env.get_template("gpu.md.j2").render(here="gpus/sm-120/", g=grid, builds=ctx["builds"])
    assert "RTX 5090" in arch_page and "Predicted, not measured" in arch_page
    assert "## Reported" in arch_page and "issues/1510" in arch_page  # the RTX 5090 report beside its prediction
    assert "Reported in issue threads" in text and "agree" in text
    assert "| [h100-sm90](" in text and "| yes |" in text
    assert str(render.md("libbitsandbytes_cuda130.so")) in text
