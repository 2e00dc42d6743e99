"""`doctor`: the report built from records (pure, with fake records) and one real run in a cell venv (slow)."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import nox_command, nox_envdir

from matrix import urls
from matrix.diagnose import doctor
from matrix.measure import records
from matrix.measure.records import Record
from matrix.diagnose.signatures import default_catalogue

ROOT = Path(__file__).parent.parent
SITE = urls.DEFAULT_SITE_URL
CELL_VENV = "probe-torch-2-13-0-cpu-bnb-0-50-2"  # its venv, under the test session's nox folder (conftest)

RUNNER = {"slug": "cpu-x86_64", "kind": "cpu", "cpu_model": "AMD EPYC", "gpu_name": "", "driver": ""}
VERSIONS = {"python": "3.11.7", "torch": "2.13.0+cpu", "torch_cuda": None, "bitsandbytes": "0.46.1",
            "transformers": "5.24.0", "accelerate": "1.15.0"}
CELL = SITE + "cells/cpu-x86-64/torch-2.13.0-cpu/bnb-0.46.1/transformers-5.24.0/"


@pytest.fixture(autouse=True)
def _default_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BNB_MATRIX_SITE_URL", raising=False)


def rec(recipe: str, outcome: str, **kw) -> Record:
    fields = dict(run_id="doctor", timestamp="2026-11-25T00:00:00Z", runner=RUNNER,
                  requested={"torch": "installed", "bnb": "installed", "transformers": "installed"},
                  versions=VERSIONS, recipe=recipe, shape="tiny", outcome=outcome)
    fields.update(kw)
    return Record(**fields)  # type: ignore[arg-type]


PASS = rec("nf4-bf16", "pass", timings_s={"load": 1.234}, checks={"rel_error": 0.00557})
NF4 = rec("plain", "fail", stage="load", error_type="RuntimeError",
          error_message="We encountered some issues during automatic conversion of the weights. For details look at "
                        "the `CONVERSION` entries of the above report!",
          stderr_tail="RuntimeError: quant_type must be nf4 on CPU, got fp4\nError: Bnb4bitQuantize on tensors ...")
SKIP = rec("cpu-offload", "skip", skip_reason="this recipe offloads from a GPU; this runner has no GPU")
ODD = rec("seed-fix", "fail", error_type="KeyError", error_message="'model.embed_tokens'\nmore lines")
DIED = rec("plain", "crash", versions={}, error_type="ProcessDied",
           error_message="probe process died (signal 11) before measuring this recipe", stderr_tail="")
SLOW = rec("seed-fix", "pass", timings_s={"load": 2.0}, checks={"rel_error": 0.01},
           stderr_tail="UserWarning: Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype="
                       "torch.float32 (default). This will lead to slow inference or training speed.")


def test_verdict_of_a_failure_names_its_signature_and_page() -> None:
    v = doctor.verdict(NF4)
    assert (v.recipe, v.outcome, v.slug) == ("plain", "fail", "cpu-needs-nf4")
    assert v.title == default_catalogue()["cpu-needs-nf4"].title
    assert v.url == SITE + "errors/cpu-needs-nf4/"
    assert v.detail == ""  # a known signature needs no raw exception


def test_verdict_of_pass_skip_and_unknown() -> None:
    assert doctor.verdict(PASS).detail == "load 1.23 s, rel. error 0.00557"
    assert doctor.verdict(PASS).slug == ""
    assert doctor.verdict(SKIP).detail.startswith("this recipe offloads")
    odd = doctor.verdict(ODD)
    assert odd.slug == "unclassified" and odd.detail == "KeyError: 'model.embed_tokens'"
    died = doctor.verdict(DIED)
    assert died.slug == "crash" and "signal 11" in died.detail
    assert doctor.verdict(SLOW).warnings == ("slow-fp32-compute",)


def test_cell_url_uses_installed_versions_and_the_site_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.cell_url("cpu-x86_64", VERSIONS) == CELL
    assert doctor.cell_url("", {}) == SITE + "cells/unknown/torch-none/bnb-none/transformers-none/"
    monkeypatch.setenv("BNB_MATRIX_SITE_URL", "https://example.org/m")
    assert doctor.cell_url("cpu-x86_64", VERSIONS).startswith("https://example.org/m/cells/cpu-x86-64/")


def test_report_layout() -> None:
    text = doctor.format_report([NF4, PASS, SKIP, ODD, SLOW])
    lines = text.splitlines()
    assert lines[0] == "runner: cpu-x86_64 (AMD EPYC)"
    assert lines[1] == ("python 3.11.7, torch 2.13.0+cpu (CUDA -), bitsandbytes 0.46.1, transformers 5.24.0, "
                        "accelerate 1.15.0")
    assert any(ln.startswith("plain        FAIL     The CPU backend quantizes to NF4 only [cpu-needs-nf4]")
               for ln in lines)
    assert any(ln.strip() == SITE + "errors/cpu-needs-nf4/" for ln in lines)
    assert "nf4-bf16     PASS     load 1.23 s, rel. error 0.00557" in lines
    assert any(ln.startswith("cpu-offload  SKIP     this recipe offloads") for ln in lines)
    assert any(ln.strip() == "KeyError: 'model.embed_tokens'" for ln in lines)
    assert any("note: 4-bit layers compute in fp32" in ln and ln.endswith("errors/slow-fp32-compute/") for ln in lines)
    assert f"measured matrix for this combination: {CELL}" in lines


def test_paste_block_is_short_fenced_and_complete() -> None:
    text = doctor.format_report([NF4, PASS, SKIP])
    block = text.split(doctor.PASTE_START + "\n", 1)[1].split("\n" + doctor.PASTE_END, 1)[0]
    assert block.splitlines() == [
        "```text",
        "bnb-matrix doctor",
        "runner: cpu-x86_64 (AMD EPYC)",
        "python 3.11.7, torch 2.13.0+cpu (CUDA -), bitsandbytes 0.46.1, transformers 5.24.0, accelerate 1.15.0",
        f"plain: fail [cpu-needs-nf4] {SITE}errors/cpu-needs-nf4/",
        "nf4-bf16: pass",
        "cpu-offload: skip (this recipe offloads from a GPU; this runner has no GPU)",
        f"cell: {CELL}",
        "```",
    ]
    assert text.rstrip().endswith(doctor.PASTE_END)


def test_report_when_every_recipe_died() -> None:
    text = doctor.format_report([DIED])
    assert "bitsandbytes -" in text and "[crash]" in text
    assert SITE + "cells/cpu-x86-64/torch-none/bnb-none/transformers-none/" in text
    assert "no recipe was measured" in doctor.format_report([], runner=RUNNER)


def test_gpu_runner_line() -> None:
    gpu = {"slug": "h100-sm90", "gpu_name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "cpu_model": "Xeon"}
    assert doctor.environment_lines(gpu, {})[0] == "runner: h100-sm90 (NVIDIA H100 80GB HBM3, driver 580.159.04)"


def test_exit_status() -> None:
    assert doctor.exit_status([NF4, PASS, SKIP]) == 1  # plain failed
    assert doctor.exit_status([rec("plain", "pass"), dataclasses.replace(NF4, recipe="seed-fix")]) == 0
    assert doctor.exit_status([PASS, SKIP]) == 0  # plain not asked for: everything run passed
    assert doctor.exit_status([PASS, ODD]) == 1
    assert doctor.exit_status([SKIP]) == 1 and doctor.exit_status([]) == 1


def test_plan_makes_one_job_per_recipe_without_the_axes_torch_builds() -> None:
    jobs = doctor.plan(["plain", "nf4-bf16"], "tiny")
    assert [(j.recipe, j.shape, j.budget_gib) for j in jobs] == [("plain", "tiny", None), ("nf4-bf16", "tiny", None)]
    assert len({j.fingerprint for j in jobs}) == 2


def test_doctor_needs_neither_pandas_nor_jinja() -> None:
    code = ("import sys; sys.modules['pandas'] = None; sys.modules['jinja2'] = None\n"
            "import matrix.diagnose.doctor, matrix.measure.jobs, matrix.cli\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.slow
def test_real_doctor_run_in_a_cell_venv(tmp_path) -> None:
    cell_python = nox_envdir() / CELL_VENV / "bin" / "python"
    ready = cell_python.exists() and subprocess.run(
        [str(cell_python), "-c", "import bitsandbytes, transformers, packaging"], capture_output=True).returncode == 0
    if not ready:  # make (or finish) the cell venv the way the main job does: its nox probe session
        env = {k: v for k, v in os.environ.items() if not k.startswith("BNB_MATRIX_")}
        made = subprocess.run(nox_command("-s", "probe(torch='2.13.0+cpu', bnb='0.50.2')"), cwd=ROOT,
                              capture_output=True, text=True,
                              env={**env, "BNB_MATRIX_PROFILE": "cpu", "BNB_MATRIX_RESULTS": str(tmp_path)})
        assert made.returncode == 0 and cell_python.exists(), made.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BNB_MATRIX_SITE_URL", None)
    proc = subprocess.run([str(cell_python), "-m", "matrix", "doctor", "--recipe", "plain", "--recipe", "nf4-bf16"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "bitsandbytes 0.50.2" in out and "torch 2.13.0+cpu" in out
    assert any(ln.startswith("plain        PASS     load ") for ln in out.splitlines()), out
    assert any(ln.startswith("nf4-bf16     PASS     load ") for ln in out.splitlines()), out
    assert "/cells/cpu-" in out and "/bnb-0.50.2/transformers-" in out
    assert doctor.PASTE_START in out and "plain: pass" in out and out.rstrip().endswith(doctor.PASTE_END)
    assert "Traceback" not in proc.stderr


def test_doctor_without_torch_says_so_in_one_line() -> None:
    """Where torch is not installed: one line naming it, a non-zero exit, no per-recipe FAILs, no dead link."""
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed in the test interpreter")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the README's host venv: our package, no torch
    proc = subprocess.run([sys.executable, "-m", "matrix", "doctor"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1 and "torch is not installed" in lines[0], lines
    assert "FAIL" not in lines[0] and "http" not in lines[0]


def test_doctor_skips_gpu_recipes_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """cpu-offload needs a GPU: on a CPU runner the doctor reports it skipped, even when the imports fail."""
    from matrix.measure import install, jobs as measure

    seen = {}

    def fake_probe(python, axes, profile, shape, jobs, base, out_file, settings):  # the probe fails at import
        seen["recipes"] = [j.recipe for j in jobs]
        for job in jobs:
            rec = records.failure(base, {"slug": "cpu-x86_64"}, job.recipe, shape, "fail", "import", "ImportError",
                                  "No module named 'bitsandbytes'", "")
            with out_file.open("a") as f:
                f.write(rec.to_json() + "\n")

    monkeypatch.setattr(install, "present_versions", lambda python, names=(): {"torch": "2.13.0"})
    monkeypatch.setattr(measure, "run_probe", fake_probe)
    monkeypatch.setattr(doctor, "runner_facts", lambda: {"slug": "cpu-x86_64", "kind": "cpu", "gpu_count": 0})
    out = io.StringIO()
    doctor.run_doctor(recipes=["plain", "cpu-offload"], out=out)
    assert seen["recipes"] == ["plain"]
    line = next(ln for ln in out.getvalue().splitlines() if ln.startswith("cpu-offload"))
    assert "SKIP" in line and "no GPU" in line
