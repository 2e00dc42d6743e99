"""The setup made concrete, as the engine and the page need it: the GPU's architecture (from a name, an arch or
a compute capability), the platform, the torch build with its CUDA version and arch list, whether torch runs on the
GPU, the driver floors, and the library a bitsandbytes release loads (its loader rule: the CUDA version, the nearest
of the same major, `_nocublaslt` below sm_75, BNB_CUDA_VERSION's renaming, as `matrix.predict.loader_rules`)."""

from __future__ import annotations

import re
from typing import Any

from matrix.check.facts import normalise, vkey
from matrix.check.setup import Setup, arch_of
from matrix.predict.loader_rules import override_name


def arch_num(arch: str) -> int:
    return int(re.sub(r"\D", "", arch) or 0)


def torch_runs_on(archs: list[str] | None, arch: str) -> str:
    """"yes", "no" or "unknown": SASS of the same major at or below the GPU's minor, or PTX at or below it."""
    if not archs:
        return "unknown"
    g = arch_num(arch)
    for a in archs:
        n = arch_num(a)
        if a.startswith("sm_") and n // 10 == g // 10 and n <= g or a.startswith("compute_") and n <= g:
            return "yes"
    return "no"


def find_gpu(text: str, facts: dict[str, Any]) -> list[Any] | None:
    """[name, arch, jetson] for a GPU name or an arch ("T4", "NVIDIA GeForce RTX 5090", "sm_86", "8.6")."""
    arch = arch_of(text)
    if arch:
        return [arch, arch, arch in facts["jetson_archs"]]
    key = normalise(text)
    table = facts["gpus"]
    if not key:
        return None
    if key in table:
        return table[key]
    starts = [k for k in table if key.startswith(k) and not key[len(k):][:1].isdigit()]
    return table[max(starts, key=len)] if starts else None


def _cuda_of_variant(local: str) -> str:
    digits = local[2:]
    return f"{digits[:-1]}.{digits[-1]}" if digits.isdigit() and len(digits) >= 2 else ""


