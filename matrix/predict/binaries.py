"""Read one native library of a bitsandbytes wheel: what it needs, and which GPU architectures it carries.

Two independent readings of the fatbin, compared on every library:
- NVIDIA's `cuobjdump --list-elf --list-ptx` (the `nvidia-cuda-cuobjdump` wheel), and
- our own header walk over the fatbin section (`matrix.predict.fatbin`), found with pyelftools (ELF) or pefile (PE).
`coverage()` turns the two into per-architecture verdicts: an architecture both list is "compiled", one that
only one lists, or any architecture of a library where a reader failed, is "unknown", never "not compiled".
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from matrix.predict.fatbin import FatbinError, arch_number, read_fatbin

ELF_SECTION, PE_SECTION = ".nv_fatbin", ".nv_fatb"
CUOBJDUMP_TIMEOUT_S = 300
NO_DEVICE_CODE = "does not contain device code"
_LISTED = re.compile(r"^(ELF|PTX) file\s+\d+:\s+\S*?\.(sm_\d+[a-z]?)\.(?:cubin|ptx)\s*$")


def find_cuobjdump() -> str | None:
    """cuobjdump from the `nvidia-cuda-cuobjdump` wheel next to this interpreter, else from PATH."""
    prefix = Path(sys.prefix) / "lib"
    found = sorted(glob.glob(str(prefix / "python3*/site-packages/nvidia/cu*/bin/cuobjdump")))
    found += sorted(glob.glob(str(prefix / "python3*/site-packages/nvidia/cuda_cuobjdump/bin/cuobjdump")))
    return found[-1] if found else shutil.which("cuobjdump")


def cuobjdump_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], check=False, capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"release (\S+?),? ", out) or re.search(r"V(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else out.strip().splitlines()[-1] if out.strip() else "unknown"


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


def run_cuobjdump(tool: str | None, path: Path) -> dict[str, Any]:
    """NVIDIA's reading of one library; `error` is set (and the lists empty) when it could not read it."""
    if tool is None:
        return {"sass": [], "ptx": [], "error": "cuobjdump not installed (pip install nvidia-cuda-cuobjdump)"}
    try:
        proc = subprocess.run([tool, "--list-elf", "--list-ptx", str(path)], check=False, capture_output=True,
                              text=True, timeout=CUOBJDUMP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"sass": [], "ptx": [], "error": f"{type(exc).__name__}: {exc}"[:300]}
    listed = parse_cuobjdump(proc.stdout)
    error = None
    if NO_DEVICE_CODE in proc.stderr + proc.stdout:  # a CPU/ROCm/XPU library: an answer, not a failure
        return {**listed, "error": None, "device_code": False}
    if proc.returncode != 0:
        error = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return {**listed, "error": error}


def elf_facts(path: Path) -> tuple[list[str], bytes | None]:
    """(DT_NEEDED entries, the .nv_fatbin section's bytes or None) of an ELF shared library."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as fh:
        elf = ELFFile(fh)
        needed = [str(getattr(tag, "needed", "")) for sec in elf.iter_sections() if isinstance(sec, DynamicSection)
                  for tag in sec.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
        section = elf.get_section_by_name(ELF_SECTION)
        return needed, (section.data() if section is not None else None)


def pe_facts(path: Path) -> tuple[list[str], bytes | None]:
    """(imported DLLs, the .nv_fatb section's bytes or None) of a Windows DLL."""
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    needed = [entry.dll.decode("ascii", "replace") for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    for section in pe.sections:
        if section.Name.rstrip(b"\0").decode("ascii", "replace") == PE_SECTION:
            return needed, section.get_data()[: section.Misc_VirtualSize or None]
    return needed, None


def own_reading(path: Path) -> dict[str, Any]:
    """Our reading: needed libraries and the fatbin's architectures; `error` set when any step failed."""
    try:
        is_pe = path.read_bytes()[:2] == b"MZ"
        needed, section = pe_facts(path) if is_pe else elf_facts(path)
    except Exception as exc:  # noqa: BLE001 - a malformed file is data ("unknown"), not a crash of the refresh
        return {"format": "unknown", "needed": [], "fatbin": {"error": f"{type(exc).__name__}: {exc}"[:300]}}
    fmt = "pe" if is_pe else "elf"
    if section is None:
        return {"format": fmt, "needed": needed, "fatbin": {"sass": [], "ptx": [], "section": False, "error": None}}
    try:
        reading = read_fatbin(section).as_dict()
    except FatbinError as exc:
        return {"format": fmt, "needed": needed, "fatbin": {"section": True, "error": str(exc)}}
    return {"format": fmt, "needed": needed, "fatbin": {**reading, "section": True, "section_bytes": len(section),
                                                        "error": None}}


def read_library(path: Path, tool: str | None) -> dict[str, Any]:
    """Both readings of one native library (see the module docstring).

    cuobjdump on Linux does not read Windows DLLs ("does not contain device code"), but it reads a bare fatbin:
    for a PE file it is given the `.nv_fatb` section's bytes, written to a `.fatbin` file beside the DLL.
    """
    own = own_reading(path)
    target = path
    if own["format"] == "pe" and own["fatbin"].get("section"):
        target = path.with_suffix(".fatbin")
        target.write_bytes(pe_facts(path)[1] or b"")
    nvidia = run_cuobjdump(tool, target)
    if target != path:
        nvidia["input"] = "the .nv_fatb section"
        target.unlink()
    return {"format": own["format"], "size": path.stat().st_size, "needed": own["needed"],
            "fatbin": own["fatbin"], "cuobjdump": nvidia}


def coverage(library: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{"sass": {"sm_90": "compiled" | "unknown"}, "ptx": {...}} from the two readings of one library.

    An architecture missing from this mapping was not compiled (both readers read the whole fatbin and agree).
    Arch-specific variants (sm_90a) count as their number: cuobjdump names them, our header walk does not.
    """
    own, nvidia = library.get("fatbin", {}), library.get("cuobjdump", {})
    result: dict[str, dict[str, str]] = {"sass": {}, "ptx": {}}
    failed = bool(own.get("error") or nvidia.get("error"))
    for kind, prefix in (("sass", "sm_"), ("ptx", "compute_")):
        ours = {arch_number(a) for a in own.get(kind, [])}
        theirs = {arch_number(a) for a in nvidia.get(kind, [])}
        for number in ours | theirs:
            agreed = not failed and number in ours and number in theirs
            result[kind][f"{prefix}{number}"] = "compiled" if agreed else "unknown"
    return result


def readers_agree(library: dict[str, Any]) -> bool:
    """True when both readers read the library without error and list the same architectures."""
    cov = coverage(library)
    own, nvidia = library.get("fatbin", {}), library.get("cuobjdump", {})
    return not (own.get("error") or nvidia.get("error")) and all(
        v == "compiled" for kind in cov.values() for v in kind.values())
