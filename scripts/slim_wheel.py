"""Repack a bitsandbytes wheel keeping only the native libraries a runner needs (the device carry is 64 MiB).

    python scripts/slim_wheel.py WHEEL OUTDIR --keep cpu cuda130 [cuda128]

The Python code is untouched; dropped binaries are removed from the wheel's RECORD too, so pip installs it
normally. Records measured with a slim wheel say so (BNB_MATRIX_INSTALL_NOTE), because bitsandbytes'
error messages list the binaries it found.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path


def slim(wheel: Path, outdir: Path, keep: list[str]) -> Path:
    """Write a copy of `wheel` into `outdir` without libbitsandbytes_<x>.so for x not in `keep`."""
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / wheel.name

    def wanted(name: str) -> bool:
        m = re.search(r"libbitsandbytes_(\w+?)\.(so|dll|dylib)$", name)
        return m is None or m.group(1) in keep

    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if not wanted(info.filename):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [ln for ln in data.decode().splitlines() if wanted(ln.split(",")[0])]
                data = ("\n".join(lines) + "\n").encode()
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--keep", nargs="+", required=True, help="library suffixes to keep, e.g. cpu cuda130")
    args = parser.parse_args()
    print(slim(args.wheel, args.outdir, args.keep))
