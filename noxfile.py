"""nox sessions for bnb-matrix. The logic lives in `matrix/`; sessions only wire it up.

    nox                      every probe of this machine's profile, then the site
    nox -l                   list sessions, e.g. probe(torch='2.13.0+cpu', bnb='0.50.2')
    nox -s "probe(torch='2.13.0+cpu', bnb='0.50.2')"   one pair
    nox -s probe -- --force  re-measure cells already measured with the same fingerprint
    nox -s probe -- --install offline   install mode for this run (online, offline, system)
    nox -s site / serve      build / preview the site from results/
    nox -s discover          PyPI releases the axes lack (`-- --add PROFILE` adds them)
    nox -s readback -- --phase write; nox -s readback   pre-quantized checkpoints: every cell of the prequant-cpu
                             (prequant-cuda on a GPU) profile writes, then reads what every cell wrote

Environment: BNB_MATRIX_PROFILE (cpu, cuda, ... default: cuda when nvidia-smi sees a GPU), BNB_MATRIX_AXES (axes
file), BNB_MATRIX_INSTALL (online, offline, system), BNB_MATRIX_WHEELHOUSE (local wheels), BNB_MATRIX_RESULTS.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))

from matrix.measure import jobs as measure, settings# noqa: E402
from matrix.diagnose.signatures import summary_line  # noqa: E402
from matrix.measure.axes import INSTALL_MODES, load_axes, pick_profile  # noqa: E402
from matrix.errors import UserError  # noqa: E402
from matrix.measure.runner import runner_facts  # noqa: E402

# One results file per nox invocation: every session of this run appends to it (set before reading the settings,
# so sessions nox runs in child processes see the same id).
os.environ.setdefault("BNB_MATRIX_RUN_ID", measure.new_run_id(runner_facts()["slug"]))
SETTINGS = settings.from_env(os.environ)  # the only place nox reads BNB_MATRIX_* variables
try:
    AXES = load_axes(SETTINGS.axes)
    PROFILE = pick_profile(AXES, SETTINGS.profile)
    # the run id names the results file, so it must not lead out of the results folder (`../x`)
    measure.check_run_id(SETTINGS.run_id)
except UserError as exc:  # one line, no traceback, non-zero exit
    sys.exit(f"bnb-matrix: {exc.line()}")

INSTALL = SETTINGS.install_mode(PROFILE)
RESULTS = SETTINGS.results or ROOT / "results"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"  # warm re-runs reuse each cell's venv; installs are then no-ops
nox.options.sessions = ["probe", "site"]

PAIRS = [nox.param(t, b, id=f"torch='{t}', bnb='{b}'") for t, b in PROFILE.pairs()]
# The readback session's profile: the chosen one if its recipes are prequantized, else prequant-<cpu|cuda>.
PREQUANT = PROFILE if all(AXES.recipes[r].kind for r in PROFILE.recipes) else AXES.profiles.get(
    "prequant-cuda" if runner_facts()["kind"] == "gpu" else "prequant-cpu")
CELLS = [nox.param(t, b, x, id=f"torch='{t}', bnb='{b}', transformers='{x}'")
         for t, b in (PREQUANT.pairs() if PREQUANT else []) for x in (PREQUANT.transformers if PREQUANT else [])]


def posarg_install(session: nox.Session) -> str | None:
    """`nox -s probe -- --install offline` (or `--install=system`) overrides the profile's install mode."""
    args = session.posargs
    for i, arg in enumerate(args):
        mode = arg.split("=", 1)[1] if arg.startswith("--install=") else (
            args[i + 1] if arg == "--install" and i + 1 < len(args) else None)
        if mode is not None:
            if mode not in INSTALL_MODES:
                session.error(f"--install {mode!r}: allowed: {', '.join(INSTALL_MODES)}")
            return mode
    return None


