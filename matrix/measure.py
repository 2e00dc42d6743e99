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
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from matrix import records
from matrix.axes import Axes, Profile, TorchBuild
from matrix.errors import ResultsError, UserError
from matrix.runner import is_cpu, runner_facts
from matrix.settings import Settings

PACKAGE = Path(__file__).resolve().parent  # put alone on the probe's PYTHONPATH: `python -m matrix.probe`
# What the cell's python runs (scripts/benchmark.py swaps in a wrapper).
PROBE_COMMAND: tuple[str, ...] = ("-m", "matrix.probe")
# Bump when the probe measures differently: it changes every fingerprint, so cells re-run, and records say it.
# 2: the parent imports the 4-bit load path (CPU runners), so `load` no longer holds ~4 s of lazy imports.
PROBE_VERSION = 2
CELL_EXTRAS = ("accelerate", "safetensors")


@dataclass(frozen=True)
class Job:
    """One record to be: a recipe in a cell, on a shape, under an optional emulated VRAM budget."""

    recipe: str
    shape: str
    budget_gib: float | None
    fingerprint: str


def cell_env(pythonpath: str = "") -> dict:
    """The environment for a cell's installer and probe: the host's, less PYTHONPATH, which would put the
    host's own packages (nox, say) ahead of the cell venv's; `pythonpath` (a folder holding only our `matrix`
    package, for the probe) replaces it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": pythonpath} if pythonpath else env


def new_run_id(runner_slug: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{runner_slug}-{random.randrange(16**4):04x}"


RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,159}")


def check_run_id(run_id: str, where: str = "BNB_MATRIX_RUN_ID") -> str:
    """`run_id` if it is safe as a file name inside the results folder (letters, digits, '.', '_', '-'; no leading
    dot, no '..', at most 160 characters), else UserError: it becomes results/<run id>.jsonl."""
    if not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise UserError(where, f"{run_id[:80]!r} is not a usable run id: it names the results file",
                        "letters, digits, '.', '_' and '-' only, starting with a letter or digit; or unset it")
    return run_id


def fingerprint(axes: Axes, runner_slug: str, torch: str, bnb: str, transformers: str, install: str,
                recipe: str, shape: str, budget: float | None) -> str:
    """What must be equal for a stored record to stand for a job: runner, requested versions, install mode,
    the recipe's and shape's definitions (not just names), the budget and the probe version."""
    payload = {"runner": runner_slug, "torch": dataclasses.asdict(axes.torch_builds[torch]), "bnb": bnb,
               "transformers": transformers, "install": install, "recipe": dataclasses.asdict(axes.recipes[recipe]),
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
# Installing a cell

def wheelhouses(settings: Settings) -> list[str]:
    """The local wheel folders of the settings (BNB_MATRIX_WHEELHOUSE, PIP_FIND_LINKS) that exist."""
    return [d for d in settings.wheelhouses if Path(d).is_dir()]


def local_torch_wheel(build: TorchBuild, dirs: list[str]) -> Path | None:
    """A wheel of exactly this torch build (version + local variant) that installs here, if one lies on disk."""
    supported = set(sys_tags())
    for folder in dirs:
        for path in sorted(Path(folder).glob("torch-*.whl")):
            try:
                _, version, _, tags = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue
            if str(version) == build.wheel_version and tags & supported:
                return path
    return None


def present_versions(python: Path, names: tuple[str, ...] = ("torch", "bitsandbytes", "transformers")) -> dict:
    """Versions of `names` the venv's interpreter sees (system site packages included)."""
    code = ("import importlib.metadata as m, json, sys\nout = {}\nfor n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))")
    proc = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, env=cell_env())
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return {}


def uv_binary() -> str:
    """uv from the host venv's `uv` package (nox may run without that venv on PATH), else from PATH.

    Imported here, not at the top: `doctor` imports this module inside a user's environment, which has no uv."""
    from uv import find_uv_bin  # a host dependency (pyproject.toml)

    try:
        return find_uv_bin()
    except FileNotFoundError:  # the package is there but its binary is not (a broken install)
        return shutil.which("uv") or "uv"


