"""Interrupt-safe building blocks for the site build: private work folders, an atomic folder swap, and child
processes that stop when we stop.

- `private_dir(parent, prefix)`: a fresh folder per build, removed afterwards; folders left by a killed build
  (its pid no longer alive) are removed by the next one.
- `swap_in(new, out)`: put a finished build where the old one was in one atomic step (Linux renameat2
  RENAME_EXCHANGE; two renames elsewhere), so a build killed at any moment leaves the previous site whole.
- `run_child(...)`: a subprocess that gets SIGTERM when we are interrupted and SIGKILL when we die (Linux
  PR_SET_PDEATHSIG), so no orphan finishes later or keeps holding a port.
- `sigterm_as_interrupt()`: SIGTERM raises KeyboardInterrupt like Ctrl-C, so `finally` blocks clean up.
- `mark_built(folder)` / `check_out(out)`: every site `swap_in` puts in place carries a marker file (MARKER); an
  output folder that has files but no marker is refused, so `--out` never empties a folder we did not build.
- `naming(path)`: an OSError that names no file (a write that hit a full disk) is re-raised naming `path`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from matrix.errors import UserError

_PR_SET_PDEATHSIG = 1
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # no C library to load (not Linux): plain renames and no parent-death signal
    _LIBC = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parent: Path, prefix: str) -> None:
    """Remove `parent/<prefix><pid>-*` folders whose process is gone (left behind by a SIGKILL)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        found = pattern.match(entry.name)
        if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def private_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder `parent/<prefix><pid>-XXXX` for this build only; removed when the block ends, however it ends
    (short of SIGKILL, whose leftovers the next call removes)."""
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent, prefix)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where the kernel or C library cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


MARKER = ".bnb-matrix-site"  # in every folder swap_in puts in place: "a site this tool built, safe to replace"


def mark_built(folder: Path) -> None:
    """Mark `folder` as a site we built (swap_in calls it; a writer that does not swap must call it itself)."""
    (folder / MARKER).write_text("Built by bnb-matrix (python -m matrix site); the next build replaces this "
                                 "folder whole.\n", encoding="utf-8")


def check_out(out: Path) -> Path:
    """`out` resolved, if a build may replace it: absent, empty, or marked by an earlier build (MARKER). Else
    UserError in one line: a folder with files we did not write is never emptied."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise UserError(str(out), "exists and is not a folder", "pass --out pointing at a folder")
    try:
        with os.scandir(out) as entries:
            names = {entry.name for entry in entries}
    except FileNotFoundError:
        return out
    except NotADirectoryError:
        raise UserError(str(out), "lies under a file, not a folder", "pass --out pointing at a folder") from None
    except OSError as exc:
        raise UserError(str(out), f"cannot be read ({exc.strerror or exc})",
                        "pass --out pointing at a folder of its own") from None
    if names and MARKER not in names:
        raise UserError(str(out), f"has files and no {MARKER} marker: it is not a previous site build of this "
                        "tool, and a build replaces its output folder whole",
                        "pass a new or empty folder, or delete this one first")
    return out


@contextlib.contextmanager
def naming(path: Path, what: str) -> Iterator[None]:
    """An OSError raised in the block that names no file (a write that hit a full disk names none) becomes a
    UserError naming `path`, so 'No space left on device' is not taken for a failed write to stdout."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise UserError(str(path), f"cannot write {what} ({exc.strerror or exc})",
                        "free space there, or point it elsewhere") from None


def swap_in(new: Path, out: Path) -> None:
    """Make the finished folder `new` be `out`, and remove what `out` held. `out` always holds a whole site:
    either the old one or the new one (one atomic exchange where possible, else a rename aside first). `new` is
    marked first (mark_built), and `out` must pass check_out: nothing unmarked is ever replaced."""
    mark_built(new)
    check_out(out)
    if not out.exists():
        os.rename(new, out)
        return
    if _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old site
        return
    aside = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(out, aside)
    os.rename(new, out)
    shutil.rmtree(aside, ignore_errors=True)


def _die_with_parent(parent_pid: int) -> None:
    """In the child, before exec: get SIGKILL when the parent dies (Linux), and exit if it is already gone."""
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the child, then SIGKILL it after `grace_s`; wait for it either way."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_child(command: list[str], cwd: Path, env: dict[str, str], capture: bool) -> tuple[int, str]:
    """Run `command` to the end and return (exit code, its stdout+stderr if `capture`). If we are interrupted
    (Ctrl-C, or SIGTERM under `sigterm_as_interrupt`) the child is stopped before the exception goes on."""
    parent = os.getpid()
    proc = subprocess.Popen(command, cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.STDOUT if capture else None,
                            preexec_fn=lambda: _die_with_parent(parent))  # noqa: PLW1509 - no threads run here
    try:
        output, _ = proc.communicate()
    except BaseException:
        stop(proc)
        raise
    return proc.returncode, output or ""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so children are stopped and
    temporary folders removed on the way out. Only in the main thread, where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
