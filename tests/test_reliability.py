"""Slow, real: nox makes the cell venv (torch 2.13.0 CPU + bitsandbytes), the probe loads a tiny Llama in 4-bit,
and recipes that really segfault, abort, hang or run out of memory still leave records while the run goes on.
Also: a run killed with SIGKILL midway resumes without losing or duplicating records, and a bitsandbytes version
that does not exist is recorded as a failed install with the installer's reason.

The misbehaviour comes from BNB_MATRIX_PROBE_HOOK (matrix/probe.py `_test_hook`), set through a recipe's `env`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import nox_command

from matrix.measure import records
from matrix.measure.axes import DEFAULT_AXES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAIR = "probe(torch='2.13.0+cpu', bnb='0.50.2')"
HOOKS = ("segfault", "abort", "hang", "oom", "oom-kill")

EXTRA = "\n".join(f'''
[recipes.hook-{hook}]
title = "misbehaves: {hook}"
description = "A test recipe whose process misbehaves ({hook}) just before loading."
bnb_config = {{ load_in_4bit = true, bnb_4bit_quant_type = "nf4" }}
env = {{ BNB_MATRIX_PROBE_HOOK = "{hook}" }}
''' for hook in HOOKS) + '''
[profiles.hooks]
torch = ["2.13.0+cpu"]
bitsandbytes = ["0.50.2"]
transformers = ["5.24.0"]
recipes = ["hook-segfault", "hook-abort", "hook-hang", "hook-oom", "hook-oom-kill", "nf4-bf16", "cpu-offload"]
shapes = ["tiny"]
timeout_s = 45

[profiles.resume]
torch = ["2.13.0+cpu"]
bitsandbytes = ["0.50.2"]
transformers = ["5.24.0"]
recipes = ["nf4-bf16", "hook-hang", "plain", "seed-fix"]
shapes = ["tiny"]
timeout_s = 30

[profiles.missing]
torch = ["2.13.0+cpu"]
bitsandbytes = ["9.9.9", "0.50.2"]
transformers = ["5.24.0"]
recipes = ["nf4-bf16"]
shapes = ["tiny"]
'''


def _cgroup_memory_writable() -> bool:
    probe_dir = Path("/sys/fs/cgroup/memory") / f"bnb-matrix-test-check-{os.getpid()}"
    try:
        probe_dir.mkdir()
        probe_dir.rmdir()
        return True
    except OSError:
        return False


CGROUP_MEMORY = _cgroup_memory_writable()


@pytest.fixture(scope="module", autouse=True)
def remove_test_cgroups():
    yield
    for group in Path("/sys/fs/cgroup/memory").glob("bnb-matrix-test-*"):
        try:
            group.rmdir()  # empty once its process was killed
        except OSError:
            pass


@pytest.fixture(scope="module")
def axes_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("axes") / "axes.toml"
    path.write_text(DEFAULT_AXES.read_text() + EXTRA)
    return path


def nox_env(axes_file: Path, profile: str, results: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNB_MATRIX_")}
    return {**env, "BNB_MATRIX_AXES": str(axes_file), "BNB_MATRIX_PROFILE": profile,
            "BNB_MATRIX_RESULTS": str(results)}


def run_nox(env: dict[str, str], *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    proc = subprocess.run(nox_command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read(results: Path) -> list[records.Record]:
    recs, problems = records.read_results(results)
    assert not problems, problems
    return recs


def test_probe_end_to_end_and_each_failure_is_a_record(axes_file, tmp_path):
    results = tmp_path / "results"
    run_nox(nox_env(axes_file, "hooks", results), "-s", PAIR)
    recs = {r.recipe: r for r in read(results)}
    assert set(recs) == {f"hook-{h}" for h in HOOKS} | {"nf4-bf16", "cpu-offload"}

    ok = recs["nf4-bf16"]  # the real 4-bit load, after four misbehaving recipes
    assert ok.outcome == "pass", (ok.error_message, ok.stderr_tail[-2000:])
    assert ok.versions["bitsandbytes"] == "0.50.2" and ok.versions["torch"].startswith("2.13.0")
    assert ok.checks["linear4bit"] == ok.checks["linear4bit_expected"] == 14
    assert ok.checks["quant_type"] == "nf4" and ok.checks["rel_error"] < 0.1 and ok.checks["finite"]
    assert ok.timings_s["load"] > 0 and ok.memory_mib["cpu_peak_rss"] > 0 and ok.runner["kind"] == "cpu"

    seg, abort = recs["hook-segfault"], recs["hook-abort"]
    assert (seg.outcome, seg.exit_code) == ("crash", -signal.SIGSEGV) and "SIGSEGV" in seg.error_message
    assert (abort.outcome, abort.exit_code) == ("crash", -signal.SIGABRT) and "SIGABRT" in abort.error_message
    assert seg.stage == "load"  # the partial result said how far it got before dying

    hang = recs["hook-hang"]
    assert hang.outcome == "timeout" and "exceeded 45 s" in hang.error_message
    assert hang.timings_s["process"] < 45 + 30

    oom = recs["hook-oom"]
    assert oom.outcome in ("fail", "crash"), oom
    assert "memory" in (oom.error_message + oom.stderr_tail).lower()

    killed = recs["hook-oom-kill"]
    if CGROUP_MEMORY:  # a real kernel OOM kill
        assert (killed.outcome, killed.exit_code) == ("crash", -signal.SIGKILL) and "SIGKILL" in killed.error_message
    else:  # no writable memory cgroup here: the hook's own failure is still a record
        assert killed.outcome == "fail" and killed.error_type in ("OSError", "PermissionError", "FileNotFoundError")

    skip = recs["cpu-offload"]
    assert skip.outcome == "skip" and "no GPU" in skip.skip_reason


def test_killed_run_loses_at_most_the_record_in_flight_and_resumes(axes_file, tmp_path):
    results = tmp_path / "results"
    env = nox_env(axes_file, "resume", results)
    proc = subprocess.Popen(nox_command("-s", PAIR), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(results.glob("*.jsonl"))
        if files and files[0].read_bytes().count(b"\n") >= 1:
            break  # nf4-bf16 is written; hook-hang is now in flight
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # nox, the probe and the recipe process, like kill -9 of a terminal
    proc.wait()
    first = read(results)
    assert [r.recipe for r in first] == ["nf4-bf16"]

    again = run_nox(env, "-s", PAIR)
    recs = read(results)
    assert sorted(r.recipe for r in recs) == ["hook-hang", "nf4-bf16", "plain", "seed-fix"]
    assert len({r.fingerprint for r in recs}) == 4  # nothing measured twice
    assert "nf4-bf16" not in again.stderr.split("install ok")[-1]  # the re-run only logged the new jobs

    third = run_nox(env, "-s", PAIR)  # nothing new: skipped, no records added
    assert "every job already measured" in third.stderr and len(read(results)) == 4


def test_a_version_that_does_not_exist_is_recorded_and_the_run_goes_on(axes_file, tmp_path):
    results = tmp_path / "results"
    run_nox(nox_env(axes_file, "missing", results), "-s", "probe")
    recs = {r.requested["bnb"]: r for r in read(results)}
    bad = recs["9.9.9"]
    assert (bad.outcome, bad.stage, bad.error_type) == ("fail", "install", "NoMatchingDistribution")
    assert "9.9.9" in bad.error_message and ("No solution found" in bad.error_message
                                             or "No matching distribution" in bad.error_message)
    assert recs["0.50.2"].outcome == "pass"


def test_unwritable_results_dir_is_one_line_and_no_traceback(axes_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run(nox_command("-s", PAIR), cwd=ROOT, capture_output=True, text=True,
                          env=nox_env(axes_file, "resume", blocker / "results"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "cannot create the results directory" in proc.stderr
