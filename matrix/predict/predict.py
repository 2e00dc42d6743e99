"""Predicted cells: what a (GPU, torch build, bitsandbytes wheel) should do, from the binaries, step by step.

Pure functions over the cached readings. `predict_cell` walks the chain a real import walks, and stops at the
first step that fails; every step adds a fact (with where it comes from) to the cell's `chain`:
1. Jetson boards (L4T) stop first: the PyPI aarch64 wheel is built against the server (SBSA) CUDA stack and fails
   there with "named symbol not found", whatever code it carries;
2. torch must carry SASS for the GPU (same major, lower or equal minor) or PTX at or below it, and the driver must
   be new enough for torch's CUDA (`matrix.predict.drivers`);
3. the release's loader rule (`matrix.predict.loader_rules`, read from its own source) names a library from the
   CUDA version, the GPU (`_nocublaslt` below sm_75 to 0.44) and BNB_CUDA_VERSION: the wheel must ship it;
4. that library must load: the system's glibc at or above the highest GLIBC_x.y it needs;
5. it must carry SASS the GPU runs, else PTX the driver JIT-compiles (relocatable PTX is JIT-linked at the first
   launch: slow, but it runs), with a driver new enough for that library's CUDA (for PTX: the toolkit's own driver).
A step that rests on an unreadable reading or an unknown input is "unknown", never a failure.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pandas as pd

from matrix.predict import binaries, drivers, gpus, loader_rules, loader_sources
from matrix.predict.fatbin import arch_number
from matrix.predict.gpus import Gpu

PLATFORM_ARCHS = {  # the architectures predicted per platform (GPUs found there)
    "linux-x86_64": ("sm_50", "sm_52", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90",
                     "sm_100", "sm_103", "sm_120"),
    "windows-x86_64": ("sm_50", "sm_52", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90",
                       "sm_120"),
    "linux-aarch64": ("sm_72", "sm_75", "sm_80", "sm_87", "sm_90", "sm_100", "sm_103", "sm_110", "sm_120", "sm_121"),
}
PLATFORM = "linux-x86_64"
VERDICTS = {  # verdict -> (label, signature slug a failure would show)
    "loads": ("loads", None),
    "loads-ptx-jit": ("loads via PTX JIT (slow first launch)", None),
    "no-library": ("no library for this CUDA version", "native-library-missing"),
    "setup-failed": ("CUDA setup fails at import", "cuda-setup-failed"),
    "no-kernel": ("no kernel for this GPU", "no-kernel-image"),
    "torch-unsupported": ("torch does not support this GPU", "no-kernel-image"),
    "glibc-too-old": ("glibc too old for the library", None),
    "driver-too-old": ("driver too old for this CUDA", None),
    "l4t-abi": ("PyPI wheel fails on Jetson (L4T)", "named-symbol-not-found"),
    "unknown": ("unknown", None),
}
MISSING = {  # the rule's `missing` -> (verdict, what the user sees)
    "cpu-fallback": ("no-library", "it loads the CPU library instead (a warning), and GPU 4-bit fails later"),
    "error-on-use": ("no-library", "the first native call raises an error naming the missing file"),
    "setup-failed": ("setup-failed", "importing bitsandbytes raises 'CUDA Setup failed despite GPU being available'"),
    "import-error": ("setup-failed", "importing bitsandbytes raises"),
}
_RULES: dict[tuple[str, str], dict[str, Any]] = {}
_KERNELS: dict[tuple[str, str, str], tuple[str, str]] = {}  # (wheel sha256, library, gpu) -> kernel_for's answer


@lru_cache(maxsize=4096)
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
    """"yes", "ptx", "no" or "unknown": does this torch build carry kernels for the GPU?"""
    archs = build.get("archs")
    if not archs:
        return "unknown"
    if any(a.startswith("sm_") and sass_runs_on(a, gpu) for a in archs):
        return "yes"
    return "ptx" if any(a.startswith("compute_") and ptx_jits_on(a, gpu) for a in archs) else "no"


def kernel_for(library: dict[str, Any], gpu: str, cov: dict[str, dict[str, str]] | None = None) -> tuple[str, str]:
    """(verdict, detail) for one CUDA library on one GPU: loads, loads-ptx-jit, no-kernel or unknown. `cov`: the
    library's `binaries.coverage`, when the caller asks for many GPUs (it is the costly part)."""
    cov = cov if cov is not None else binaries.coverage(library)
    sass = sorted((a for a, s in cov["sass"].items() if s == "compiled" and sass_runs_on(a, gpu)), key=arch_number)
    if sass:
        return "loads", f"SASS {' '.join(sass)}"
    ptx = [a for a, s in cov["ptx"].items() if s == "compiled" and ptx_jits_on(a, gpu)]
    if ptx:
        best = max(ptx, key=arch_number)
        how = ("relocatable PTX (__nv_relfatbin): JIT-compiled and linked by the runtime at the first launch, slow"
               if binaries.ptx_section(library, best) == "relfatbin"
               else "PTX: JIT-compiled by the driver at the first launch")
        return "loads-ptx-jit", f"no SASS for {gpu}; {how} ({best})"
    doubtful = [a for kind in cov.values() for a, s in kind.items() if s == "unknown"]
    if doubtful or not binaries.readers_agree(library):
        why = binaries.problem(library) or "the readers disagree"
        return "unknown", f"part of the library's code could not be confirmed ({why})"
    built = " ".join(sorted(cov["sass"], key=arch_number)) or "nothing"
    ptx_all = " ".join(sorted(cov["ptx"], key=arch_number)) or "none"
    return "no-kernel", f"SASS only for {built}, PTX {ptx_all}: nothing at or below {gpu}"


