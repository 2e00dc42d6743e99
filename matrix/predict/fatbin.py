"""Our own reader of NVIDIA fat binaries: which SASS (sm_XX) and PTX (compute_XX) entries a library carries.

It is the independent second reading beside NVIDIA's `cuobjdump` (see `matrix.predict.binaries`): it walks the
`.nv_fatbin` section (ELF) or `.nv_fatb` section (Windows PE) container by container and reads each entry's
kind and architecture from its header, never its payload, so compressed entries are read too. The layout
(documented by people who parsed it, e.g. nvopen-tools' FORMAT_SPECIFICATION.md):

    container: u32 magic 0xBA55ED50, u16 version 1, u16 header size 16, u64 size of the entries that follow
    entry:     u16 kind (1 PTX, 2 ELF), u16 ?, u32 entry header size, u64 payload size (padded),
               u32 compressed size, u32 ?, u16 minor, u16 major, u32 arch (e.g. 90), ...
               the payload follows the entry header; the next entry follows the payload.

Any structure that does not fit raises `FatbinError`: a reading that stopped early must not look like a
library compiled for fewer architectures. Stdlib only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = 0xBA55ED50
HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of what follows
ENTRY = struct.Struct("<HHIQIIHHI")  # kind, ?, entry header size, payload size, compressed size, ?, minor, major, arch
KINDS = {1: "ptx", 2: "sass", 16: "sass"}  # 16: an alternative ELF kind cuobjdump also lists as ELF
COMPRESSED_FLAG = 0x2000  # in the u64 flags at offset 40 of the entry header


class FatbinError(ValueError):
    """The bytes are not a well-formed fat binary where one was expected."""


@dataclass
class FatbinReading:
    """What one fatbin section holds: the architectures per kind, and how many entries were read."""

    sass: set[str] = field(default_factory=set)
    ptx: set[str] = field(default_factory=set)
    containers: int = 0
    entries: int = 0
    compressed: int = 0
    other_kinds: dict[int, int] = field(default_factory=dict)  # entry kinds we do not know, with counts

    def as_dict(self) -> dict[str, object]:
        return {"sass": sorted(self.sass, key=arch_number), "ptx": sorted(self.ptx, key=arch_number),
                "containers": self.containers, "entries": self.entries, "compressed": self.compressed,
                "other_kinds": {str(k): v for k, v in sorted(self.other_kinds.items())}}


def arch_number(arch: str) -> int:
    """`sm_90a` -> 90, `compute_120` -> 120 (sort key and the number a GPU is compared with)."""
    digits = "".join(ch for ch in arch.split("_", 1)[-1] if ch.isdigit())
    return int(digits) if digits else 0


def read_fatbin(data: bytes) -> FatbinReading:
    """Read every container in `data` (a fatbin section's bytes; zero padding between containers is skipped)."""
    reading = FatbinReading()
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # containers are padded to alignment with zeros
            pos += 1
            continue
        if len(data) - pos < HEADER.size:
            raise FatbinError(f"{len(data) - pos} stray bytes at offset {pos:#x}")
        magic, _version, header_size, size = HEADER.unpack_from(data, pos)
        if magic != MAGIC:
            raise FatbinError(f"no fatbin magic at offset {pos:#x} (found {magic:#010x})")
        end = pos + header_size + size
        if header_size < HEADER.size or end > len(data):
            raise FatbinError(f"container at {pos:#x} claims {size} bytes, past the end of the section")
        _read_entries(data, pos + header_size, end, reading)
        reading.containers += 1
        pos = end
    return reading


def _read_entries(data: bytes, pos: int, end: int, reading: FatbinReading) -> None:
    while pos < end:
        if end - pos < ENTRY.size:
            raise FatbinError(f"truncated entry header at offset {pos:#x}")
        kind, _, entry_size, payload, _, _, _, _, arch = ENTRY.unpack_from(data, pos)
        if entry_size < ENTRY.size or pos + entry_size + payload > end:
            raise FatbinError(f"entry at {pos:#x} (header {entry_size}, payload {payload}) overruns its container")
        flags = struct.unpack_from("<Q", data, pos + 40)[0] if entry_size >= 48 else 0
        reading.entries += 1
        reading.compressed += bool(flags & COMPRESSED_FLAG)
        name = KINDS.get(kind)
        if name == "sass":
            reading.sass.add(f"sm_{arch}")
        elif name == "ptx":
            reading.ptx.add(f"compute_{arch}")
        else:
            reading.other_kinds[kind] = reading.other_kinds.get(kind, 0) + 1
        pos += entry_size + payload