def resolve(setup: Setup, facts: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """(context, assumed, notes): the setup made concrete (arch, platform, torch build, CUDA, archs)."""
    assumed: list[str] = list(setup.assumed)
    notes: list[str] = []
    ctx: dict[str, Any] = {"gpu": "", "arch": "", "jetson": False, "platform": "", "torch": "", "cuda": "",
                           "torch_archs": None, "bnb": setup.bnb, "transformers": setup.transformers,
                           "cuda_runtime": setup.cuda_runtime}
    if setup.gpu or setup.compute_capability:
        hit = find_gpu(setup.gpu, facts) if setup.gpu else None
        cc_arch = arch_of(setup.compute_capability) if setup.compute_capability else None
        if hit:
            ctx.update(gpu=hit[0], arch=cc_arch or hit[1], jetson=bool(hit[2]))
        elif cc_arch:
            ctx.update(gpu=setup.gpu or cc_arch, arch=cc_arch, jetson=cc_arch in facts["jetson_archs"])
        else:
            notes.append(f"GPU '{setup.gpu}' is not one this site knows; give its architecture (--gpu sm_86)")
    torch = setup.torch
    local = torch.partition("+")[2].lower()
    if re.search(r"\.nv\d\d|a0\+", torch) or "l4t" in local:
        ctx["jetson"] = True
    machine = setup.machine or ("aarch64" if ctx["jetson"] else "")
    if setup.os == "windows":
        ctx["platform"] = "windows-x86_64"
    else:
        ctx["platform"] = f"linux-{machine or 'x86_64'}"
        if not setup.os and not ctx["jetson"]:
            assumed.append("OS not given: assumed Linux" + ("" if machine else " x86_64"))
    if torch:
        table = facts["torch"].get(ctx["platform"], {})
        defaults = facts["torch_default"].get(ctx["platform"], {})
        base = torch.partition("+")[0]
        release = next((r for r in defaults if vkey(r) == vkey(base)), base)
        named = f"{release}+{local}" if local else release
        twin = defaults.get(release)
        if named in table:
            build = named
        elif local and twin and table[twin].get("cuda") == _cuda_of_variant(local):
            build = twin  # "2.6.0+cu124" is PyPI's 2.6.0
        elif not local and twin:
            build = twin
            if ctx["platform"] == "windows-x86_64" and not table[twin].get("cuda"):
                build = named
        else:
            build = named
        if build != torch and not local:
            assumed.append(f"torch {torch}: PyPI's default wheel for {ctx['platform']} (CUDA "
                           f"{table.get(build, {}).get('cuda') or 'unknown'})")
        ctx["torch"] = build
        known = table.get(build) or {}
        ctx["cuda"] = setup.torch_cuda or known.get("cuda") or (_cuda_of_variant(local) if local.startswith("cu")
                                                                  else "")
        ctx["cpu_torch"] = local == "cpu"
        ctx["torch_archs"] = list(setup.torch_archs) or known.get("archs")
    return ctx, assumed, notes


def torch_support(ctx: dict[str, Any], facts: dict[str, Any], chain: list[str], assumed: list[str]) -> str:
    arch, build = ctx["arch"], ctx["torch"]
    if ctx["torch_archs"]:
        support = torch_runs_on(ctx["torch_archs"], arch)
        chain.append(f"torch {build} is built for {' '.join(ctx['torch_archs'])}: "
                     + ("it runs on " if support == "yes" else "no kernel for ") + arch)
        return support
    table = facts["torch"].get(ctx["platform"], {})
    same = [b for b, t in table.items() if t.get("cuda") == ctx["cuda"] and t.get("archs")]
    answers = {torch_runs_on(table[b]["archs"], arch) for b in same}
    if len(answers) == 1:
        support = answers.pop()
        assumed.append(f"torch {build}'s arch list is not known: assumed like the CUDA {ctx['cuda']} builds known "
                       f"({', '.join(same[:3])}{', ...' if len(same) > 3 else ''}), which "
                       f"{'all run' if support == 'yes' else 'none runs'} on {arch}")
        return support
    return "unknown"


def driver_floor(facts: dict[str, Any], cuda: str, platform: str, ptx: bool = False) -> str:
    """The lowest driver for code built with CUDA `cuda` (`matrix.predict.drivers.minimum`); "" when none known."""
    column = 1 if platform.startswith("windows") else 0
    floor = facts["driver"]["major"].get(cuda.split(".")[0])
    shipped = facts["driver"]["toolkit"].get(".".join(cuda.split(".")[:2])) if ptx else None
    return (shipped and shipped[column]) or (floor[column] if floor else "")


def driver_below(driver: str, floor: str) -> bool:
    have = [int(x) for x in driver.split(".") if x.isdigit()]
    need = [int(x) for x in floor.split(".") if x.isdigit()]
    return have[: len(need)] < need


def library_stem(entry: dict[str, Any], cuda: str, arch: str, override: str, system: str = ""
                 ) -> tuple[str | None, str]:
    """(library stem, note) the release loads (`matrix.predict.loader_rules.library_name`); None: not known.
    `system`: the CUDA runtime on the system, which releases 0.39-0.40 pick by instead of torch's."""
    rule = entry["rule"]
    if rule.get("template") == "unknown" or rule.get("version_from") == "unknown":
        return None, "the release's loader rule could not be read from its source"
    note = ""
    if rule.get("version_from") == "system libcudart" and system:
        cuda, note = system, f"the system's CUDA runtime {system}, not torch's"
    elif rule.get("version_from") == "system libcudart":
        return None, ("this release picks its library by the CUDA runtime (libcudart.so) it finds on the system, "
                      "not by torch: which one is not known from here (--cuda-runtime, or paste its output)")
    want = tuple(int(x) for x in cuda.split(".")[:2])
    have = {tuple(int(x) for x in v.split(".")[:2]) for v in entry["shipped"]}
    if rule.get("selection") == "nearest-same-major" and not override and want not in have:
        lower = [v for v in have if v[0] == want[0] and v < want]
        higher = [v for v in have if v[0] == want[0] and v > want]
        picked = max(lower) if lower else min(higher) if higher else want
        note = f"no CUDA {want[0]}.{want[1]} library: it takes the nearest of the same major" if picked != want else ""
        want = picked
    stem = f"libbitsandbytes_cuda{want[0]}{want[1]}"
    if rule.get("nocublaslt") and arch_num(arch) < 75:
        stem += "_nocublaslt"
    if override and rule.get("override"):
        return override_name(rule, stem, override)  # exactly as the release's code rewrites the name
    return stem, note
