"""bitsandbytes wheels from PyPI, read once and cached by sha256 as small JSON files in `results/binaries/`.

`refresh()` lists every release from `FIRST_RELEASE` on from PyPI's JSON API, and for each wheel of a platform
we read (Linux x86_64 and aarch64, Windows) that has no cache file at the current `SCHEMA` yet: downloads it
(to a temporary file, or to `$BNB_WHEEL_CACHE` to keep it), checks its sha256, reads every native library in
it (`matrix.predict.binaries`) and the loader's Python source (`matrix.predict.loader_rules`), and writes
`results/binaries/<sha256>.json`. A new release is a new file on the next run; nothing already read at this
schema is downloaded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.version import Version

from matrix.predict import binaries, loader_rules, torch_builds
from matrix.predict.store import CACHE_DIR
from matrix.measure import discover

PYPI_JSON = "https://pypi.org/pypi/bitsandbytes/json"
FIRST_RELEASE = Version("0.39.0")  # the oldest release read (0.39-0.42: one py3-none-any wheel each)
SCHEMA = 2  # 2: relocatable fatbin (__nv_relfatbin), payload reading, glibc/glibcxx/cxxabi floors
PLATFORMS = {  # wheel platform tag suffix -> our platform name
    "manylinux_2_24_x86_64": "linux-x86_64", "manylinux2014_x86_64": "linux-x86_64",
    "manylinux_2_24_aarch64": "linux-aarch64", "manylinux2014_aarch64": "linux-aarch64",
    "win_amd64": "windows-x86_64",
    "any": "linux-x86_64",  # 0.39-0.42: one py3-none-any wheel holding Linux x86-64 libraries only
}
NATIVE_SUFFIXES = (".so", ".dll", ".dylib")


def platform_of(filename: str) -> str | None:
    """`bitsandbytes-0.45.5-py3-none-manylinux_2_24_x86_64.whl` -> `linux-x86_64` (None: a platform we skip)."""
    tag = filename.removesuffix(".whl").split("-")[-1]
    if tag == "any":
        return PLATFORMS["any"]
    return next((name for suffix, name in PLATFORMS.items() if suffix != "any" and tag.endswith(suffix)), None)


def list_wheels(index: dict[str, Any]) -> list[dict[str, Any]]:
    """The wheels to read from PyPI's JSON for bitsandbytes: release, filename, platform, url, sha256, size."""
    wheels = []
    for version, release, files in discover.final_releases(index):
        if version < FIRST_RELEASE:
            continue
        for f in files:
            platform = platform_of(f["filename"]) if f.get("packagetype") == "bdist_wheel" else None
            if platform and not f.get("yanked"):
                wheels.append({"release": release, "filename": f["filename"], "platform": platform,
                               "url": urllib.parse.urljoin(PYPI_JSON, f["url"]), "sha256": f["digests"]["sha256"],
                               "size": f["size"]})
    return sorted(wheels, key=lambda w: (Version(w["release"]), w["platform"]))


def fetch_index(url: str = PYPI_JSON) -> dict[str, Any]:
    """bitsandbytes' PyPI JSON (one clear line when PyPI cannot be read)."""
    return discover.fetch_json(url, timeout=60)


def download(url: str, sha256: str, dest: Path) -> None:
    """Stream `url` to `dest`, checking its sha256 (a mismatch raises: a half or wrong file is never read)."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as resp, dest.open("wb") as out:
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        raise ValueError(f"{url}: sha256 {digest.hexdigest()} does not match PyPI's {sha256}")


def library_facts(name: str) -> dict[str, Any]:
    """What a library's file name says: backend (cuda, cpu, rocm, xpu, mps...) and CUDA version (`cuda124`)."""
    stem = Path(name).name.split(".")[0].removeprefix("libbitsandbytes_").removeprefix("bitsandbytes_")
    match = re.match(r"([a-z]+?)(\d*)(_nocublaslt)?$", stem)
    backend, digits = (match.group(1), match.group(2)) if match else (stem, "")
    facts: dict[str, Any] = {"backend": backend, "nocublaslt": "nocublaslt" in stem}
    if backend == "cuda" and digits:
        facts["cuda"] = f"{digits[:-1]}.{digits[-1]}"
    elif backend == "rocm" and digits:
        facts["rocm"] = digits
    return facts