def install_commands(python: Path, build: TorchBuild, bnb: str, transformers: str, mode: str,
                     installer: str, constraints: Path, present: dict | None = None,
                     wheel_dirs: list[str] | None = None) -> list[list[str]]:
    """The install commands for one cell (pure: nothing runs here).

    online: torch from a local wheel of that exact build if one is on disk, else from the build's index;
            the rest from PyPI.   offline: everything from the wheelhouse (--no-index).
    system: torch (and what else the image has) comes from the system site packages; only bitsandbytes, and
            transformers unless it is "system", are installed, without dependencies.
    """
    base = ([uv_binary(), "pip", "install", "--python", str(python)] if installer == "uv"
            else [str(python), "-m", "pip", "install", "--disable-pip-version-check"])
    wheel_dirs = wheel_dirs or []  # local wheel folders (see wheelhouses)
    links = [arg for d in wheel_dirs for arg in ("--find-links", d)]
    if mode == "system":
        # uv does not look at system site packages, so what the image already has at the asked version is left out
        present = present or {}
        wanted = [f"{name}=={version}" for name, version in (("bitsandbytes", bnb), ("transformers", transformers))
                  if version != "system" and present.get(name) != version]
        return [base + ["--no-deps"] + (["--no-index"] if links else []) + links + wanted] if wanted else []
    if mode == "offline":
        if not links:
            raise UserError("install mode offline", "no wheelhouse found",
                            "set BNB_MATRIX_WHEELHOUSE=DIR to a folder of wheels")
        base = base + ["--no-index"] + links
    torch_spec = build.requirement
    wheel = local_torch_wheel(build, wheel_dirs)
    if wheel is not None or mode == "offline":
        torch_cmd = base + ([str(wheel)] if wheel else [torch_spec])
    elif build.find_links:
        torch_cmd = base + ["--find-links", build.find_links, torch_spec]
    elif build.index_url:
        # PyTorch's index first for torch, PyPI for torch's own needs
        flag = "--index" if installer == "uv" else "--extra-index-url"
        torch_cmd = base + [flag, build.index_url, torch_spec]
    else:
        torch_cmd = base + [torch_spec]
    rest = base + links + ["-c", str(constraints), f"bitsandbytes=={bnb}", f"transformers=={transformers}",
                           *CELL_EXTRAS]
    return [torch_cmd, rest]


def link_host_site_packages(python: Path) -> None:
    """System mode: make the cell venv see the packages of the interpreter running nox, through a .pth file.

    `--system-site-packages` is not enough where the image's own Python is itself a venv (torch in
    /opt/torch/.venv, say): a venv made from it sees the base interpreter's site-packages, not the image's.
    The venv's own site-packages still come first, so the cell's bitsandbytes wins over any in the image.
    """
    import site

    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    paths = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "_bnb_matrix_system.pth").write_text("\n".join(paths) + "\n")


def install_cell(python: Path, build: TorchBuild, bnb: str, transformers: str, mode: str,
                 installer: str, settings: Settings = Settings()) -> tuple[bool, str]:
    """Run the install commands; (ok, log). A failure is data: the caller records pip's/uv's reason."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        # keep the torch just installed: bitsandbytes' and accelerate's torch requirements must not replace it
        constraints.write_text(f"{build.requirement}\n" if mode != "system" else "")
        log = []
        if mode == "system":
            link_host_site_packages(python)
        present = present_versions(python) if mode == "system" else {}
        for cmd in install_commands(python, build, bnb, transformers, mode, installer, constraints, present,
                                    wheelhouses(settings)):
            log.append("$ " + " ".join(cmd))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=cell_env())
            except OSError as exc:  # the installer itself is missing: still a record, not a crash
                return False, "\n".join(log + [f"ERROR: cannot run {cmd[0]}: {exc}"])
            log += [proc.stdout[-4000:], proc.stderr[-8000:]]
            if proc.returncode != 0:
                return False, "\n".join(log)
    return True, "\n".join(log)


_NETWORK = re.compile(r"failed to fetch|error sending request|dns error|name resolution|connection refused|"
                      r"connection reset|timed out|could not connect|newconnectionerror|max retries exceeded|"
                      r"network is unreachable|failed to download", re.I)
_MISSING = re.compile(r"there is no version of|no matching distribution|could not find a version that satisfies|"
                      r"has no wheels with a matching|not found in the package registry|no wheels? (?:are )?available",
                      re.I)
_CONFLICT = re.compile(r"no solution found when resolving|requirements are unsatisfiable|resolutionimpossible|"
                       r"conflicting dependencies|are incompatible", re.I)


def install_failure_type(log: str) -> str:
    """What kind of install failure the installer's output describes, as the record's error_type.

    NetworkError: the index could not be reached (transient: such a record gets no fingerprint, so the next
    run tries again). NoMatchingDistribution: a requested version does not exist, or has no wheel for this
    platform or Python. ResolutionImpossible: each exists, but the resolver refuses to install them together
    (the grid's "cannot be installed together"). InstallError: anything else.
    """
    reason = install_reason(log)
    if _NETWORK.search(log):  # pip says it in a WARNING line above the final ERROR
        return "NetworkError"
    if _MISSING.search(reason):
        return "NoMatchingDistribution"
    if _CONFLICT.search(reason):
        return "ResolutionImpossible"
    return "InstallError"


def install_reason(log: str) -> str:
    """The lines of an installer's output that say why it failed (uv: 'No solution found...', pip: 'ERROR:')."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    picked = [ln for ln in lines if ln.startswith(("ERROR", "error", "×", "╰", "Because", "hint", "And because",
                                                    "cause:"))
              or "No solution found" in ln or "Could not find" in ln or "No matching distribution" in ln]
    return "\n".join(picked[:12]) or "\n".join(lines[-6:])


