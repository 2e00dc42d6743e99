"""Check the `discovered` artifact in a scratch folder, then copy it into the checkout: the workflow's only way in.

    python scripts/accept_discovered.py SCRATCH CHECKOUT

The artifact (the axes file as `discover --add` left it, and PyPI's snapshot) was written by another job, so it is
unpacked aside and taken only if it holds exactly those two plain files, each of a sane size, the axes file passes
the axes validator and the snapshot is the JSON `discover` writes. Anything else: exit 1 and one line, nothing
copied. Both files are replaced atomically (a rename), so a killed step leaves the old or the new file whole.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matrix.errors import UserError  # noqa: E402
from matrix.measure.axes import load_axes  # noqa: E402

FILES = {"matrix/measure/axes.toml": 1 * 2**20, "results/releases.json": 8 * 2**20}  # path: most bytes


def check(scratch: Path) -> list[str]:
    """The problems of the artifact in `scratch` (none: it may be copied)."""
    found = {p.relative_to(scratch).as_posix(): p for p in scratch.rglob("*") if not p.is_dir() or p.is_symlink()}
    problems = [f"{name}: not part of the discovered artifact" for name in sorted(set(found) - set(FILES))]
    for name, limit in FILES.items():
        path = found.get(name)
        if path is None:
            continue  # a manual run uploads nothing; a scheduled one both (checked by the copy: absent stays absent)
        if path.is_symlink() or not path.is_file():
            problems.append(f"{name}: not a plain file")
        elif path.stat().st_size > limit:
            problems.append(f"{name}: {path.stat().st_size} bytes, at most {limit}")
    if problems:
        return problems
    if "matrix/measure/axes.toml" in found:
        try:
            load_axes(found["matrix/measure/axes.toml"])
        except UserError as exc:
            problems.append(f"axes.toml does not validate: {exc.line()}")
    if "results/releases.json" in found:
        try:
            data = json.loads(found["results/releases.json"].read_text(encoding="utf-8"))
            if not (isinstance(data, dict) and isinstance(data.get("packages"), dict)
                    and isinstance(data.get("fetched"), str)):
                raise ValueError("not the snapshot discover writes (fetched, packages)")
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"releases.json: {exc}")
    return problems


def accept(scratch: Path, checkout: Path) -> list[str]:
    """Copy the checked files into `checkout` (each replaced by one rename); returns what was copied."""
    copied = []
    for name in FILES:
        source = scratch / name
        if not source.is_file():
            continue
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.incoming")
        temporary.write_bytes(source.read_bytes())
        os.replace(temporary, target)
        copied.append(name)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    scratch, checkout = Path(argv[0]), Path(argv[1])
    if not scratch.is_dir():
        print(f"accept_discovered: {scratch}: no artifact (nothing to accept)")
        return 0
    problems = check(scratch)
    if problems:
        print(f"accept_discovered: refused, nothing copied: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print(f"accept_discovered: {', '.join(accept(scratch, checkout)) or 'nothing'} accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
