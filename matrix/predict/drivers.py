"""The NVIDIA driver a CUDA runtime needs, from NVIDIA's own tables, against a user's driver.

Two floors, both from NVIDIA:
- **minor version compatibility** (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html,
  Table 1, and the CUDA Toolkit Release Notes, Table 3): code built with any CUDA 13.x runs on a driver >= 580,
  12.x on >= 525.60.13 (Linux) / 527.41 (Windows), 11.x on >= 450.80.02 (Linux) / 452.39 (Windows);
- **PTX JIT**: minor version compatibility does not cover PTX, which the driver compiles: PTX made by CUDA X.Y needs
  a driver at least as new as the one CUDA X.Y shipped with (the release notes' Table 3, "Toolkit Driver Version",
  GA releases). Where X.Y is not in that table here, only the major floor is checked, and the answer says so.
"""

from __future__ import annotations

from typing import Any

SOURCE = ("NVIDIA CUDA Compatibility, 'Minor Version Compatibility' Table 1, and the CUDA Toolkit Release Notes, "
          "Table 3 (docs.nvidia.com/cuda/cuda-toolkit-release-notes)")
MAJOR_FLOOR = {  # CUDA major -> (Linux, Windows) minimum driver for minor version compatibility
    11: ("450.80.02", "452.39"),
    12: ("525.60.13", "527.41"),
    13: ("580", "580"),
}
TOOLKIT_DRIVER = {  # CUDA X.Y GA -> (Linux x86_64, Windows) driver shipped with it; None: not taken down here
    "11.7": ("515.43.04", "516.01"), "11.8": ("520.61.05", "520.06"),
    "12.0": ("525.60.13", "527.41"), "12.1": ("530.30.02", "531.14"), "12.2": ("535.54.03", "536.25"),
    "12.3": ("545.23.06", "545.84"), "12.4": ("550.54.14", "551.61"), "12.5": ("555.42.02", "555.85"),
    "12.6": ("560.28.03", "560.76"), "12.8": ("570.26", "570.65"), "12.9": ("575.51.03", "576.02"),
    "13.0": ("580.65.06", None),
}


def version_tuple(text: str) -> tuple[int, ...]:
    """"525.60.13" -> (525, 60, 13); a malformed version raises ValueError naming it."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        raise ValueError(f"driver version {text!r}: expected digits and dots, like 535.104.05") from None


def minimum(cuda: str, platform: str = "linux-x86_64", ptx: bool = False) -> tuple[str | None, str]:
    """(minimum driver, why) for a library built with CUDA `cuda` ("12.4") on `platform`; `ptx`: it runs PTX."""
    column = 1 if platform.startswith("windows") else 0
    major = int(cuda.split(".")[0])
    floor = MAJOR_FLOOR.get(major)
    if floor is None:
        return None, f"no driver floor is taken down here for CUDA {major}.x"
    if ptx:
        shipped = TOOLKIT_DRIVER.get(".".join(cuda.split(".")[:2]), (None, None))[column]
        if shipped:
            return shipped, f"PTX made by CUDA {cuda} is JIT-compiled by the driver: it needs the driver CUDA {cuda} " \
                            f"shipped with (>= {shipped})"
        return floor[column], f"CUDA {major}.x needs a driver >= {floor[column]} (minor version compatibility); " \
                              f"PTX made by CUDA {cuda} may need a newer one (not in the table here)"
    return floor[column], f"CUDA {major}.x needs a driver >= {floor[column]} (minor version compatibility)"


def check(driver: str | None, cuda: str | None, platform: str = "linux-x86_64", ptx: bool = False) -> dict[str, Any]:
    """{"ok": True/False/None, "minimum", "reason"} for a user's driver against a CUDA runtime; None: not known."""
    if not cuda:
        return {"ok": None, "minimum": None, "reason": "no CUDA runtime to check the driver against"}
    needed, why = minimum(cuda, platform, ptx)
    if driver is None or needed is None:
        return {"ok": None, "minimum": needed, "reason": why}
    ok = version_tuple(driver)[: len(version_tuple(needed))] >= version_tuple(needed)
    verdict = "meets" if ok else "is below"
    return {"ok": ok, "minimum": needed, "reason": f"driver {driver} {verdict} {needed}: {why}"}
