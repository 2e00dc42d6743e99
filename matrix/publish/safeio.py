"""Interrupt-safe building blocks for the site build: private work folders, an atomic folder swap, and child
processes that stop when we stop.

- `private_dir(parent, prefix)`: a fresh folder per build, removed afterwards; folders left by a killed build
  (its pid no longer alive) are removed by the next one.
- `swap_in(new, out)`: put a finished build where the old one was in one atomic step (Linux renameat2
  RENAME_EXCHANGE; two renames elsewhere), so a build killed at any moment leaves the previous site whole.
- `run_child(...)`: a subprocess that gets SIGTERM when we are interrupted and SIGKILL when we die (Linux
  PR_SET_PDEATHSIG), so no orphan finishes later or keeps holding a port.
- `sigterm_as_interrupt()`: SIGTERM raises KeyboardInterrupt like Ctrl-C, so `finally` blocks clean up.
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


def swap_in(new: Path, out: Path) -> None:
    """Make the finished folder `new` be `out`, and remove what `out` held. `out` always holds a whole site:
    either the old one or the new one (one atomic exchange where possible, else a rename aside first)."""
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