def read_wheel(wheel: dict[str, Any], path: Path, tool: str | None) -> dict[str, Any]:
    """Read every native library and the loader source of a downloaded wheel into the cache record."""
    libraries, sources = [], {}
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="bnb-lib-") as tmp:
        for info in zf.infolist():
            name = info.filename
            if name.startswith("bitsandbytes/") and name.endswith(NATIVE_SUFFIXES) and "/triton/" not in name:
                lib_path = Path(zf.extract(info, tmp))
                libraries.append({"name": Path(name).name, "path": name, **library_facts(name),
                                  **binaries.read_library(lib_path, tool)})
                lib_path.unlink()
            elif name in loader_rules.SOURCE_FILES:
                sources[name] = zf.read(info).decode("utf-8", "replace")
    return {"schema": SCHEMA, **{k: wheel[k] for k in ("release", "platform", "filename", "sha256", "size")},
            "cuobjdump": binaries.cuobjdump_version(tool) if tool else None,
            "libraries": sorted(libraries, key=lambda lib: lib["name"]),
            "loader": loader_rules.extract(sources)}


def refresh(cache_dir: Path = CACHE_DIR, index: dict[str, Any] | None = None,
            only: Callable[[dict[str, Any]], bool] = lambda w: True,
            log: Callable[[str], None] = print, wheel_dir: Path | None = None) -> dict[str, Any]:
    """Read every wheel not yet cached at this SCHEMA; returns counts and timings for the log and BENCHMARKS.md.

    `wheel_dir` (default: $BNB_WHEEL_CACHE, else none) keeps downloaded wheels for the next reading; a wheel already
    there is used once its sha256 matches PyPI's.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = [w for w in list_wheels(index or fetch_index()) if only(w)]
    tool = binaries.find_cuobjdump()
    wheel_dir = wheel_dir or (Path(os.environ["BNB_WHEEL_CACHE"]) if os.environ.get("BNB_WHEEL_CACHE") else None)
    stats = {"wheels": len(wheels), "cached": 0, "read": 0, "bytes": 0, "download_s": 0.0, "read_s": 0.0}
    for wheel in wheels:
        target = cache_dir / f"{wheel['sha256']}.json"
        if target.exists() and json.loads(target.read_text() or "{}").get("schema", SCHEMA) >= SCHEMA:
            stats["cached"] += 1
            continue
        with tempfile.TemporaryDirectory(prefix="bnb-wheel-") as tmp:
            t0 = time.monotonic()
            path = fetch_wheel(wheel, Path(tmp), wheel_dir)
            t1 = time.monotonic()
            record = read_wheel(wheel, path, tool)
            t2 = time.monotonic()
        target.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        stats["read"] += 1
        stats["bytes"] += wheel["size"]
        stats["download_s"] += t1 - t0
        stats["read_s"] += t2 - t1
        log(f"{wheel['filename']}: {len(record['libraries'])} libraries, {wheel['size'] / 1e6:.0f} MB, "
            f"download {t1 - t0:.1f} s, read {t2 - t1:.1f} s")
    return stats


def fetch_wheel(wheel: dict[str, Any], tmp: Path, wheel_dir: Path | None) -> Path:
    """The wheel's local path: from `wheel_dir` when it holds it with the right sha256, else downloaded."""
    if wheel_dir is not None:
        kept = wheel_dir / wheel["filename"]
        if kept.exists() and hashlib.sha256(kept.read_bytes()).hexdigest() == wheel["sha256"]:
            return kept
        wheel_dir.mkdir(parents=True, exist_ok=True)
        part = kept.with_name(kept.name + f".{os.getpid()}.part")
        download(wheel["url"], wheel["sha256"], part)
        part.replace(kept)
        return kept
    path = tmp / wheel["filename"]
    download(wheel["url"], wheel["sha256"], path)
    return path


def load_cache(cache_dir: Path = CACHE_DIR) -> list[dict[str, Any]]:
    """Every cached wheel reading, oldest release first."""
    records = [json.loads(p.read_text()) for p in sorted(cache_dir.glob("*.json"))]
    return sorted(records, key=lambda r: (Version(r["release"]), r["platform"]))


def main() -> None:
    """`python -m matrix.predict.wheels`: read every bitsandbytes wheel and torch build not yet cached (nox -s
    binaries)."""
    t0 = time.monotonic()
    stats = refresh()
    read_torch = torch_builds.refresh()
    print(f"bitsandbytes wheels: {stats['wheels']} listed, {stats['cached']} cached, {stats['read']} read "
          f"({stats['bytes'] / 1e9:.2f} GB, download {stats['download_s']:.0f} s, read {stats['read_s']:.0f} s); "
          f"torch builds read: {read_torch}; {time.monotonic() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