# ----------------------------------------------------------------------------------------------------------
# Running the probe

def _failure(base: dict, runner: dict, job: Job, outcome: str, stage: str, error_type: str, message: str,
             stderr: str, exit_code: int | None = None) -> records.Record:
    return records.failure(base, runner, job.recipe, job.shape, outcome, stage, error_type, message, stderr,
                           budget_gib=job.budget_gib, fingerprint=job.fingerprint, exit_code=exit_code)


def run_probe(python: Path, axes: Axes, profile: Profile, shape: str, jobs: list[Job], base: dict,
              results_file: Path, settings: Settings = Settings()) -> list[dict]:
    """Probe one shape's jobs in the cell's venv; returns the records written (probe's and fill-ins)."""
    spec = {"shape": {"name": shape, "config": axes.shapes[shape].config},
            "cache": str(settings.cache / "checkpoints"), "checkpoint": settings.checkpoint,
            "timeout_s": profile.timeout_s, "base": base, "start_method": settings.start_method,
            "jobs": [{"recipe": dataclasses.asdict(axes.recipes[j.recipe]), "budget_gib": j.budget_gib,
                      "fingerprint": j.fingerprint} for j in jobs]}
    before = results_file.stat().st_size if results_file.exists() else 0
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        # The probe runs as `python -m matrix.probe` in the cell's interpreter, with a PYTHONPATH that holds our
        # package and nothing else of the host's (the cell venv has no bnb-matrix installed).
        package_path = Path(tmp) / "path"
        package_path.mkdir()
        (package_path / "matrix").symlink_to(PACKAGE, target_is_directory=True)
        # Whole-probe limit: every job's own limit plus imports and making an 8B checkpoint.
        limit = profile.timeout_s * (len(jobs) + 3)
        stderr_path = Path(tmp) / "stderr.log"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen([str(python), *PROBE_COMMAND, "--spec", str(spec_path),
                                     "--out", str(results_file.resolve())],
                                    stderr=err, start_new_session=True, env=cell_env(str(package_path)))
            try:
                code, timed_out = proc.wait(timeout=limit), False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                code, timed_out = proc.wait(), True
        stderr = stderr_path.read_bytes().decode("utf-8", "replace")
        sys.stderr.write(stderr[-20000:])
    written = []
    if results_file.exists():
        with open(results_file, "rb") as handle:
            handle.seek(before)
            for line in handle.read().decode("utf-8", "replace").splitlines():
                try:
                    written.append(json.loads(line))
                except ValueError:
                    continue
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
                            installer=installer, runner=runner["slug"], probe_version=PROBE_VERSION,
                            torch_source="system image" if install == "system" else "venv",
                            # e.g. "slim wheel: only the cpu and cuda130 binaries" (scripts/slim_wheel.py)
                            note=settings.install_note)
        started = time.monotonic()
        ok, install_log = install_cell(python, axes.torch_builds[torch], bnb, transformers, install, installer,
                                       settings)
        log(f"install {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s")
        if not ok:
            kind = install_failure_type(install_log)
            for job in jobs:
                # a network failure is not a result: no fingerprint, so the next run measures the job again
                job = dataclasses.replace(job, fingerprint="") if kind == "NetworkError" else job
                failed = _failure(base, runner, job, "fail", "install", kind, install_reason(install_log),
                                  install_log)
                records.append(results_file, failed)
                new.append(dataclasses.asdict(failed))
            continue
        for shape in profile.shapes:
            shape_jobs = [j for j in jobs if j.shape == shape]
            if shape_jobs:
                new += run_probe(python, axes, profile, shape, shape_jobs, base, results_file, settings)
    for rec in new:
        log(f"  {rec['recipe']:<12} {rec['shape']:<5} budget={rec.get('budget_gib') or '-':<5} {rec['outcome']:<8}"
            f" {rec.get('error_type', '')} {rec.get('error_message', '')[:100]}")
    return new
