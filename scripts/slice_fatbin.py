"""Cut a small real fixture out of a bitsandbytes library: its .nv_fatbin section, keeping only chosen entries.

    python scripts/slice_fatbin.py LIB.so OUT.fatbin sm_90 sm_120
    python scripts/slice_fatbin.py --section __nv_relfatbin LIB.so OUT.fatbin sm_90   # the relocatable fatbin

The kept entries are copied byte for byte; only the container header's size field is rewritten to match.
Used for tests/fixtures/binaries/ (both readers, cuobjdump and matrix.predict.fatbin, are tested on it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile

from matrix.predict.fatbin import ENTRY, HEADER, MAGIC


def slice_fatbin(section: bytes, keep: set[int]) -> bytes:
    """The first container of `section` with only the entries whose arch number is in `keep`."""
    magic, version, header_size, size = HEADER.unpack_from(section, 0)
    assert magic == MAGIC, "not a fatbin"
    pos, kept = header_size, b""
    while pos < header_size + size:
        entry_size, payload, arch = (ENTRY.unpack_from(section, pos)[i] for i in (2, 3, 8))
        if arch in keep:
            kept += section[pos: pos + entry_size + payload]
        pos += entry_size + payload
    return HEADER.pack(magic, version, header_size, len(kept)) + kept


if __name__ == "__main__":
    args = sys.argv[1:]
    name = ".nv_fatbin"
    if args[:1] == ["--section"]:
        name, args = args[1], args[2:]
    lib, out, *archs = args
    with open(lib, "rb") as fh:
        section = ELFFile(fh).get_section_by_name(name)
        if section is None:
            sys.exit(f"{lib}: no {name} section")
        data = section.data()
    Path(out).write_bytes(slice_fatbin(data, {int(a.split("_")[1]) for a in archs}))
