"""The host side of one cell: install the pair into its venv, spawn the probe, make sure every job has a record.

nox calls `measure_pair` from the `probe` session. Everything here is stdlib (plus packaging); torch and
bitsandbytes only ever exist inside the cell's venv. A job whose probe died without writing its line gets a
`crash` (or `timeout`) record here, with the probe's stderr tail, so nothing silently disappears.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


from matrix.measure import records, schema
from matrix.measure.install import TRANSIENT, cell_env, install_cell, install_failure_type, install_reason
from matrix.measure.axes import Axes, Profile
from matrix.errors import ResultsError, UserError
from matrix.measure.runner import is_cpu, runner_facts
from matrix.measure.settings import Settings

PACKAGE = Path(__file__).resolve().parents[1]  # put alone on the probe's PYTHONPATH: `python -m matrix.measure.probe`
# What the cell's python runs (scripts/benchmark.py swaps in a wrapper).
PROBE_COMMAND: tuple[str, ...] = ("-m", "matrix.measure.probe")
# Bump when the probe measures differently: it changes every fingerprint, so cells re-run, and records say it.
# 2: the parent imports the 4-bit load path (CPU runners), so `load` no longer holds ~4 s of lazy imports.
# 3: the parent imports the load path on GPU runners too (not bitsandbytes, which creates a CUDA context); every
#    second of a record is in a named phase (start, cuda_init, imports_bnb, teardown, ...); checkpoints drawn in
#    bulk (same files and shapes, other random values).
PROBE_VERSION = 3


@dataclass(frozen=True)
class Job:
    """One record to be: a recipe in a cell, on a shape, under an optional emulated VRAM budget."""

    recipe: str
    shape: str
    budget_gib: float | None
    fingerprint: str


def new_run_id(runner_slug: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{runner_slug[:42].rstrip('.-_')}-{random.randrange(16**4):04x}"  # 64 characters at most


RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # and what schema.identifier takes


def check_run_id(run_id: str, where: str = "BNB_MATRIX_RUN_ID") -> str:
    """`run_id` if it is safe as a file name inside the results folder (letters, digits, '.', '_', '-'; no leading
    dot, no '..', at most 64 characters: what the reader accepts, schema.identifier), else UserError: it becomes
    results/<run id>.jsonl and every record's run id."""
    try:
        usable = bool(RUN_ID_PATTERN.fullmatch(run_id)) and ".." not in run_id and schema.identifier(run_id, "")
    except schema.Invalid:
        usable = False
    if not usable:
        raise UserError(where, f"{run_id[:80]!r} is not a usable run id: it names the results file and its records",
                        "at most 64 letters, digits, '.', '_' and '-', starting with a letter or digit; or unset it")
    return run_id


