"""The host side of a cell, without installing anything: job planning, fingerprints, install commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from matrix.diagnose import signatures
from matrix.measure import install, jobs as measure
from matrix.measure.axes import load_axes
from matrix.errors import ResultsError, UserError
from matrix.measure.settings import Settings, from_env

AXES = load_axes()
PY = Path("/venv/bin/python")


def test_plan_covers_recipes_shapes_and_budgets_only_on_gpus():
    cpu = measure.plan_jobs(AXES, AXES.profile("cpu"), "cpu-x86_64", "2.13.0+cpu", "0.50.2", "5.24.0", "online")
    assert [(j.recipe, j.shape, j.budget_gib) for j in cpu] == [
        ("plain", "tiny", None), ("seed-fix", "tiny", None), ("nf4-bf16", "tiny", None), ("cpu-offload", "tiny", None)]
    budgets = AXES.profile("cuda-budgets")
    gpu = measure.plan_jobs(AXES, budgets, "h100-sm90", "2.11.0+cu130", "0.50.2", "5.17.0", "system")
    assert len(gpu) == len(budgets.recipes) * (1 + len(budgets.budgets_gib))
    assert len({j.fingerprint for j in gpu}) == len(gpu)


def test_fingerprint_changes_with_what_matters_only():
    args = (AXES, "cpu-x86_64", "2.13.0+cpu", "0.50.2", "5.24.0", "online", "plain", "tiny", None)
    same = measure.fingerprint(*args)
    assert measure.fingerprint(*args) == same
    assert measure.fingerprint(AXES, "cpu-x86_64", "2.13.0+cpu", "0.49.2", *args[4:]) != same
    assert measure.fingerprint(*args[:5], "system", *args[6:]) != same
    assert measure.fingerprint(*args[:8], 8.0) != same


def test_online_install_prefers_a_local_torch_wheel_then_the_index(monkeypatch, tmp_path):
    build = AXES.torch_builds["2.11.0+cu130"]
    torch_cmd, rest = install.install_commands(PY, build, "0.50.2", "5.17.0", "online", "pip", tmp_path / "c.txt")
    assert "--extra-index-url" in torch_cmd and build.index_url in torch_cmd and "torch==2.11.0+cu130" in torch_cmd
    assert {"bitsandbytes==0.50.2", "transformers==5.17.0", "accelerate", "safetensors"} <= set(rest)
    uv_cmd, _ = install.install_commands(PY, build, "0.50.2", "5.17.0", "online", "uv", tmp_path / "c.txt")
    assert uv_cmd[1:4] == ["pip", "install", "--python"] and "--index" in uv_cmd


def test_system_install_resolves_dependencies_but_pins_the_images_torch(tmp_path):
    build = AXES.torch_builds["2.11.0+cu130"]
    constraints = tmp_path / "c.txt"
    cmds = install.install_commands(PY, build, "0.50.2", "4.57.6", "system", "uv", constraints,
                                    present={"transformers": "5.17.0", "torch": "2.11.0+cu130"},
                                    wheel_dirs=install.wheelhouses(Settings(wheelhouses=(str(tmp_path), "/no/such"))))
    assert len(cmds) == 1
    cmd = cmds[0]
    # pip of the venv (it sees the image's packages; uv would not), with dependencies, torch held by constraints
    assert cmd[:4] == [str(PY), "-m", "pip", "install"] and "--no-deps" not in cmd
    assert cmd[cmd.index("-c") + 1] == str(constraints) and "--no-index" in cmd
    assert "bitsandbytes==0.50.2" in cmd and "transformers==4.57.6" in cmd
    assert not any(a.startswith("torch") for a in cmd)
    # the image already has the asked transformers: only bitsandbytes; nothing at all when both are there
    only_bnb = install.install_commands(PY, build, "0.50.2", "5.17.0", "system", "pip", constraints,
                                        present={"transformers": "5.17.0"})[0]
    assert "bitsandbytes==0.50.2" in only_bnb and not any(a.startswith("transformers") for a in only_bnb)
    assert install.install_commands(PY, build, "0.50.2", "system", "system", "pip", constraints,
                                    present={"bitsandbytes": "0.50.2"}) == []


def _fake_dist(site: Path, name: str, version: str, *requires: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *[f"Requires-Dist: {r}" for r in requires]]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_check_environment_fails_on_the_load_paths_conflicts_in_pips_words(tmp_path):
    """A real venv and real `pip check`: a conflict under the load path fails, one elsewhere in the image does not."""
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    _fake_dist(site, "fake_transformers", "4.57.6", "fake-tokenizers<=0.23.0,>=0.22.0")
    _fake_dist(site, "fake_tokenizers", "0.23.2")
    _fake_dist(site, "unrelated", "1.0", "missing-thing>=1")
    ok, words = install.check_environment(python, names=("fake-transformers",))
    assert not ok
    wanted = "fake-transformers 4.57.6 has requirement fake-tokenizers<=0.23.0,>=0.22.0"
    assert wanted in words.lower().replace("_", "-")
    assert "unrelated" not in words
    assert "has requirement" in install.install_reason(words)
    ok, words = install.check_environment(python, names=("fake-tokenizers",))
    assert ok, words  # the only problems are outside what the probe imports


def test_offline_without_wheelhouse_is_a_user_error(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="no wheelhouse found"):
        install.install_commands(PY, AXES.torch_builds["2.13.0+cpu"], "0.50.2", "5.24.0", "offline", "pip",
                                 tmp_path / "c.txt")


def test_install_reason_keeps_the_installers_words():
    pip_log = "Collecting x\nERROR: Could not find a version that satisfies the requirement bitsandbytes==9.9.9\n" \
              "ERROR: No matching distribution found for bitsandbytes==9.9.9\n"
    assert install.install_reason(pip_log).splitlines()[-1].endswith("bitsandbytes==9.9.9")
    assert "no version of bitsandbytes==9.9.9" in install.install_reason(
        "error: No solution found when resolving dependencies\n  cause: Because there is no version of "
        "bitsandbytes==9.9.9 and you require bitsandbytes==9.9.9\n")
    uv_log = "  × No solution found when resolving dependencies:\n  ╰─▶ Because there is no version of " \
             "bitsandbytes==9.9.9 and you require bitsandbytes==9.9.9, we can conclude that your requirements " \
             "are unsatisfiable.\n"
    assert "No solution found" in install.install_reason(uv_log)


def test_unusable_results_dir_fails_before_installing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ResultsError, match="cannot create the results directory"):
        measure.check_results_dir(blocker / "results")


def test_cells_do_not_inherit_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/tmp/noxsite")
    assert "PYTHONPATH" not in install.cell_env()


def test_settings_session_beats_environment_beats_axes(tmp_path):
    env = {"BNB_MATRIX_INSTALL": "offline", "BNB_MATRIX_WHEELHOUSE": f"{tmp_path} /x", "PIP_FIND_LINKS": "/y",
           "BNB_MATRIX_CACHE": str(tmp_path), "BNB_MATRIX_PROFILE": "cuda"}
    settings = from_env(env)
    profile = AXES.profile("cpu")
    assert settings.install_mode(profile) == "offline" and settings.install_mode(profile, "system") == "system"
    assert Settings().install_mode(profile) == profile.install
    assert settings.wheelhouses == (str(tmp_path), "/x", "/y") and install.wheelhouses(settings) == [str(tmp_path)]
    assert settings.cache == tmp_path and settings.profile == "cuda"
    assert from_env(env, profile="cpu", install=None).profile == "cpu"


def test_the_probe_gets_our_package_alone_on_its_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/tmp/noxsite")
    assert install.cell_env("/tmp/only-matrix")["PYTHONPATH"] == "/tmp/only-matrix"


# Real installer output (uv 0.9 and pip 24), trimmed to the lines install_reason keeps.
UV_CONFLICT = """error: No solution found when resolving dependencies
  cause: Because bitsandbytes==0.50.2 depends on torch>=2.4,<3 and you require bitsandbytes==0.50.2, we can conclude that you require torch>=2.4,<3.
         And because you require torch==2.1.2, we can conclude that your requirements are unsatisfiable."""  # noqa: E501 - verbatim installer output
UV_MISSING = """error: No solution found when resolving dependencies
  cause: Because there is no version of bitsandbytes==9.9.9 and you require bitsandbytes==9.9.9, we can conclude that your requirements are unsatisfiable."""  # noqa: E501 - verbatim installer output
PIP_CONFLICT = """ERROR: Cannot install bitsandbytes==0.50.2 and torch==2.1.2 because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts"""  # noqa: E501 - verbatim installer output
PIP_MISSING = """ERROR: Could not find a version that satisfies the requirement bitsandbytes==9.9.9 (from versions: 0.31.8, 0.50.2)
ERROR: No matching distribution found for bitsandbytes==9.9.9"""  # noqa: E501 - verbatim installer output
UV_NETWORK = """error: Failed to fetch: `https://pypi.org/simple/bitsandbytes/`
  Caused by: Request failed after 3 retries
  Caused by: error sending request for url (https://pypi.org/simple/bitsandbytes/)
  Caused by: dns error: failed to lookup address information: Temporary failure in name resolution"""
PIP_NETWORK = """WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(...: Failed to establish a new connection: [Errno 111] Connection refused')': /simple/torch/
ERROR: Could not find a version that satisfies the requirement torch==2.6.0 (from versions: none)
ERROR: No matching distribution found for torch==2.6.0"""  # noqa: E501 - verbatim installer output


@pytest.mark.parametrize(("log", "kind"), [
    (UV_CONFLICT, "ResolutionImpossible"), (PIP_CONFLICT, "ResolutionImpossible"),
    (UV_MISSING, "NoMatchingDistribution"), (PIP_MISSING, "NoMatchingDistribution"),
    (UV_NETWORK, "NetworkError"), (PIP_NETWORK, "NetworkError"),
    ("error: Failed to build `flash-attn==2.8.3`", "InstallError"),
])
def test_install_failures_are_typed(log: str, kind: str):
    assert install.install_failure_type("$ uv pip install ...\n" + log) == kind


def test_console_digest_prints_a_repeated_traceback_once_with_its_count():
    block = "Traceback (most recent call last):\n  File \"x.py\", line 3\nRuntimeError: conversion failed\n"
    stderr = "Loading weights\n" + block * 300
    out = measure.console_digest(stderr)
    assert out.count("RuntimeError: conversion failed") == 1 and "[x300]" in out
    assert len(out.splitlines()) == 4
    many = "\n".join(f"line {i}" for i in range(500))
    lines = measure.console_digest(many, limit=60).splitlines()
    assert len(lines) == 61 and lines[0].startswith("... 440 earlier") and lines[-1] == "line 499"
    assert measure.console_digest("") == ""


def test_summary_line_names_the_signature_of_a_failure():
    rec = {"recipe": "plain", "shape": "tiny", "budget_gib": None, "outcome": "fail", "error_type": "ImportError",
           "error_message": "Using `bitsandbytes` 4-bit quantization requires bitsandbytes: "
                            "`pip install -U bitsandbytes>=0.46.1`", "stderr_tail": ""}
    assert "[bnb-too-old] ImportError" in signatures.summary_line(rec)
    assert "[" not in signatures.summary_line({**rec, "outcome": "pass", "error_type": "", "error_message": ""})


def test_unaccounted_time_is_never_negative_from_rounding():
    from matrix.measure import probe

    phases = {name: 0.3337 for name in probe.RECORD_PHASES}
    rounded = {name: round(value, 3) for name, value in phases.items()}
    process = round(sum(phases.values()), 3)  # the phases, each rounded up, sum past the process time
    assert sum(rounded.values()) > process
    assert probe.unaccounted({**rounded, "process": process}) == 0.0
    assert probe.unaccounted({"process": 2.0, **{name: 0.1 for name in probe.RECORD_PHASES}}) > 0
