"""Copy downloaded record files into results/ without ever overwriting one: the publish job's merge step.

    python scripts/merge_records.py INCOMING RESULTS

Every `*.jsonl` below INCOMING is copied to RESULTS under its own name. Artifacts come from self-hosted runners,
so a file whose name is already in RESULTS (a committed record file, or two artifacts with one name) stops the
merge before anything is copied: exit 1 and one line naming the clashes. Only plain `*.jsonl` files with safe
names are taken; anything else in INCOMING is a clash-like refusal too. Each line is checked against the record
schema on the way in (matrix.measure.records): a line the site would refuse is left out and named (file:line), so
only lines the build can show reach results/ and the commit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matrix.measure.records import RecordProblem, iter_located  # noqa: E402

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.jsonl")


def plan(incoming: Path, results: Path) -> tuple[list[Path], list[str]]:
    """(files to copy, problems): a problem per name that exists in `results`, repeats, or is not a safe name."""
    files = sorted(p for p in incoming.rglob("*") if p.is_file() or p.is_symlink())
    problems, seen = [], set()
    for path in files:
        name = path.name
        if path.is_symlink() or not SAFE_NAME.fullmatch(name):
            problems.append(f"{path}: not a plain *.jsonl file with a safe name")
        elif (results / name).exists() or (results / name).is_symlink():
            problems.append(f"{name}: already in {results}; a record file is never overwritten")
        elif name in seen:
            problems.append(f"{name}: in two artifacts")
        seen.add(name)
    return files, problems


def good_lines(path: Path, left_out: list[str]) -> bytes:
    """The lines of `path` that are valid records, as written; each other line is named in `left_out`."""
    lines = path.read_bytes().splitlines(keepends=True)
    keep = []
    for where, item in iter_located(path):
        if isinstance(item, RecordProblem):
            left_out.append(str(item))
        else:
            keep.append(lines[int(where.rsplit(":", 1)[1]) - 1])
    return b"".join(keep)


def merge(incoming: Path, results: Path, left_out: list[str] | None = None) -> list[Path]:
    """Copy the valid lines of every file of `incoming` into `results` (`left_out` gets a line per bad one);
    raise SystemExit(one line) on a clash or odd file, copying nothing."""
    files, problems = plan(incoming, results)
    if problems:
        raise SystemExit(f"merge_records: refused, nothing copied: {'; '.join(problems)}")
    left_out = [] if left_out is None else left_out
    results.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in files:
        target = results / path.name
        body = good_lines(path, left_out)
        if not body:
            continue
        with target.open("xb") as dst:  # "x": fails rather than overwrite (a race)
            dst.write(body)
        copied.append(target)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    incoming, results = Path(argv[0]), Path(argv[1])
    if not incoming.is_dir():
        print(f"merge_records: {incoming}: no downloaded records (nothing to merge)")
        return 0
    left_out: list[str] = []
    copied = merge(incoming, results, left_out)
    for problem in left_out:
        print(f"merge_records: left out {problem}")
    print(f"merge_records: {len(copied)} new record file(s) into {results}, {len(left_out)} bad line(s) left out")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
