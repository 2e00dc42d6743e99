"""Read one native library of a bitsandbytes wheel: what it needs, and which GPU code the runtime can load from it.

Each fatbin section (`.nv_fatbin`, the device-linked code, and `__nv_relfatbin`, the relocatable code whose PTX
the runtime JIT-links when no SASS fits; on Windows `.nv_fatb` and `__nv_rel`) is read three ways:
- our header walk (`matrix.predict.fatbin.read_fatbin`): kind and architecture from each entry header;
- our payload reading (`read_payloads`): the architecture each cubin's ELF header or PTX text states;
- NVIDIA's `cuobjdump --list-elf --list-ptx` (the `nvidia-cuda-cuobjdump` wheel): on the library for the linked
  section, on the extracted section's bytes for the relocatable one (and for Windows DLLs, which it cannot open).
No older cuobjdump is published on PyPI (`nvidia-cuda-cuobjdump` starts at 13.2), and 13.x stops with "Invalid
ELF" on the CUDA 12.0-12.2 libraries' linked fatbin; there the payload reading is the second reading.

`coverage_by_section()` turns them into per-architecture verdicts: an architecture the header walk lists and a
second reading confirms, with no complete reading missing it, is "compiled"; anything else a reader lists is
"unknown", never "not compiled". Tool errors are kept as short typed reasons only (`problem()`), never a tool's
message or a file path. The glibc, libstdc++ (GLIBCXX) and C++ ABI (CXXABI) floors come from the library's
version-needs section (`.gnu.version_r`).
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from matrix.predict.fatbin import FatbinError, arch_number, read_fatbin, read_payloads

SECTIONS = {"nv_fatbin": (".nv_fatbin", ".nv_fatb"), "relfatbin": ("__nv_relfatbin", "__nv_rel")}  # (ELF, PE)
ELF_SECTION, PE_SECTION = SECTIONS["nv_fatbin"]
READING_KEYS = {"nv_fatbin": "fatbin", "relfatbin": "relfatbin"}  # section -> key of its header reading
CUOBJDUMP_TIMEOUT_S = 300
NO_DEVICE_CODE = "does not contain device code"
FLOORS = {"glibc": "GLIBC_", "glibcxx": "GLIBCXX_", "cxxabi": "CXXABI_"}
_LISTED = re.compile(r"^(ELF|PTX) file\s+\d+:\s+\S*?\.(sm_\d+[a-z]?)\.(?:cubin|ptx)\s*$")
_TOOL_REASONS = (("invalid elf", "invalid ELF"), ("has been removed", "architecture no longer supported"),
                 ("no fatbin", "no fatbin found"), ("not a fatbin", "not a fatbin"), ("out of memory", "out of memory"),
                 ("unsupported", "unsupported input"))


def find_cuobjdump() -> str | None:
    """cuobjdump from the `nvidia-cuda-cuobjdump` wheel next to this interpreter, else from PATH."""
    prefix = Path(sys.prefix) / "lib"
    found = sorted(glob.glob(str(prefix / "python3*/site-packages/nvidia/cu*/bin/cuobjdump")))
    found += sorted(glob.glob(str(prefix / "python3*/site-packages/nvidia/cuda_cuobjdump/bin/cuobjdump")))
    return found[-1] if found else shutil.which("cuobjdump")


def cuobjdump_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], check=False, capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"release (\S+?),? ", out) or re.search(r"V(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else "unknown"


def parse_cuobjdump(text: str) -> dict[str, list[str]]:
    """`ELF file 3: x.sm_90a.cubin` / `PTX file 1: x.sm_75.ptx` lines -> {"sass": [sm_90a], "ptx": [compute_75]}."""
    sass: set[str] = set()
    ptx: set[str] = set()
    for line in text.splitlines():
        match = _LISTED.match(line.strip())
        if match:
            kind, arch = match.groups()
            (sass if kind == "ELF" else ptx).add(arch if kind == "ELF" else arch.replace("sm_", "compute_"))
    return {"sass": sorted(sass, key=arch_number), "ptx": sorted(ptx, key=arch_number)}


def tool_reason(exit_code: int, text: str) -> str:
    """A short typed reason for a cuobjdump failure; its own words and any path stay out of our data."""
    lowered = text.lower()
    return "cuobjdump: " + next((reason for key, reason in _TOOL_REASONS if key in lowered), f"exit {exit_code}")


def run_cuobjdump(tool: str | None, path: Path) -> dict[str, Any]:
    """NVIDIA's reading of one library or fatbin file; `error` (a short reason) is set when it could not read it."""
    if tool is None:
        return {"sass": [], "ptx": [], "error": "cuobjdump: not installed"}
    try:
        proc = subprocess.run([tool, "--list-elf", "--list-ptx", str(path)], check=False, capture_output=True,
                              text=True, timeout=CUOBJDUMP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"sass": [], "ptx": [], "error": "cuobjdump: timed out"}
    except OSError:
        return {"sass": [], "ptx": [], "error": "cuobjdump: could not run"}
    listed = parse_cuobjdump(proc.stdout)
    if NO_DEVICE_CODE in proc.stderr + proc.stdout:  # a CPU/ROCm/XPU library: an answer, not a failure
        return {**listed, "error": None, "device_code": False}
    failed = proc.returncode != 0 or "fatal" in proc.stderr.lower()
    return {**listed, "error": tool_reason(proc.returncode, proc.stderr + proc.stdout) if failed else None}