# `--system-site-packages` is decided when the venv is made, so `system` must be known before posargs are:
# set it through the profile or BNB_MATRIX_INSTALL (a posarg `--install system` still links the image's packages).
@nox.session(venv_params=["--system-site-packages"] if INSTALL == "system" else [])
@nox.parametrize(("torch", "bnb"), PAIRS)
def probe(session: nox.Session, torch: str, bnb: str) -> None:
    """Install one (torch, bitsandbytes) pair in its own venv and probe every recipe of the profile."""
    if PROFILE is PREQUANT:
        session.error(f"profile {PROFILE.name} holds prequantized recipes: run them with nox -s readback")
    force = "--force" in session.posargs
    install = posarg_install(session) or INSTALL
    python = Path(session.virtualenv.location) / "bin" / "python"
    installer = "uv" if session.venv_backend == "uv" else "pip"
    session.log(f"profile {PROFILE.name}, install {install} with {installer}, results -> {RESULTS}")
    try:
        new = measure.measure_pair(python, AXES, PROFILE, torch, bnb, RESULTS, SETTINGS.run_id, installer=installer,
                                   install=install, force=force, log=session.log, settings=SETTINGS)
    except UserError as exc:
        session.error(exc.line())
    for rec in new:  # one line per record, naming the error page a failure classifies as
        session.log(summary_line(rec))


@nox.session(venv_params=["--system-site-packages"] if INSTALL == "system" else [])
@nox.parametrize(("torch", "bnb", "transformers"), CELLS)
def readback(session: nox.Session, torch: str, bnb: str, transformers: str) -> None:
    """Pre-quantized checkpoints: write this cell's (nf4/fp4, double quant on/off), read every release's.
    `-- --phase write|read|both` (default both), `--force` rewrites and re-reads."""
    from matrix.measure.readback import PHASES, readback_cell

    assert PREQUANT is not None  # CELLS is empty without it
    args = session.posargs
    phase = args[args.index("--phase") + 1] if "--phase" in args[:-1] else "both"
    if phase not in PHASES:
        session.error(f"--phase {phase!r}: allowed: {', '.join(PHASES)}")
    python = Path(session.virtualenv.location) / "bin" / "python"
    installer = "uv" if session.venv_backend == "uv" else "pip"
    session.log(f"profile {PREQUANT.name}, phase {phase}, results -> {RESULTS}")
    try:
        new = readback_cell(python, AXES, PREQUANT, torch, bnb, transformers, RESULTS, SETTINGS.run_id,
                            installer=installer, install=posarg_install(session) or INSTALL, phase=phase,
                            force="--force" in args, log=session.log, settings=SETTINGS)
    except UserError as exc:
        session.error(exc.line())
    for rec in new:
        who = rec.get("saved_with", {})
        session.log(f"{rec['checks'].get('role')} {rec['recipe']} written by bnb {who.get('bitsandbytes')} / "
                    f"transformers {who.get('transformers')}: {rec['outcome']} {rec.get('error_type', '')}")


def sigterm_stops_children() -> None:
    """SIGTERM raises KeyboardInterrupt in nox, as Ctrl-C does, so nox stops the command it runs (SIGINT, then
    SIGTERM) instead of dying and leaving `python -m matrix site` (and its mkdocs) running on, holding the port."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@nox.session
def site(session: nox.Session) -> None:
    """Aggregate results/ and build the static site into public/ (mkdocs build --strict)."""
    sigterm_stops_children()
    session.install("-e", ".")
    session.run("python", "-m", "matrix", "site", "--results", str(RESULTS), *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Preview the site locally (mkdocs serve) after generating its pages (`-- --dev-addr 127.0.0.1:8001`)."""
    sigterm_stops_children()
    session.install("-e", ".")
    session.run("python", "-m", "matrix", "site", "--results", str(RESULTS), "--serve", *session.posargs)


@nox.session(python=False)
def discover(session: nox.Session) -> None:
    """List PyPI releases the axes lack (and yanked ones); `nox -s discover -- --add PROFILE` adds them."""
    session.run(sys.executable, "-m", "matrix", "discover", "--results", str(RESULTS), *session.posargs)


@nox.session(python=False)
def clean(session: nox.Session) -> None:
    """Remove generated pages and the built site (never results/)."""
    for path in (ROOT / "public", ROOT / "site" / "generated"):
        shutil.rmtree(path, ignore_errors=True)


@nox.session
def binaries(session: nox.Session) -> None:
    """Read every bitsandbytes wheel and torch build not yet in results/binaries/ (CPU only, cached by sha256)."""
    session.install("-e", ".[binaries]")
    session.run("python", "-m", "matrix.predict.wheels", *session.posargs)
