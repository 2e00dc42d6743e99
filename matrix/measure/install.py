"""Installing one cell: the install commands per install mode, running them, and what a failed install means.

Pure where it can be (`install_commands`, `install_failure_type`, `install_reason`); `install_cell` runs the
commands in the cell's venv and returns the log, and a failure is data: `measure` records the installer's reason.
Stdlib plus packaging, like measure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from matrix.measure.axes import TorchBuild
from matrix.errors import UserError
from matrix.measure.settings import Settings

CELL_EXTRAS = ("accelerate", "safetensors")


def cell_env(pythonpath: str = "") -> dict:
    """The environment for a cell's installer and probe: the host's, less PYTHONPATH, which would put the
    host's own packages (nox, say) ahead of the cell venv's; `pythonpath` (a folder holding only our `matrix`
    package, for the probe) replaces it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": pythonpath} if pythonpath else env


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
    """uv from the host venv's `uv` package (nox may run without that venv on PATH), else uv on PATH (a runner
    image with uv but without our host venv, as nox's uv backend found it).

    Imported here, not at the top: `doctor` imports this module inside a user's environment, which has no uv."""
    if importlib.util.find_spec("uv") is None:
        return shutil.which("uv") or "uv"
    from uv import find_uv_bin

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
    system: torch (and what else the image has) comes from the system site packages; bitsandbytes, and
            transformers unless the image has that version, are installed with their own dependencies, by pip
            (uv would not see the image's packages and would install them all again), with the image's torch
            pinned in `constraints`; what the image has at a fitting version stays, the rest goes into the venv.
    """
    wheel_dirs = wheel_dirs or []  # local wheel folders (see wheelhouses)
    links = [arg for d in wheel_dirs for arg in ("--find-links", d)]
    if mode == "system":
        # uv does not look at system site packages, so what the image already has at the asked version is left out
        present = present or {}
        wanted = [f"{name}=={version}" for name, version in (("bitsandbytes", bnb), ("transformers", transformers))
                  if version != "system" and present.get(name) != version]
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        return [pip + (["--no-index"] if links else []) + links + ["-c", str(constraints)] + wanted] if wanted else []
    base = ([uv_binary(), "pip", "install", "--python", str(python)] if installer == "uv"
            else [str(python), "-m", "pip", "install", "--disable-pip-version-check"])
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


# The packages a 4-bit load imports; system mode checks their requirements (and their requirements' ...) only,
# since an image's unrelated packages may disagree among themselves without touching the probe.
LOAD_PATH = ("torch", "bitsandbytes", "transformers", "accelerate", "safetensors")
_CLOSURE = """import importlib.metadata as m, json, re, sys
todo, seen = list(sys.argv[1:]), set()
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in seen:
        continue
    seen.add(name)
    try:
        reqs = m.requires(name) or []
    except m.PackageNotFoundError:
        continue
    todo += [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in reqs if "extra ==" not in r and "extra==" not in r]
print(json.dumps(sorted(seen)))"""


def check_environment(python: Path, names: tuple[str, ...] = LOAD_PATH) -> tuple[bool, str]:
    """`pip check`, kept to the problems of `names` and what they require (recursively); (ok, the checker's lines).

    An install can succeed and still leave, say, transformers beside a tokenizers it refuses at import; that must
    be an install failure in the checker's words, not a probe failure later."""
    proc = subprocess.run([str(python), "-m", "pip", "check", "--disable-pip-version-check"], capture_output=True,
                          text=True, errors="replace", env=cell_env())
    if proc.returncode == 0:
        return True, proc.stdout.strip()
    closure = subprocess.run([str(python), "-c", _CLOSURE, *names], capture_output=True, text=True,
                             env=cell_env())
    try:
        relevant = set(json.loads(closure.stdout))
    except ValueError:
        relevant = set()
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    problems = [ln for ln in lines if ln.split()[0].replace("_", "-").replace(".", "-").lower() in relevant]
    if not relevant:  # the closure could not be read: every problem counts
        problems = lines
    return not problems, "\n".join(problems or lines)


def install_cell(python: Path, build: TorchBuild, bnb: str, transformers: str, mode: str,
                 installer: str, settings: Settings = Settings()) -> tuple[bool, str]:
    """Run the install commands; (ok, log). A failure is data: the caller records pip's/uv's reason."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        log = []
        if mode == "system":
            link_host_site_packages(python)
        present = present_versions(python) if mode == "system" else {}
        # keep the torch just installed (or the image's): no requirement of bitsandbytes, transformers or
        # accelerate may replace it
        if mode == "system":
            torch_pin = f"torch=={present['torch']}" if present.get("torch") else ""
        else:
            torch_pin = build.requirement
        constraints.write_text(f"{torch_pin}\n" if torch_pin else "")
        for cmd in install_commands(python, build, bnb, transformers, mode, installer, constraints, present,
                                    wheelhouses(settings)):
            log.append("$ " + " ".join(cmd))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=cell_env())
            except OSError as exc:  # the installer itself is missing: still a record, not a crash
                return False, "\n".join(log + [f"ERROR: cannot run {cmd[0]}: {exc}"])
            log += [proc.stdout[-4000:], proc.stderr[-8000:]]
            if proc.returncode != 0:
                return False, "\n".join(log + killed_line(proc.returncode))
        if mode == "system":
            ok, words = check_environment(python)
            log += [f"$ {python} -m pip check", words]
            if not ok:
                return False, "\n".join(log + [f"ERROR: the environment is inconsistent (pip check):\n{words}"])
    return True, "\n".join(log)


def killed_line(code: int) -> list[str]:
    """The line `install_failure_type` reads for an installer that a signal ended (the OOM killer: -9, or 137
    through a shell), else nothing."""
    signal = -code if code < 0 else code - 128 if code in (137, 143) else 0
    return [f"ERROR: the installer was killed by signal {signal} (out of memory, or stopped)"] if signal else []


# Failures that say nothing about the cell: the next run must try again, and they never decide a verdict.
TRANSIENT = ("NetworkError", "DownloadCorrupt", "DiskFull", "InstallerKilled")
_DOWNLOAD = re.compile(r"incompleteread|incomplete read|do not match the hashes|hash mismatch|hashes? (?:do|does) "
                       r"not match|checksum mismatch|bad crc|badzipfile|not a zip file|unexpected end of (?:file|data)",
                       re.I)
_DISK = re.compile(r"no space left on device|\[errno 28\]|disk quota exceeded|\[errno 122\]", re.I)
_KILLED = re.compile(r"the installer was killed by signal|^killed$", re.I | re.M)
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

    Transient (TRANSIENT: such a record gets no fingerprint, so the next run tries again, and the site never
    takes it for a verdict): NetworkError, the index could not be reached; DownloadCorrupt, a download was cut
    short or its hash did not match; DiskFull, no space left; InstallerKilled, a signal ended the installer (the
    OOM killer). NoMatchingDistribution: a requested version does not exist, or has no wheel for this
    platform or Python. ResolutionImpossible: each exists, but the resolver refuses to install them together
    (the grid's "cannot be installed together"). InstallError: anything else.
    """
    reason = install_reason(log)
    if _KILLED.search(log):
        return "InstallerKilled"
    if _DISK.search(log):
        return "DiskFull"
    if _DOWNLOAD.search(log):
        return "DownloadCorrupt"
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
              or "No solution found" in ln or "Could not find" in ln or "No matching distribution" in ln
              or " has requirement " in ln or ", which is not installed" in ln]
    return "\n".join(picked[:12]) or "\n".join(lines[-6:])