def highest_versions(names: list[str]) -> dict[str, str | None]:
    """{"glibc": "GLIBC_2.34", "glibcxx": ..., "cxxabi": ...}: the highest version of each family in `names`."""
    def key(name: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", name.split("_", 1)[1]))

    return {floor: max((n for n in names if re.fullmatch(re.escape(prefix) + r"\d+(\.\d+)*", n)), key=key,
                       default=None) for floor, prefix in FLOORS.items()}


def elf_facts(path: Path) -> dict[str, Any]:
    """DT_NEEDED entries, version needs and the two fatbin sections' bytes (None: absent) of an ELF library."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    with path.open("rb") as fh:
        elf = ELFFile(fh)
        needed = [str(getattr(tag, "needed", "")) for sec in elf.iter_sections() if isinstance(sec, DynamicSection)
                  for tag in sec.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
        versions = [str(aux.name) for sec in elf.iter_sections() if isinstance(sec, GNUVerNeedSection)
                    for _, auxes in sec.iter_versions() for aux in auxes]
        sections = {}
        for key, (elf_name, _) in SECTIONS.items():
            section = elf.get_section_by_name(elf_name)
            sections[key] = section.data() if section is not None else None
    return {"needed": needed, "versions": versions, "sections": sections}


def pe_facts(path: Path) -> dict[str, Any]:
    """Imported DLLs and the two fatbin sections' bytes (None: absent) of a Windows DLL."""
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    needed = [entry.dll.decode("ascii", "replace") for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    names = {s.Name.rstrip(b"\0").decode("ascii", "replace"): s for s in pe.sections}
    sections = {key: (names[pe_name].get_data()[: names[pe_name].Misc_VirtualSize or None]
                      if pe_name in names else None) for key, (_, pe_name) in SECTIONS.items()}
    return {"needed": needed, "versions": [], "sections": sections}


def section_readings(data: bytes | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header reading, payload reading) of one fatbin section's bytes (None: the library has no such section)."""
    if data is None:
        empty = {"sass": [], "ptx": [], "section": False, "error": None}
        return empty, dict(empty)
    try:
        header: dict[str, Any] = {**read_fatbin(data).as_dict(), "section": True, "section_bytes": len(data),
                                  "error": None}
    except FatbinError as exc:
        header = {"sass": [], "ptx": [], "section": True, "error": str(exc)}
    try:
        payload: dict[str, Any] = {**read_payloads(data).as_dict(), "section": True, "error": None}
    except FatbinError as exc:
        payload = {"sass": [], "ptx": [], "section": True, "error": str(exc)}
    return header, payload


def read_library(path: Path, tool: str | None) -> dict[str, Any]:
    """Every reading of one native library (see the module docstring)."""
    size = path.stat().st_size
    try:
        is_pe = path.read_bytes()[:2] == b"MZ"
        facts = pe_facts(path) if is_pe else elf_facts(path)
    except Exception as exc:  # noqa: BLE001 - a malformed file is data ("unknown"), not a crash of the refresh
        reason = f"{'pe' if path.read_bytes()[:2] == b'MZ' else 'elf'}: unreadable ({type(exc).__name__})"
        return {"format": "unknown", "size": size, "needed": [], "fatbin": {"error": reason},
                "relfatbin": {"error": reason}, "payload": {}, "cuobjdump": {"error": reason},
                **dict.fromkeys(FLOORS)}
    record: dict[str, Any] = {"format": "pe" if is_pe else "elf", "size": size, "needed": facts["needed"],
                              **highest_versions(facts["versions"]), "payload": {}}
    for key, data in facts["sections"].items():
        record[READING_KEYS[key]], record["payload"][key] = section_readings(data)
    nvidia = _cuobjdump_section(tool, facts["sections"]["nv_fatbin"]) if is_pe else run_cuobjdump(tool, path)
    if facts["sections"]["relfatbin"] is not None:
        nvidia["relfatbin"] = _cuobjdump_section(tool, facts["sections"]["relfatbin"])
    record["cuobjdump"] = nvidia
    return record


def _cuobjdump_section(tool: str | None, data: bytes | None) -> dict[str, Any]:
    """cuobjdump on one section's bytes, written to a `.fatbin` file of its own (cuobjdump reads bare fatbins)."""
    if data is None:
        return {"sass": [], "ptx": [], "error": None, "device_code": False}
    with tempfile.TemporaryDirectory(prefix="bnb-fatbin-") as tmp:
        target = Path(tmp) / "section.fatbin"
        target.write_bytes(data)
        return {**run_cuobjdump(tool, target), "input": "the extracted section"}


def _section_parts(library: dict[str, Any], section: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header reading, [second readings]) of one section of a cached library reading (schema 1 or 2)."""
    header = library.get(READING_KEYS[section]) or {}
    nvidia = library.get("cuobjdump") or {}
    tool = nvidia if section == "nv_fatbin" else nvidia.get("relfatbin")
    seconds = [r for r in (tool, (library.get("payload") or {}).get(section)) if r is not None]
    return header, seconds


def _complete(reading: dict[str, Any]) -> bool:
    return not reading.get("error") and not reading.get("unread") and not reading.get("mismatched")


def coverage_by_section(library: dict[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """{"nv_fatbin": {"sass": {"sm_90": "compiled" | "unknown"}, "ptx": {...}}, "relfatbin": {...}}.

    An architecture missing from a section's mapping is not in that section: the header walk read the whole
    section and a complete second reading agrees. Arch-specific variants (sm_90a) count as their number.
    """
    result: dict[str, dict[str, dict[str, str]]] = {}
    for section in SECTIONS:
        header, seconds = _section_parts(library, section)
        result[section] = {"sass": {}, "ptx": {}}
        for kind, prefix in (("sass", "sm_"), ("ptx", "compute_")):
            ours = {arch_number(a) for a in header.get(kind, [])}
            listed = [(r, {arch_number(a) for a in r.get(kind, [])}) for r in seconds]
            for number in ours.union(*(archs for _, archs in listed)):
                confirmed = any(number in archs and not r.get("error") for r, archs in listed)
                denied = any(number not in archs and _complete(r) for r, archs in listed)
                good = not header.get("error") and number in ours and confirmed and not denied
                result[section][kind][f"{prefix}{number}"] = "compiled" if good else "unknown"
    return result


def coverage(library: dict[str, Any]) -> dict[str, dict[str, str]]:
    """What the runtime can load, all sections together: {"sass": {...}, "ptx": {...}} ("compiled" wins).

    SASS counts from the linked `.nv_fatbin` only; PTX from either section (relocatable PTX is JIT-compiled and
    linked by the runtime at first launch: slow, but it runs; see `ptx_section`).
    """
    by_section = coverage_by_section(library)
    merged: dict[str, dict[str, str]] = {"sass": dict(by_section["nv_fatbin"]["sass"]), "ptx": {}}
    for section in SECTIONS:
        for arch, status in by_section[section]["ptx"].items():
            if merged["ptx"].get(arch) != "compiled":
                merged["ptx"][arch] = status
    return merged


def ptx_section(library: dict[str, Any], arch: str) -> str | None:
    """Where the compiled PTX `arch` sits: "nv_fatbin" (linked) before "relfatbin" (relocatable), None: nowhere."""
    by_section = coverage_by_section(library)
    number = arch_number(arch)
    return next((s for s in SECTIONS if by_section[s]["ptx"].get(f"compute_{number}") == "compiled"), None)


def problem(library: dict[str, Any]) -> str | None:
    """The short reason some code of this library is unknown (None: every architecture any reader lists is
    confirmed). Only our typed reasons: "cuobjdump: invalid ELF", "payload: zstd not installed", ..."""
    by_section = coverage_by_section(library)
    reasons: list[str] = []
    for section in SECTIONS:
        header, seconds = _section_parts(library, section)
        statuses = [s for kind in by_section[section].values() for s in kind.values()]
        if header.get("error"):
            reasons.append(str(header["error"]))
        elif "unknown" in statuses or (header.get("section") and not any(not r.get("error") for r in seconds)):
            reasons += [str(r["error"]) for r in seconds if r.get("error")]
            reasons += [str(k) for r in seconds for k in (r.get("unread") or {})]
            if not reasons:
                reasons.append("readers disagree")
    return "; ".join(dict.fromkeys(reasons)) or None


def readers_agree(library: dict[str, Any]) -> bool:
    """True when every architecture any reader lists, in any section, is confirmed (see `problem`)."""
    return problem(library) is None
