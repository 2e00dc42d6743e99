"""The reproduce command a cell page prints works as printed in a checkout after the README's install.

The test copies the checkout (its .venv linked, as `pip install -e .` made it), takes the command from the built
cell page's Reproduce block and runs it with bash, unchanged. To stay quick it points the run at an empty
wheelhouse in offline mode: the session must exist, accept `--force`, make its venv and record the cell's failed
install, the same path a real re-measurement takes up to the install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from matrix import urls

ROOT = Path(__file__).resolve().parent.parent
CELL = urls.cell_path("cpu-x86_64", "2.13.0+cpu", "0.50.2", "5.24.0")


def printed_command(html: str) -> str:
    """The text of the code block under the Reproduce heading, as a reader would copy it."""
    section = html.split('id="reproduce"', 1)[1]
    code = re.search(r"<code>(.*?)</code>", section, re.S)
    assert code, "no code block under Reproduce"
    return unescape(re.sub(r"<[^>]+>", "", code.group(1))).strip()


def test_printed_reproduce_command_runs(built_site, tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "nox").exists():
        pytest.skip("needs the README's install (.venv/bin/nox)")
    _, out = built_site
    command = printed_command((out / CELL / "index.html").read_text(encoding="utf-8"))
    assert command.startswith("BNB_MATRIX_PROFILE=cpu .venv/bin/nox -s ") and command.endswith("-- --force")
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".nox", "public", "generated", "build", "results", "__pycache__", ".hypothesis"))
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "wheels").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNB_MATRIX_")}
    env.update(BNB_MATRIX_RESULTS=str(tmp_path / "results"), BNB_MATRIX_INSTALL="offline",
               BNB_MATRIX_WHEELHOUSE=str(tmp_path / "wheels"), BNB_MATRIX_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for f in (tmp_path / "results").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert rows and all(r["requested"]["torch"] == "2.13.0+cpu" and r["requested"]["bnb"] == "0.50.2" for r in rows)
    assert {r["stage"] for r in rows} == {"install"}  # the empty wheelhouse: every job recorded as a failed install


def test_printed_profile_holds_the_cells_transformers_too() -> None:
    """A session measures every transformers release of its profile: the profile printed must list the cell's."""
    from matrix.measure.axes import load_axes
    from matrix.publish import reproduce

    axes = load_axes()
    # transformers 4.46.3 is only in cpu-wide-4x; 4.57.6 with the CPU build only in cpu-wide (not the default cpu)
    assert reproduce.profile_for("cpu", "2.6.0", "0.43.3", axes, "4.46.3") == "cpu-wide-4x"
    assert reproduce.profile_for("cpu", "2.6.0", "0.43.3", axes, "5.24.0") == "cpu-wide"
    assert reproduce.profile_for("cpu", "2.13.0+cpu", "0.50.2", axes, "4.57.6") == "cpu-wide"
    assert reproduce.profile_for("cpu", "2.13.0+cpu", "0.50.2", axes, "5.24.0") == "cpu"  # the default first
    assert reproduce.cell_command({"runner_kind": "cpu", "torch": "2.15.0", "bnb": "0.50.2",
                                   "transformers": "4.46.3"}, axes).startswith("BNB_MATRIX_PROFILE=cpu-wide-4x ")
    for name, profile in axes.profiles.items():  # every cell any profile measures gets a profile that holds it
        kind = "cpu" if name.startswith("cpu") else "gpu"
        for torch, bnb in profile.pairs():
            for tf in profile.transformers:
                chosen = axes.profiles[reproduce.profile_for(kind, torch, bnb, axes, tf)]
                assert reproduce.holds(chosen, torch, bnb, tf), (name, torch, bnb, tf)
