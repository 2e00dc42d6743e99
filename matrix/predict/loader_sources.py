"""The loader's Python source of every bitsandbytes release from 0.39 on, kept whole in `results/binaries/loader/`.

The wheel readings keep only the lines of the loader that matched when they were read; the rule of a release
(`matrix.predict.loader_rules`) is read from the whole files kept here, one JSON file per release:
`{"release", "origin", "files": {path: {"sha256", "text", "matches_wheel"}}}`.

- From a folder of downloaded wheels (`--wheels DIR`, e.g. the `$BNB_WHEEL_CACHE` of `nox -s binaries`): each
  release not yet kept, whether or not it has a git tag (0.39.0-0.42.0 and their post releases, 0.50.2...); the
  Python files are the same in every platform's wheel of a release (line endings aside).
- Releases with a tag: the files of the release's git tag (`python -m matrix.predict.loader_sources --git DIR`,
  DIR a clone of bitsandbytes-foundation/bitsandbytes); `matches_wheel` says whether the file's sha256 is the one
  the wheel reading recorded for its own copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from packaging.version import Version

from matrix.predict import loader_rules, wheels
from matrix.predict.store import CACHE_DIR

LOADER_DIR = CACHE_DIR / "loader"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def save(release: str, origin: str, files: dict[str, str], wheel_sha: dict[str, set[str]] | None = None,
         loader_dir: Path = LOADER_DIR) -> Path:
    """Write one release's loader files (path -> text) with where they came from."""
    loader_dir.mkdir(parents=True, exist_ok=True)
    record = {"release": release, "origin": origin, "files": {
        path: {"sha256": sha256(text), "text": text,
               "matches_wheel": None if wheel_sha is None or path not in wheel_sha else sha256(text) in wheel_sha[path]}
        for path, text in sorted(files.items())}}
    target = loader_dir / f"{release}.json"
    target.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return target


def load(release: str, loader_dir: Path = LOADER_DIR) -> dict[str, Any] | None:
    """One release's kept loader files, or None."""
    path = loader_dir / f"{release}.json"
    return json.loads(path.read_text()) if path.exists() else None


def evidence(release: str, loader_dir: Path = LOADER_DIR) -> dict[str, Any] | None:
    """The evidence lines of one release (as `loader_rules.extract` gives them), from the whole kept files."""
    kept = load(release, loader_dir)
    return loader_rules.extract({p: f["text"] for p, f in kept["files"].items()}) if kept else None


def releases(loader_dir: Path = LOADER_DIR) -> list[str]:
    return sorted((p.stem for p in loader_dir.glob("*.json")), key=Version)


def from_wheel(path: Path, release: str, loader_dir: Path = LOADER_DIR) -> Path:
    """Keep the loader files of a downloaded wheel of `release` (any platform's: the Python files are the same)."""
    with zipfile.ZipFile(path) as zf:
        sources = {n: zf.read(n).decode("utf-8", "replace") for n in zf.namelist() if n in loader_rules.SOURCE_FILES}
    return save(release, f"PyPI wheel {path.name}", sources, {p: {sha256(t)} for p, t in sources.items()}, loader_dir)


def from_git(git_dir: Path, release: str, wheel_readings: list[dict[str, Any]],
             loader_dir: Path = LOADER_DIR) -> Path | None:
    """Keep the loader files of one release's git tag; None when the tag is not in the clone."""
    files = {}
    for path in loader_rules.SOURCE_FILES:
        proc = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{release}:{path}"], capture_output=True,
                              text=True, check=False)
        if proc.returncode == 0:
            files[path] = proc.stdout
    if not files:
        return None
    wheel_sha: dict[str, set[str]] = {}
    for w in wheel_readings:  # every platform's copy (the Windows wheels' files can differ in line endings)
        if w["release"] == release:
            for path, facts in w.get("loader", {}).items():
                wheel_sha.setdefault(path, set()).add(facts["sha256"])
    return save(release, f"git tag {release} of github.com/bitsandbytes-foundation/bitsandbytes", files, wheel_sha,
                loader_dir)


def main() -> None:
    """`python -m matrix.predict.loader_sources [--git DIR] [--wheels DIR]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git", type=Path, help="a bare or normal clone's git directory")
    parser.add_argument("--wheels", type=Path, help="a folder of downloaded bitsandbytes wheels")
    args = parser.parse_args()
    readings = wheels.load_cache()
    if args.git:
        for release in sorted({w["release"] for w in readings}, key=Version):
            kept = from_git(args.git, release, readings)
            print(f"{release}: {kept.name if kept else 'no tag in the clone'}")
    if args.wheels:
        for path in sorted(args.wheels.glob("bitsandbytes-*.whl")):
            release = path.name.split("-")[1]
            if not (LOADER_DIR / f"{release}.json").exists():
                print(f"{release}: {from_wheel(path, release).name}")


if __name__ == "__main__":
    main()