def fingerprint(axes: Axes, runner_slug: str, torch: str, bnb: str, transformers: str, install: str,
                recipe: str, shape: str, budget: float | None) -> str:
    """What must be equal for a stored record to stand for a job: runner, requested versions, install mode,
    the recipe's and shape's definitions (not just names), the budget and the probe version."""
    # a recipe's `kind` counts only when set, so adding the key left every on-the-fly fingerprint as it was
    recipe_def = {k: v for k, v in dataclasses.asdict(axes.recipes[recipe]).items() if k != "kind" or v}
    payload = {"runner": runner_slug, "torch": dataclasses.asdict(axes.torch_builds[torch]), "bnb": bnb,
               "transformers": transformers, "install": install, "recipe": recipe_def,
               "shape": axes.shapes[shape].config, "budget": budget, "probe": PROBE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def plan_jobs(axes: Axes, profile: Profile, runner_slug: str, torch: str, bnb: str, transformers: str,
              install: str) -> list[Job]:
    """Every job of one cell: recipes x shapes, plus each VRAM budget on the budget shapes (GPU runners only)."""
    jobs = []
    for shape in profile.shapes:
        budgets: list[float | None] = [None]
        if shape in profile.budget_shapes and not is_cpu(runner_slug):
            budgets += list(profile.budgets_gib)
        for budget in budgets:
            for recipe in profile.recipes:
                fp = fingerprint(axes, runner_slug, torch, bnb, transformers, install, recipe, shape, budget)
                jobs.append(Job(recipe, shape, budget, fp))
    return jobs


def check_results_dir(results_dir: Path) -> None:
    """Fail before installing anything if records could not be written (one line, no traceback)."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(str(results_dir), f"cannot create the results directory ({exc.strerror})",
                           "set BNB_MATRIX_RESULTS to a writable folder") from None
    if not os.access(results_dir, os.W_OK | os.X_OK):
        raise ResultsError(str(results_dir), "results directory is not writable",
                           "fix its permissions or set BNB_MATRIX_RESULTS to a writable folder")


def measured_fingerprints(results_dir: Path) -> set[str]:
    """Fingerprints of every readable record (bad lines are ignored here; the site build reports them)."""
    if not results_dir.is_dir():
        return set()
    found = set()
    for path in records.result_files(results_dir):
        for item in records.iter_file(path):
            if isinstance(item, records.Record) and item.fingerprint:
                found.add(item.fingerprint)
    return found


# ----------------------------------------------------------------------------------------------------------
# Running the probe

def written_since(results_file: Path, before: int) -> list[dict]:
    """The records a child process appended to `results_file` after byte `before` (a torn line is skipped)."""
    written = []
    if results_file.exists():
        with open(results_file, "rb") as handle:
            handle.seek(before)
            for line in handle.read().decode("utf-8", "replace").splitlines():
                try:
                    written.append(json.loads(line))
                except ValueError:
                    continue
    return written


def run_in_cell(python: Path, command: tuple[str, ...], spec: dict, results_file: Path, limit: float
                ) -> tuple[list[dict], int, bool, str]:
    """Run `python COMMAND --spec S --out RESULTS` in the cell's interpreter, with a PYTHONPATH that holds our package
    and nothing else of the host's (the cell venv has no bnb-matrix installed); its process group is killed past
    `limit` s. The spec gets "log", the file its stderr goes to. Returns (the records it appended, exit code, whether
    it timed out, its stderr)."""
    before = results_file.stat().st_size if results_file.exists() else 0
    with tempfile.TemporaryDirectory() as tmp:
        package_path, spec_path, log_path = Path(tmp) / "path", Path(tmp) / "spec.json", Path(tmp) / "stderr.log"
        spec_path.write_text(json.dumps({**spec, "log": str(log_path)}))
        package_path.mkdir()
        (package_path / "matrix").symlink_to(PACKAGE, target_is_directory=True)
        with open(log_path, "wb") as err:
            proc = subprocess.Popen([str(python), *command, "--spec", str(spec_path),
                                     "--out", str(results_file.resolve())],
                                    stderr=err, start_new_session=True, env=cell_env(str(package_path)))
            try:
                code, timed_out = proc.wait(timeout=limit), False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                code, timed_out = proc.wait(), True
        stderr = log_path.read_bytes().decode("utf-8", "replace")
    return written_since(results_file, before), code, timed_out, stderr


def _failure(base: dict, runner: dict, job: Job, outcome: str, stage: str, error_type: str, message: str,
             stderr: str, exit_code: int | None = None) -> records.Record:
    return records.failure(base, runner, job.recipe, job.shape, outcome, stage, error_type, message, stderr,
                           budget_gib=job.budget_gib, fingerprint=job.fingerprint, exit_code=exit_code)


def run_probe(python: Path, axes: Axes, profile: Profile, shape: str, jobs: list[Job], base: dict,
              results_file: Path, settings: Settings = Settings(), install_s: float = 0.0) -> list[dict]:
    """Probe one shape's jobs in the cell's venv; returns the records written (probe's and fill-ins).
    `install_s` (the cell's install time) is carried into the first shape's records, so every second counts."""
    spec = {"shape": {"name": shape, "config": axes.shapes[shape].config},
            "cache": str(settings.cache / "checkpoints"), "checkpoint": settings.checkpoint,
            "install_s": round(install_s, 3),
            "timeout_s": profile.timeout_s, "base": base, "start_method": settings.start_method,
            "jobs": [{"recipe": dataclasses.asdict(axes.recipes[j.recipe]), "budget_gib": j.budget_gib,
                      "fingerprint": j.fingerprint} for j in jobs]}
    limit = profile.timeout_s * (len(jobs) + 3)  # every job's own limit plus imports and making an 8B checkpoint
    written, code, timed_out, stderr = run_in_cell(python, PROBE_COMMAND, spec, results_file, limit)
    sys.stderr.write(console_digest(stderr))
    done = {r.get("fingerprint") for r in written}
    runner = written[0]["runner"] if written else runner_facts()
    for job in jobs:
        if job.fingerprint in done:
            continue
        if timed_out:
            rec = _failure(base, runner, job, "timeout", "process", "Timeout",
                           f"probe exceeded {limit} s before measuring this recipe and was killed", stderr, -9)
        else:
            died = f"signal {-code}" if code < 0 else f"exit code {code}"
            rec = _failure(base, runner, job, "crash", "process", "ProcessDied",
                           f"probe process died ({died}) before measuring this recipe", stderr, code)
        records.append(results_file, rec)
        written.append(dataclasses.asdict(rec))
    return written


def measure_pair(python: Path, axes: Axes, profile: Profile, torch: str, bnb: str, results_dir: Path,
                 run_id: str, installer: str, install: str | None = None, force: bool = False,
                 log=print, settings: Settings = Settings()) -> list[dict]:
    """Install and probe every transformers version x shape of one (torch, bitsandbytes) pair.

    `install` (the session's) > settings.install > the profile's. Jobs already measured with the same fingerprint
    are skipped unless `force`. Returns the new records.
    """
    install = settings.install_mode(profile, install)
    check_run_id(run_id)
    check_results_dir(results_dir)
    runner = runner_facts()
    results_file = results_dir / f"{run_id}.jsonl"
    measured = set() if force else measured_fingerprints(results_dir)
    new: list[dict] = []
    for transformers in profile.transformers:
        jobs = [j for j in plan_jobs(axes, profile, runner["slug"], torch, bnb, transformers, install)
                if j.fingerprint not in measured]
        if not jobs:
            log(f"transformers {transformers}: every job already measured (use --force to re-measure)")
            continue
        base = records.base(run_id, torch=torch, bnb=bnb, transformers=transformers, install=install,
                            installer="pip" if install == "system" else installer, runner=runner["slug"],
                            probe_version=PROBE_VERSION,
                            torch_source="system image" if install == "system" else "venv",
                            # e.g. "slim wheel: only the cpu and cuda130 binaries" (scripts/slim_wheel.py)
                            note=settings.install_note)
        started = time.monotonic()
        ok, install_log = install_cell(python, axes.torch_builds[torch], bnb, transformers, install, installer,
                                       settings)
        install_s = time.monotonic() - started
        log(f"install {'ok' if ok else 'FAILED'} in {install_s:.1f} s")
        if not ok:
            kind = install_failure_type(install_log)
            for job in jobs:
                # a transient failure is not a result: no fingerprint, so the next run measures the job again
                job = dataclasses.replace(job, fingerprint="") if kind in TRANSIENT else job
                failed = _failure(base, runner, job, "fail", "install", kind, install_reason(install_log),
                                  install_log)
                records.append(results_file, failed)
                new.append(dataclasses.asdict(failed))
            continue
        for shape in profile.shapes:
            shape_jobs = [j for j in jobs if j.shape == shape]
            if shape_jobs:
                new += run_probe(python, axes, profile, shape, shape_jobs, base, results_file, settings,
                                 install_s=install_s)
                install_s = 0.0  # paid once per cell: the next shape's records share none of it
    return new


CONSOLE_LINES = 60


def console_digest(stderr: str, limit: int = CONSOLE_LINES) -> str:
    """The probe's stderr for the console, without the flood: a failing cell repeats the same traceback once per
    recipe (and transformers logs its conversion errors per weight), so a line seen before is printed once with a
    count, and at most the last `limit` distinct lines are shown. Records keep the real head and tail."""
    counts: dict[str, int] = {}
    for line in stderr.splitlines():
        counts[line] = counts.get(line, 0) + 1
    lines = [f"{line}  [x{n}]" if n > 1 and line.strip() else line for line, n in counts.items()]
    cut = len(lines) - limit
    head = [f"... {cut} earlier distinct line(s) of the probe's stderr not shown (the records keep it)"] * (cut > 0)
    text = "\n".join(head + lines[-limit:])
    return text + "\n" if text else ""