def release_rule(wheel: dict[str, Any], evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """The loader rule of a wheel's release: from `evidence` if given, else the whole source kept in
    results/binaries/loader/, else the lines kept in the wheel reading (cached per release)."""
    key = (wheel["release"], "given" if evidence is not None else "kept")
    if evidence is not None or key not in _RULES:
        found = evidence or loader_sources.evidence(wheel["release"]) or wheel.get("loader") or {}
        _RULES[key] = loader_rules.rule(found)
    return _RULES[key]


def glibc_floor(library: dict[str, Any]) -> str | None:
    """"2.34" from the library's highest GLIBC_2.34 version need (None: not read)."""
    value = library.get("glibc")
    return str(value).removeprefix("GLIBC_") if value else None


def older(have: str, need: str) -> bool:
    return tuple(int(x) for x in have.split(".")) < tuple(int(x) for x in need.split("."))


def as_gpu(gpu: Gpu | str) -> Gpu:
    if isinstance(gpu, Gpu):
        return gpu
    found = gpus.arch_gpu(gpu) if gpu.startswith("sm_") else gpus.find_gpu(gpu)
    if found is None:
        raise ValueError(f"GPU {gpu!r} is not in matrix/predict/data/gpus.toml: name a known GPU or an arch (sm_86)")
    return found


def predict_cell(gpu: Gpu | str, build: dict[str, Any], wheel: dict[str, Any], *,
                 evidence: dict[str, Any] | None = None, bnb_cuda_version: str | None = None,
                 driver: str | None = None, glibc: str | None = None, system_cuda: str | None = None,
                 platform: str | None = None) -> dict[str, Any]:
    """The prediction for one (GPU, torch build, bitsandbytes wheel): verdict, label, signature, reason, chain.

    `gpu`: a `Gpu` (`matrix.predict.gpus.find_gpu`), an arch "sm_86" or a name; `build`: a torch build (build, cuda,
    archs, archs_source); `wheel`: a wheel reading. Keywords describe the user's system where known (None: not
    considered): `evidence` the loader's evidence lines (instead of the kept source), `bnb_cuda_version` the value
    of BNB_CUDA_VERSION, `driver` the NVIDIA driver version, `glibc` the C library version, `system_cuda` the CUDA
    runtime found on the system (what 0.39-0.40 pick by), `platform` the user's platform (default: the wheel's).
    """
    card = as_gpu(gpu)
    sm, platform = card.sm, platform or wheel["platform"]
    row: dict[str, Any] = {
        "gpu_arch": sm, "gpus": gpus.names_by_arch().get(sm, card.name), "torch": build["build"],
        "torch_cuda": build.get("cuda"), "torch_index": build.get("index"), "torch_archs_kind": build.get("archs_kind"),
        "bnb": wheel["release"], "platform": platform, "library": None, "glibc_floor": None, "driver_floor": None}
    chain: list[dict[str, str]] = []
    rule = release_rule(wheel, evidence)

    def fact(step: str, text: str, source: str | None = None) -> None:
        chain.append({"step": step, "fact": text, "source": source or ""})

    def done(verdict: str, reason: str, signature: str | None = None) -> dict[str, Any]:
        return {**row, "verdict": verdict, "label": VERDICTS[verdict][0],
                "signature": signature or VERDICTS[verdict][1],
                "reason": reason, "torch_supports_gpu": support, "rule_at": rule.get("template_at"),
                "chain": chain}

    support = torch_support(build, sm)
    if platform != wheel["platform"]:
        fact("platform", f"{wheel.get('filename', 'the wheel')} holds {wheel['platform']} libraries only",
             "wheel reading")
        if str(wheel.get("filename", "")).endswith("-any.whl"):
            return done("setup-failed", f"pip installs this py3-none-any wheel on {platform} too, but its libraries "
                                        "are Linux x86-64 files that cannot load there: the CUDA setup fails at import")
        return done("unknown", f"the wheel is for {wheel['platform']}, not {platform}")
    if card.jetson and sm != "sm_110" and platform == "linux-aarch64":
        fact("platform", f"{card.name} runs L4T (JetPack), whose CUDA differs from the server (SBSA) stack the PyPI "
                         "aarch64 wheel is built for", "bnb issue reports (data/reports.jsonl)")
        return done("l4t-abi", "the PyPI aarch64 wheel fails on L4T with 'named symbol not found' (an ABI mismatch), "
                               "even where it carries SASS the GPU could run; build bitsandbytes on the device")
    archs = " ".join(build.get("archs") or []) or "unknown"
    fact("torch", f"torch {build['build']} (CUDA {build.get('cuda')}) is built for {archs}",
         f"{build.get('archs_kind', 'unknown')}: {build.get('archs_source', 'unknown')}")
    if support == "no":
        return done("torch-unsupported", f"torch {build['build']} is built for {archs}: no kernel for {sm}, so CUDA "
                                         "work fails before bitsandbytes runs")
    torch_driver = drivers.check(driver, build.get("cuda"), platform)
    if torch_driver["ok"] is False:
        fact("driver", torch_driver["reason"], drivers.SOURCE)
        return done("driver-too-old", f"torch's CUDA {build.get('cuda')}: {torch_driver['reason']}")
    shipped = [lib["cuda"] for lib in wheel["libraries"] if lib.get("cuda") and not lib["nocublaslt"]]
    if rule["version_from"] == "system libcudart" and system_cuda is None:
        fact("loader", f"bitsandbytes {wheel['release']} picks its library by the CUDA runtime (libcudart.so) it finds "
                       "on the system, not torch's; with none there (no toolkit on LD_LIBRARY_PATH, in conda or in "
                       "/usr/local/cuda) it loads the CPU library", rule.get("version_from_at"))
        return done("no-library", "assuming no CUDA runtime besides torch's own on the system: this release finds "
                                  "none, loads its CPU library and GPU 4-bit fails ('compiled without GPU support'); "
                                  "with a system CUDA X.Y it loads libbitsandbytes_cudaXY", "compiled-without-gpu")
    name, notes = loader_rules.library_name(rule, build.get("cuda"), shipped, capability=card.capability,
                                            override=bnb_cuda_version, system_cuda=system_cuda)
    pointer = rule.get("override_at") if bnb_cuda_version else rule.get("template_at")
    fact("loader", f"bitsandbytes {wheel['release']} loads {name or 'an unknown library'}: " + "; ".join(notes),
         pointer)
    if name is None:
        return done("unknown", notes[-1])
    row["library"] = name
    library = next((lib for lib in wheel["libraries"] if lib["name"].split(".")[0] == name), None)
    if library is None:
        verdict, what = MISSING.get(rule["missing"], ("unknown", "what follows is not known"))
        cudas = ", ".join(sorted(set(shipped))) or "none"
        fact("wheel", f"the {platform} wheel ships no {name} (its CUDA libraries: {cudas})", rule.get("missing_at"))
        return done(verdict, f"the release loads {name}, which the wheel does not ship (CUDA {cudas}); {what}")
    floor = row["glibc_floor"] = glibc_floor(library)
    if floor:
        fact("glibc", f"{name} needs GLIBC_{floor}", "the library's version needs (.gnu.version_r)")
        if glibc and older(glibc, floor):
            return done("glibc-too-old", f"{name} needs GLIBC_{floor}; glibc {glibc} cannot load it (dlopen fails: "
                                         f"version `GLIBC_{floor}' not found)")
    key = (wheel.get("sha256") or "", library["name"], sm)  # a committed reading never changes: cache by its sha256
    if not key[0] or key not in _KERNELS:
        _KERNELS[key] = kernel_for(library, sm)
    verdict, detail = _KERNELS[key]
    fact("code", f"{name}: {detail}", "fatbin readings (data/binaries.csv)")
    lib_driver = drivers.check(driver, library.get("cuda"), platform, ptx=verdict == "loads-ptx-jit")
    row["driver_floor"] = lib_driver["minimum"]
    if lib_driver["minimum"]:
        fact("driver", lib_driver["reason"], drivers.SOURCE)
    if lib_driver["ok"] is False and verdict in ("loads", "loads-ptx-jit"):
        return done("driver-too-old", f"{name} (CUDA {library.get('cuda')}): {lib_driver['reason']}")
    reason = f"{name}: {detail}"
    if verdict == "loads-ptx-jit":
        reason += f"; needs a driver >= {lib_driver['minimum']}" if lib_driver["minimum"] else ""
    if verdict in ("loads", "loads-ptx-jit") and support == "unknown":
        return done("unknown", reason + f"; torch {build['build']}'s arch list is unknown")
    if support == "ptx":
        reason += f"; torch itself runs on {sm} only through PTX JIT"
    return done(verdict, reason)


def predictions(wheels: list[dict[str, Any]], builds: list[dict[str, Any]],
                platform_archs: dict[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """One row per (GPU arch, torch build, bitsandbytes release, platform): every wheel against every CUDA torch
    build of its platform, for the architectures of `PLATFORM_ARCHS`."""
    archs = platform_archs or PLATFORM_ARCHS
    rows = [predict_cell(gpu, build, wheel) for wheel in wheels if wheel["platform"] in archs
            for build in builds if build.get("cuda") and build.get("platform", PLATFORM) == wheel["platform"]
            for gpu in archs[wheel["platform"]]]
    return pd.DataFrame(rows)
