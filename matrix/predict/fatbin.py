"""Our own reader of NVIDIA fat binaries: which SASS (sm_XX) and PTX (compute_XX) entries a fatbin carries.

A CUDA library built with separate compilation (`-rdc=true`, as bitsandbytes' CMake build does) has two:
`.nv_fatbin`, the device-linked code the runtime loads first (SASS only in bitsandbytes' libraries), and
`__nv_relfatbin`, the relocatable objects before the device link, which also hold the PTX of the highest
architecture. When no SASS fits the GPU, the runtime JIT-compiles and links that relocatable PTX at first launch
(shown on a GPU by scripts/jit_test/). Windows DLLs have one section, `.nv_fatb`.

Two readings of each section, independent of each other and of NVIDIA's `cuobjdump`:
- `read_fatbin`: the container and entry headers: each entry's kind and architecture field, payload unread.
- `read_payloads`: each entry's payload: a cubin's own ELF header (`e_flags` holds its SM) or a PTX text's
  `.target sm_XX` line. Compressed payloads are decompressed first: LZ4 block (flag 0x2000, CUDA 11-12) with
  `lz4`, Zstandard (flag 0x8000, CUDA 13) with `zstandard`; a payload that cannot be decompressed is counted as
  unread, so the payload reading says how much it saw.

The layout (documented by people who parsed it, e.g. nvopen-tools' FORMAT_SPECIFICATION.md, and checked
here on every bitsandbytes library since 0.39):

    container: u32 magic 0xBA55ED50, u16 version 1, u16 header size 16, u64 size of the entries that follow
    entry:     u16 kind (1 PTX, 2 ELF), u16 ?, u32 entry header size, u64 payload size (padded),
               u32 compressed size, u32 ?, u16 minor, u16 major, u32 arch (e.g. 90), u32 ?, u32 ?,
               u64 flags (0x2000 LZ4, 0x8000 zstd), u64 ?, u64 decompressed size, ...
               the payload follows the entry header; the next entry follows the payload.

Any structure that does not fit raises `FatbinError` with a short typed reason (never bytes or paths): a reading
that stopped early must not look like a library compiled for fewer architectures.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = 0xBA55ED50
HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of what follows
ENTRY = struct.Struct("<HHIQIIHHI")  # kind, ?, entry header size, payload size, compressed size, ?, minor, major, arch
KINDS = {1: "ptx", 2: "sass", 16: "sass"}  # 16: an alternative ELF kind cuobjdump also lists as ELF
COMPRESSED_FLAG = 0x2000  # LZ4 block, in the u64 flags at offset 40 of the entry header
ZSTD_FLAG = 0x8000  # Zstandard (CUDA 13's default for compressed entries)
ELF_MAGIC = b"\x7fELF"
_PTX_TARGET = re.compile(rb"^\s*\.target\s+sm_(\d+)[a-z]?", re.MULTILINE)


class FatbinError(ValueError):
    """The bytes are not a well-formed fat binary where one was expected (message: a short typed reason)."""


@dataclass
class Entry:
    """One fatbin entry: what its header says and its payload bytes as stored (maybe compressed)."""

    kind: int
    arch: int
    flags: int
    compressed_size: int
    decompressed_size: int
    payload: bytes


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


@dataclass
class PayloadReading:
    """The architectures the payloads themselves name; `unread` counts payloads we could not decompress."""

    sass: set[str] = field(default_factory=set)
    ptx: set[str] = field(default_factory=set)
    read: int = 0
    unread: dict[str, int] = field(default_factory=dict)  # reason -> count ("zstd not installed", ...)
    mismatched: int = 0  # payloads whose own architecture differs from their entry header's

    def as_dict(self) -> dict[str, object]:
        return {"sass": sorted(self.sass, key=arch_number), "ptx": sorted(self.ptx, key=arch_number),
                "read": self.read, "unread": dict(sorted(self.unread.items())), "mismatched": self.mismatched}


def arch_number(arch: str) -> int:
    """`sm_90a` -> 90, `compute_120` -> 120 (sort key and the number a GPU is compared with)."""
    digits = "".join(ch for ch in arch.split("_", 1)[-1] if ch.isdigit())
    return int(digits) if digits else 0


def iter_entries(data: bytes, counts: FatbinReading | None = None) -> Iterator[Entry]:
    """Every entry of every container in `data` (zero padding between containers is skipped)."""
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # containers are padded to alignment with zeros
            pos += 1
            continue
        if len(data) - pos < HEADER.size:
            raise FatbinError("fatbin: stray bytes after the last container")
        magic, _version, header_size, size = HEADER.unpack_from(data, pos)
        if magic != MAGIC:
            raise FatbinError("fatbin: no container magic")
        end = pos + header_size + size
        if header_size < HEADER.size or end > len(data):
            raise FatbinError("fatbin: container overruns its section")
        yield from _entries(data, pos + header_size, end)
        if counts is not None:
            counts.containers += 1
        pos = end


def _entries(data: bytes, pos: int, end: int) -> Iterator[Entry]:
    while pos < end:
        if end - pos < ENTRY.size:
            raise FatbinError("fatbin: truncated entry header")
        kind, _, entry_size, payload, compressed, _, _, _, arch = ENTRY.unpack_from(data, pos)
        if entry_size < ENTRY.size or pos + entry_size + payload > end:
            raise FatbinError("fatbin: entry overruns its container")
        flags = struct.unpack_from("<Q", data, pos + 40)[0] if entry_size >= 48 else 0
        decompressed = struct.unpack_from("<Q", data, pos + 56)[0] if entry_size >= 64 else 0
        start = pos + entry_size
        yield Entry(kind, arch, flags, compressed, decompressed, data[start: start + payload])
        pos = start + payload


def read_fatbin(data: bytes) -> FatbinReading:
    """The header reading of `data` (a fatbin section's bytes): kinds and architectures from the entry headers."""
    reading = FatbinReading()
    for entry in iter_entries(data, reading):
        reading.entries += 1
        reading.compressed += bool(entry.flags & (COMPRESSED_FLAG | ZSTD_FLAG))
        name = KINDS.get(entry.kind)
        if name == "sass":
            reading.sass.add(f"sm_{entry.arch}")
        elif name == "ptx":
            reading.ptx.add(f"compute_{entry.arch}")
        else:
            reading.other_kinds[entry.kind] = reading.other_kinds.get(entry.kind, 0) + 1
    return reading


def decompress(entry: Entry) -> bytes:
    """The entry's payload as the compiler wrote it; raises `FatbinError` with a typed reason when it cannot."""
    if not entry.flags & (COMPRESSED_FLAG | ZSTD_FLAG):
        return entry.payload
    stored = entry.payload[: entry.compressed_size or None]
    if entry.flags & ZSTD_FLAG:
        try:
            import zstandard
        except ImportError:
            raise FatbinError("payload: zstd not installed") from None
        try:
            return zstandard.ZstdDecompressor().decompress(stored, max_output_size=entry.decompressed_size or 1 << 30)
        except zstandard.ZstdError:
            raise FatbinError("payload: zstd data invalid") from None
    try:
        import lz4.block
    except ImportError:
        raise FatbinError("payload: lz4 not installed") from None
    try:
        return lz4.block.decompress(stored, uncompressed_size=entry.decompressed_size)
    except lz4.block.LZ4BlockError:
        raise FatbinError("payload: lz4 data invalid") from None


def cubin_arch(elf: bytes) -> int:
    """The SM of a cubin from its own ELF header: `e_flags` low byte (ABI version < 8, CUDA <= 12.x) or its
    second byte (ABI 8, or CUDA 13's OS/ABI 0x41)."""
    if elf[:4] != ELF_MAGIC or len(elf) < 52:
        raise FatbinError("payload: cubin without an ELF header")
    os_abi, abi_version = elf[7], elf[8]
    e_flags = struct.unpack_from("<I", elf, 48)[0]
    return e_flags & 0xFF if os_abi == 0x33 and abi_version < 8 else (e_flags >> 8) & 0xFF


def ptx_arch(text: bytes) -> int:
    """The SM a PTX text targets, from its `.target sm_XX` line."""
    match = _PTX_TARGET.search(text[:65536])
    if match is None:
        raise FatbinError("payload: PTX without a .target line")
    return int(match.group(1))


def read_payloads(data: bytes) -> PayloadReading:
    """The payload reading of `data`: each entry's architecture as its cubin or PTX text states it."""
    reading = PayloadReading()
    for entry in iter_entries(data):
        name = KINDS.get(entry.kind)
        if name is None:
            continue
        try:
            body = decompress(entry)
            arch = cubin_arch(body) if name == "sass" else ptx_arch(body)
        except FatbinError as exc:
            reading.unread[str(exc)] = reading.unread.get(str(exc), 0) + 1
            continue
        reading.read += 1
        reading.mismatched += arch != entry.arch
        (reading.sass if name == "sass" else reading.ptx).add(f"sm_{arch}" if name == "sass" else f"compute_{arch}")
    return reading
