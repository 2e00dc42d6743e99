"""Predicted cells: what a (GPU architecture, torch build, bitsandbytes release) should do, from the binaries.

Pure functions over the cached readings (`matrix.predict.wheels.load_cache`, `matrix.predict.torch_builds.load_builds`):
1. torch itself must carry SASS for the GPU (same major, lower or equal minor) or PTX at or below it;
2. the release's loader rule (`matrix.predict.loader_rules`) names `libbitsandbytes_cudaXY` from torch's CUDA version:
   it must be in the wheel;
3. that library must carry SASS the GPU can run, else PTX the driver can JIT-compile.
A step that rests on an unreadable or disputed reading is "unknown", never a failure.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from packaging.version import Version

from matrix.predict import binaries, loader_rules
from matrix.predict.fatbin import arch_number
from matrix.predict.gpus import Gpu

# The GPUs the page predicts for: compute capability (as sm_XY) and example cards.
GPUS = {
    "sm_60": "Tesla P100", "sm_61": "GTX 1080, Tesla P40", "sm_70": "Tesla V100", "sm_75": "T4, RTX 20xx",
    "sm_80": "A100", "sm_86": "RTX 30xx, A10, A40", "sm_89": "L4, L40S, RTX 40xx", "sm_90": "H100, H200",
    "sm_100": "B200, GB200", "sm_120": "RTX 50xx, RTX PRO 6000",
}
PLATFORM = "linux-x86_64"
VERDICTS = {  # verdict -> (label, signature slug a failure would show)
    "loads": ("loads", None),
    "loads-ptx-jit": ("loads via PTX JIT", None),
    "no-library": ("no library for this CUDA version", "native-library-missing"),
    "no-kernel": ("no kernel for this GPU", "no-kernel-image"),
    "torch-unsupported": ("torch does not support this GPU", "no-kernel-image"),
    "unknown": ("unknown", None),
}


def split_cc(arch: str) -> tuple[int, int]:
    """`sm_86` -> (8, 6); `sm_120` -> (12, 0)."""
    number = arch_number(arch)
    return number // 10, number % 10


def sass_runs_on(sass: str, gpu: str) -> bool:
    """SASS runs on GPUs of the same major version with an equal or higher minor (sm_80 code on an sm_86)."""
    (smaj, smin), (gmaj, gmin) = split_cc(sass), split_cc(gpu)
    return smaj == gmaj and smin <= gmin


def ptx_jits_on(ptx: str, gpu: str) -> bool:
    """PTX for compute_XY can be JIT-compiled for any GPU of that capability or newer."""
    return split_cc(ptx) <= split_cc(gpu)


def torch_support(build: dict[str, Any], gpu: str) -> str:
    """"yes", "no" or "unknown": does this torch build carry kernels for the GPU?"""
    archs = build.get("archs")
    if not archs:
        return "unknown"
    if any(a.startswith("sm_") and sass_runs_on(a, gpu) for a in archs):
        return "yes"
    return "yes" if any(a.startswith("compute_") and ptx_jits_on(a, gpu) for a in archs) else "no"


def kernel_for(library: dict[str, Any], gpu: str) -> tuple[str, str]:
    """(verdict, detail) for one CUDA library on one GPU: loads, loads-ptx-jit, no-kernel or unknown."""
    cov = binaries.coverage(library)
    failed = not binaries.readers_agree(library)
    sass = [a for a, status in cov["sass"].items() if sass_runs_on(a, gpu)]
    if any(cov["sass"][a] == "compiled" for a in sass):
        return "loads", f"SASS {', '.join(sorted(a for a in sass if cov['sass'][a] == 'compiled'))}"
    ptx = [a for a, status in cov["ptx"].items() if ptx_jits_on(a, gpu)]
    if any(cov["ptx"][a] == "compiled" for a in ptx):
        best = max((a for a in ptx if cov["ptx"][a] == "compiled"), key=arch_number)
        return "loads-ptx-jit", f"no SASS for {gpu}; PTX {best} JIT-compiled by the driver on first use"
    if failed or sass or ptx:
        problem = library.get("cuobjdump", {}).get("error") or library.get("fatbin", {}).get("error")
        return "unknown", f"the readers disagree or failed on this library ({problem or 'different arch lists'})"
    built = ", ".join(sorted(cov["sass"], key=arch_number)) or "nothing"
    return "no-kernel", f"SASS only for {built} and no PTX at or below {gpu}"


def predict_cell(gpu: Gpu | str, build: dict[str, Any], wheel: dict[str, Any], *,
                 evidence: dict[str, Any] | None = None, bnb_cuda_version: str | None = None,
                 driver: str | None = None, glibc: str | None = None, system_cuda: str | None = None,
                 platform: str | None = None) -> dict[str, Any]:
    """The prediction for one (GPU, torch build, bitsandbytes wheel), with its reason and signature slug.

    `gpu`: a `Gpu` (`matrix.predict.gpus.find_gpu`) or an arch "sm_86"; `build`: a torch build (build, cuda,
    archs); `wheel`: a wheel reading. Keywords describe the user's system where known (None: not considered):
    `evidence` the loader's evidence lines when the wheel record has none, `bnb_cuda_version` the value of
    BNB_CUDA_VERSION, `driver` the NVIDIA driver version, `glibc` the C library version, `system_cuda` the CUDA
    runtime found on the system (what releases before 0.43 pick by), `platform` the user's platform.
    """
    gpu = gpu.sm if isinstance(gpu, Gpu) else gpu
    row = {"gpu_arch": gpu, "gpus": GPUS.get(gpu, ""), "torch": build["build"], "torch_cuda": build.get("cuda"),
           "bnb": wheel["release"], "platform": wheel["platform"], "library": None}
    support = torch_support(build, gpu)
    rule = loader_rules.rule(wheel["loader"])
    shipped = [lib["cuda"] for lib in wheel["libraries"] if lib.get("cuda") and not lib["nocublaslt"]]
    name = loader_rules.library_name(rule, build["cuda"], shipped) if build.get("cuda") else None

    def done(verdict: str, reason: str) -> dict[str, Any]:
        return {**row, "verdict": verdict, "label": VERDICTS[verdict][0], "signature": VERDICTS[verdict][1],
                "reason": reason, "torch_supports_gpu": support, "rule_at": rule["template_at"]}

    if support == "no":
        return done("torch-unsupported", f"torch {build['build']} is built for {' '.join(build['archs'])}: no "
                                         f"kernel for {gpu}, so CUDA work fails before bitsandbytes runs")
    if name is None:
        return done("unknown", "the release's loader rule could not be read from its source")
    library = next((lib for lib in wheel["libraries"] if lib["name"].split(".")[0] == name), None)
    row["library"] = name
    if library is None:
        fallback = {"cpu-fallback": "it loads the CPU library instead (warning), and GPU 4-bit fails later",
                    "error-on-use": "the first native call raises an error naming the missing file",
                    "import-error": "importing bitsandbytes raises"}.get(rule["missing"], "what follows is unknown")
        return done("no-library", f"torch has CUDA {build['cuda']}, the release loads {name}, which the wheel does "
                                  f"not ship (it ships CUDA {', '.join(shipped)}); {fallback}")
    verdict, detail = kernel_for(library, gpu)
    reasons = {"loads": f"{name} carries {detail}",
               "loads-ptx-jit": f"{name}: {detail}; needs a driver that supports CUDA {library.get('cuda')}",
               "no-kernel": f"{name}: {detail}", "unknown": f"{name}: {detail}"}
    if verdict in ("loads", "loads-ptx-jit") and support == "unknown":
        return done("unknown", reasons[verdict] + f"; torch {build['build']}'s arch list is unknown")
    return done(verdict, reasons[verdict])


def torch_build_list(read: list[dict[str, Any]], axes_builds: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Torch builds to predict for: every PyPI default build read, plus the axes' builds (CUDA from the variant,
    arch list from the matching PyPI read when it is the same build, else unknown)."""
    builds = {r["version"]: {"build": r["version"], "cuda": r.get("cuda"), "archs": r.get("archs"),
                             "source": r.get("filename")} for r in read if r.get("version")}
    for name, spec in (axes_builds or {}).items():
        variant = spec.get("variant", "") if isinstance(spec, dict) else getattr(spec, "variant", "")
        if name in builds or not variant.startswith("cu"):
            continue
        digits = variant[2:]
        builds[name] = {"build": name, "cuda": f"{digits[:-1]}.{digits[-1]}", "archs": None,
                        "source": "the axes (variant); its wheel was not readable from here"}
    return sorted(builds.values(), key=lambda b: (Version(b["build"].split("+")[0]), b["build"]))


def predictions(wheels: list[dict[str, Any]], builds: list[dict[str, Any]], gpus: Any = GPUS,
                platform: str = PLATFORM) -> pd.DataFrame:
    """One row per (GPU arch, torch build, bitsandbytes release) for one platform's wheels."""
    rows = [predict_cell(gpu, build, wheel) for wheel in wheels if wheel["platform"] == platform
            for build in builds if build.get("cuda") for gpu in gpus]
    return pd.DataFrame(rows)
