"""Predictions from the committed wheel and torch readings, the agreement with measured cells, the GPUs page."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest

from matrix.publish import gpus as gpus_page, render
from matrix.predict import predict, torch_builds, wheels

AXES_BUILDS = {"2.11.0+cu130": {"variant": "cu130"}, "2.11.0+cu128": {"variant": "cu128"},
               "2.13.0+cpu": {"variant": "cpu"}}


@pytest.fixture(scope="module")
def readings() -> list[dict]:
    return wheels.load_cache()


@pytest.fixture(scope="module")
def builds() -> list[dict]:
    return predict.torch_build_list(torch_builds.load_builds(), AXES_BUILDS)


def build(builds: list[dict], name: str) -> dict:
    return next(b for b in builds if b["build"] == name)


def wheel(readings: list[dict], release: str) -> dict:
    return next(w for w in readings if w["release"] == release and w["platform"] == "linux-x86_64")


def test_compatibility_rules() -> None:
    assert predict.sass_runs_on("sm_80", "sm_86") and predict.sass_runs_on("sm_86", "sm_89")
    assert not predict.sass_runs_on("sm_90", "sm_100") and not predict.sass_runs_on("sm_86", "sm_80")
    assert predict.ptx_jits_on("compute_75", "sm_120") and not predict.ptx_jits_on("compute_90", "sm_86")


def test_torch_builds_were_read_from_their_wheels(builds: list[dict]) -> None:
    cu130 = build(builds, "2.11.0+cu130")
    assert cu130["cuda"] == "13.0" and "sm_90" in cu130["archs"] and "sm_60" not in cu130["archs"]
    cu128 = build(builds, "2.11.0+cu128")  # an axes build from the PyTorch index: CUDA from its variant only
    assert cu128["cuda"] == "12.8" and cu128["archs"] is None
    assert not any(b["build"] == "2.13.0+cpu" for b in builds)


def test_release_without_the_cuda_library(readings: list[dict], builds: list[dict]) -> None:
    cell = predict.predict_cell("sm_90", build(builds, "2.11.0+cu130"), wheel(readings, "0.45.5"))
    assert (cell["verdict"], cell["signature"], cell["library"]) == (
        "no-library", "native-library-missing", "libbitsandbytes_cuda130")
    assert "CPU library" in cell["reason"]  # 0.45.5's own source falls back to the CPU library


def test_release_that_loads_on_h100(readings: list[dict], builds: list[dict]) -> None:
    cell = predict.predict_cell("sm_90", build(builds, "2.11.0+cu130"), wheel(readings, "0.50.2"))
    assert cell["verdict"] == "loads" and "sm_90" in cell["reason"] and cell["signature"] is None


def test_torch_without_kernels_for_the_gpu(readings: list[dict], builds: list[dict]) -> None:
    cell = predict.predict_cell("sm_60", build(builds, "2.11.0+cu130"), wheel(readings, "0.50.2"))
    assert (cell["verdict"], cell["signature"]) == ("torch-unsupported", "no-kernel-image")


def test_unknown_torch_arch_list_never_claims_a_load(readings: list[dict], builds: list[dict]) -> None:
    cell = predict.predict_cell("sm_90", build(builds, "2.11.0+cu128"), wheel(readings, "0.50.2"))
    assert cell["verdict"] == "unknown" and "arch list is unknown" in cell["reason"]


def test_no_kernel_when_the_library_stops_before_the_gpu() -> None:
    lib: dict[str, Any] = {"name": "libbitsandbytes_cuda124.so", "cuda": "12.4", "nocublaslt": False,
           "fatbin": {"sass": ["sm_80", "sm_90"], "ptx": [], "error": None},
           "cuobjdump": {"sass": ["sm_80", "sm_90"], "ptx": [], "error": None}}
    rule_lines = wheels.load_cache()[0]["loader"]
    fake = {"release": "9.9", "platform": "linux-x86_64", "libraries": [lib], "loader": rule_lines}
    torch = {"build": "t", "cuda": "12.4", "archs": ["sm_80", "sm_90", "sm_120"]}
    if predict.loader_rules.rule(rule_lines)["template"] == "unknown":
        fake["loader"] = next(w for w in wheels.load_cache() if w["release"] == "0.45.5")["loader"]
    cell = predict.predict_cell("sm_120", torch, fake)
    assert (cell["verdict"], cell["signature"]) == ("no-kernel", "no-kernel-image")
    lib["fatbin"]["ptx"] = lib["cuobjdump"]["ptx"] = ["compute_90"]
    assert predict.predict_cell("sm_120", torch, fake)["verdict"] == "loads-ptx-jit"


def test_agreement_with_measured_cells(readings: list[dict], builds: list[dict]) -> None:
    preds = predict.predictions(readings, builds)
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


def test_cell_prediction_for_a_measured_cell(readings: list[dict], builds: list[dict]) -> None:
    preds = predict.predictions(readings, builds)
    cell = gpus_page.cell_prediction(preds, "9.0", "2.11.0+cu130", "0.48.2")
    assert cell is not None and cell["verdict"] == "loads"
    assert gpus_page.cell_prediction(preds, "", "2.13.0+cpu", "0.48.2") is None


def test_exports_are_tidy(readings: list[dict], builds: list[dict]) -> None:
    table = pd.read_csv(io.BytesIO(gpus_page.binaries_csv(readings)))
    assert list(table.columns[:7]) == ["release", "platform", "library", "backend", "cuda", "kind", "arch"]
    assert set(table.kind) <= {"sass", "ptx", "unknown"} and set(table.status) <= {"compiled", "unknown"}
    assert not table.duplicated(["release", "platform", "library", "kind", "arch", "section"]).any()
    preds = pd.read_csv(io.BytesIO(gpus_page.predictions_csv(predict.predictions(readings, builds))))
    assert not preds.duplicated(["gpu_arch", "torch", "bnb"]).any()
    assert set(preds.verdict) <= set(predict.VERDICTS)
    assert {"sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"} <= set(preds.gpu_arch)


def test_gpus_page_renders_marked_as_predicted(readings: list[dict], builds: list[dict]) -> None:
    latest = pd.DataFrame([{"runner": "h100-sm90", "runner_compute_capability": "9.0", "torch": "2.11.0+cu130",
                            "bnb": "0.50.2", "outcome": "pass", "signature": ""}])
    ctx = gpus_page.gpus_context(readings, builds, latest, axes_names=list(AXES_BUILDS))
    env = render.environment()
    catalogue = render.load_catalogue()
    env.globals.update(signatures=catalogue, known_error=lambda s: s if s in catalogue else "unclassified",
                       has_fix_page=lambda name: True)
    text = env.get_template("gpus.md.j2").render(here="gpus/", **ctx)
    assert "predicted from the binaries" in text
    assert "errors/unclassified" not in text  # a cell that loads links no error page
    assert "RTX 50xx" in text and "(sm-120/index.md)" in text  # the index links each architecture's grid
    grid = next(g for g in ctx["grid"] if g["arch"] == "sm_120")
    arch_page = env.get_template("gpu.md.j2").render(here="gpus/sm-120/", g=grid, builds=ctx["builds"])
    assert f"# {render.md('sm_120')}: RTX 50xx" in arch_page and "Predicted, not measured" in arch_page
    assert "| [h100-sm90](" in text and "| yes |" in text
    assert str(render.md("libbitsandbytes_cuda130.so")) in text
