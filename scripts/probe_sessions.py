"""Print the probe sessions of the current profile as one JSON array, for a GitHub Actions matrix.

    BNB_MATRIX_PROFILE=cuda python scripts/probe_sessions.py
    ["probe(torch='2.11.0+cu130', bnb='0.45.5')", ...]

It runs `nox -l --json` (the noxfile next to this script, with this interpreter's nox) and keeps the entries
whose session name is `probe`. `-` reads an existing `nox -l --json` listing from stdin instead. The workflow
(.github/workflows/gpu-matrix.yml) and tests/test_workflows.py both call this, so the transformation lives here only.
Exits non-zero with one line on stderr when nox fails or the profile has no probe session (an empty matrix
would otherwise fail later, with a less helpful message).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def probe_sessions(listing: list[dict]) -> list[str]:
    """The `nox -l --json` entries of the probe session, as the exact names `nox -s` accepts."""
    return [entry["session"] for entry in listing if entry.get("name") == "probe"]


def nox_listing() -> str:
    proc = subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-l", "--json"],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"probe_sessions: `nox -l --json` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


def main(argv: list[str]) -> int:
    text = sys.stdin.read() if argv[:1] == ["-"] else nox_listing()
    sessions = probe_sessions(json.loads(text))
    if not sessions:
        sys.exit("probe_sessions: the profile has no probe session (check BNB_MATRIX_PROFILE and the axes file)")
    print(json.dumps(sessions))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
