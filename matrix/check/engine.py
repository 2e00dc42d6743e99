"""The check engine: `check(setup, facts) -> Verdict`, one pure function from a user's setup to one answer.

The answer is `works`, `works-with-fix`, `fails` or `unknown`, with where it comes from (`measured`: a measured
cell, linked; `predicted`: the chain of facts from the binaries; `reported`: a report from an issue thread), what
was assumed, and the way out: the nearest setups that work plainly, changing one thing (bitsandbytes, then the
torch build, then transformers), each with the exact command. `site/assets/check.js` is this module in JavaScript
over the same facts (`matrix.check.facts`); tests hold the two to the same answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.version import InvalidVersion, Version

from matrix.check.facts import normalise
from matrix.check.setup import Setup, arch_of

VERDICTS = ("works", "works-with-fix", "fails", "unknown")
TORCH_INDEX = "https://download.pytorch.org/whl/{variant}"
JETSON_REPORT = "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1930"
MEASURED_VERDICT = {"works": "works", "works-with-fix": "works-with-fix", "fails": "fails",
                    "not-installable": "fails", "not-available": "fails"}


@dataclass(frozen=True)
class Verdict:
    """One answer. `facts` is the chain it rests on, in order; `way_out` the plain alternatives."""

    verdict: str
    source: str  # measured | predicted | reported | none
    facts: tuple[str, ...] = ()
    assumed: tuple[str, ...] = ()
    fix: str = ""
    cell: str = ""
    way_out: tuple[dict[str, str], ...] = ()
    setup: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "source": self.source, "facts": list(self.facts),
                "assumed": list(self.assumed), "fix": self.fix, "cell": self.cell, "way_out": list(self.way_out),
                "setup": self.setup, "resolved": self.resolved}


def vkey(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


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
        return [arch, arch, False]
    key = normalise(text)
    table = facts["gpus"]
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
                           "torch_archs": None, "bnb": setup.bnb, "transformers": setup.transformers}
    if setup.gpu or setup.compute_capability:
        hit = find_gpu(setup.gpu, facts) if setup.gpu else None
        cc_arch = arch_of(setup.compute_capability) if setup.compute_capability else None
        if hit:
            ctx.update(gpu=hit[0], arch=cc_arch or hit[1], jetson=bool(hit[2]))
        elif cc_arch:
            ctx.update(gpu=setup.gpu or cc_arch, arch=cc_arch)
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
        base = torch.partition("+")[0]
        release = next((r for r in facts["torch_default"] if vkey(r) == vkey(base)), base)
        named = f"{release}+{local}" if local else release
        if named in facts["torch"]:
            build = named
        elif not local and release in facts["torch_default"]:
            build = facts["torch_default"][release]
            assumed.append(f"torch {torch} from PyPI is the build {build} (its wheel's torch/version.py says so)")
        else:
            build = named
        ctx["torch"] = build
        known = facts["torch"].get(build)
        ctx["cuda"] = setup.torch_cuda or (known or {}).get("cuda") or (
            _cuda_of_variant(local) if local.startswith("cu") else "")
        ctx["cpu_torch"] = local == "cpu"
        ctx["torch_archs"] = list(setup.torch_archs) or (known or {}).get("archs")
    return ctx, assumed, notes


def _torch_support(ctx: dict[str, Any], facts: dict[str, Any], chain: list[str], assumed: list[str]) -> str:
    arch, build = ctx["arch"], ctx["torch"]
    if ctx["torch_archs"]:
        support = torch_runs_on(ctx["torch_archs"], arch)
        chain.append(f"torch {build} is built for {' '.join(ctx['torch_archs'])}: "
                     + ("it runs on " if support == "yes" else "no kernel for ") + arch)
        return support
    same = [b for b, t in facts["torch"].items() if t.get("cuda") == ctx["cuda"] and t.get("archs")]
    answers = {torch_runs_on(facts["torch"][b]["archs"], arch) for b in same}
    if len(answers) == 1:
        support = answers.pop()
        assumed.append(f"torch {build}'s arch list was not read: assumed like the CUDA {ctx['cuda']} builds read "
                       f"({', '.join(same)}), which {'all run' if support == 'yes' else 'none runs'} on {arch}")
        return support
    return "unknown"


def evaluate(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any]) -> dict[str, Any]:
    """The answer for one concrete context: verdict, source, chain, assumed, fix, cell, library."""
    chain: list[str] = []
    assumed: list[str] = []
    out = {"verdict": "unknown", "source": "none", "facts": chain, "assumed": assumed, "fix": "", "cell": "",
           "library": ""}

    def done(verdict: str, source: str = "predicted", fix: str = "") -> dict[str, Any]:
        return {**out, "verdict": verdict, "source": source, "fix": fix}

    platform, bnb, arch = ctx["platform"], ctx["bnb"], ctx["arch"]
    if ctx.get("cpu_torch"):
        chain.append(f"torch {ctx['torch']} is a CPU-only build: bitsandbytes cannot use the GPU through it")
        return done("fails")
    wheel = facts["wheels"].get(platform, {}).get(bnb)
    if wheel is None:
        if bnb in facts["releases"]:
            chain.append(f"bitsandbytes {bnb} has no wheel for {platform} on PyPI (pip finds no matching "
                         "distribution)")
            return done("fails")
        chain.append(f"bitsandbytes {bnb} was not read here (the predicted layer reads releases "
                     f"{facts['releases'][0]} to {facts['releases'][-1]})")
        return out
    if ctx["jetson"]:
        chain.append(f"PyPI's {platform} wheels are built for server Arm (SBSA), not for Jetson's L4T: the first "
                     f"CUDA kernel fails with 'named symbol not found' (reported: {JETSON_REPORT})")
        return done("fails", "reported")
    if not ctx["torch"]:
        chain.append("torch not given: which library bitsandbytes loads depends on torch's CUDA version")
        return out
    if not ctx["cuda"]:
        chain.append(f"torch {ctx['torch']}'s CUDA version is not known here (give the build, like "
                     f"{ctx['torch'].partition('+')[0]}+cu124)")
        return out
    override = setup.env_value("BNB_CUDA_VERSION")
    cuda = ctx["cuda"]
    if override and wheel["override"]:
        cuda = _cuda_of_variant("cu" + override)
        chain.append(f"BNB_CUDA_VERSION={override} makes bitsandbytes {bnb} load the CUDA {cuda} library instead "
                     f"of torch's CUDA {ctx['cuda']}")
    libs = wheel["libs"].get(cuda)
    if not arch:
        return out
    if libs is None or arch not in facts["archs"]:
        chain.append(f"no prediction for {arch} with CUDA {cuda}")
        return out
    support = _torch_support(ctx, facts, chain, assumed)
    code = libs[1][facts["archs"].index(arch)]
    out["library"] = libs[0] or ""
    key = f"{arch}|{ctx['torch']}|{bnb}"
    measured = facts["measured"].get(key)
    if measured:
        rows = [r for r in measured if r[0] == ctx["transformers"]] or measured
        if not ctx["transformers"] or rows is measured:
            assumed.append(f"transformers {ctx['transformers'] or 'not given'}: answered from the measured cell "
                           f"with transformers {rows[0][0]}")
        chain.append(f"measured on {arch}: torch {ctx['torch']}, bitsandbytes {bnb}, transformers {rows[0][0]}: "
                     f"{rows[0][1]}")
        return {**done(MEASURED_VERDICT.get(rows[0][1], "unknown"), "measured",
                       "the fix on the cell page" if rows[0][1] == "works-with-fix" else ""), "cell": rows[0][2]}
    if support == "no":
        chain.append(f"CUDA work fails before bitsandbytes runs: torch has no kernel for {arch}")
        return done("fails")
    lib = libs[0] or "its CUDA library"
    floor = facts["driver_floor"].get(cuda.split(".")[0])
    if setup.driver and floor and vkey(setup.driver) < vkey(floor):
        chain.append(f"driver {setup.driver} is below {floor}, the lowest that runs CUDA {cuda.split('.')[0]}.x")
        return done("fails")
    if code in "LJ":
        chain.append(f"bitsandbytes {bnb} loads {lib} (CUDA {cuda}), which carries "
                     + ("SASS for " + arch if code == "L" else f"no SASS for {arch} but PTX the driver JIT-compiles "
                        "on first use (slow the first time)"))
        if support == "unknown":
            chain.append(f"torch {ctx['torch']}'s arch list is not known")
            return out
        if override and override != ctx["cuda"].replace(".", ""):
            assumed.append(f"the CUDA {cuda} runtime libraries are on the library path (BNB_CUDA_VERSION)")
        return done("works")
    if code == "N":
        chain.append(f"bitsandbytes {bnb} looks for {lib} (CUDA {cuda}); its wheel does not ship it"
                     + (" (it falls back to the CPU library: GPU 4-bit fails)" if wheel["missing"] == "cpu-fallback"
                        else ""))
        if override:
            return done("works-with-fix", fix="unset BNB_CUDA_VERSION") if _plain_code(
                wheel, ctx["cuda"], arch, facts) in "LJ" else done("fails")
        alt = _override_fix(wheel, cuda, arch, facts) if wheel["override"] else ""
        return done("works-with-fix", fix=alt) if alt else done("fails")
    if code == "K":
        chain.append(f"{lib} in bitsandbytes {bnb} has no kernel for {arch} (neither SASS nor PTX it can JIT)")
        return done("fails")
    chain.append(f"{lib}: the wheel reading is unknown for {arch}")
    return out


def _plain_code(wheel: dict[str, Any], cuda: str, arch: str, facts: dict[str, Any]) -> str:
    libs = wheel["libs"].get(cuda)
    return libs[1][facts["archs"].index(arch)] if libs else "?"


def _override_fix(wheel: dict[str, Any], cuda: str, arch: str, facts: dict[str, Any]) -> str:
    """`BNB_CUDA_VERSION=XYZ` naming a shipped library of torch's CUDA major that runs on the GPU, nearest below."""
    major = cuda.split(".")[0]
    options = [c for c in wheel["libs"] if c.split(".")[0] == major and vkey(c) < vkey(cuda)
               and _plain_code(wheel, c, arch, facts) == "L" and wheel["libs"][c][0]]
    if not options:
        return ""
    best = max(options, key=vkey)
    return f"set BNB_CUDA_VERSION={best.replace('.', '')} (loads {wheel['libs'][best][0]}, built for CUDA {best})"


def _closeness(current: str, candidates: list[str]) -> list[str]:
    """Newer ones first, nearest first; then older ones, nearest first."""
    cur = vkey(current.partition("+")[0]) if current else Version("0")
    newer = sorted((c for c in candidates if vkey(c.partition("+")[0]) >= cur), key=lambda c: vkey(c.partition("+")[0]))
    older = sorted((c for c in candidates if vkey(c.partition("+")[0]) < cur), key=lambda c: vkey(c.partition("+")[0]),
                   reverse=True)
    return newer + older


def way_out(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any]) -> list[dict[str, str]]:
    """The nearest plain `works`, changing one thing: bitsandbytes, then the torch build, then transformers."""
    found = []
    releases = [r for r in facts["wheels"].get(ctx["platform"], {}) if r != ctx["bnb"]]
    for bnb in _closeness(ctx["bnb"], releases):
        if evaluate({**ctx, "bnb": bnb}, setup, facts)["verdict"] == "works":
            found.append({"change": "bitsandbytes", "to": bnb, "command": f"pip install bitsandbytes=={bnb}",
                          "uv": f"uv pip install bitsandbytes=={bnb}"})
            break
    builds = [b for b, t in facts["torch"].items() if t.get("archs") and b != ctx["torch"]]
    for build in _closeness(ctx["torch"], builds) if ctx["bnb"] else []:
        known = facts["torch"][build]
        alt = {**ctx, "torch": build, "cuda": known["cuda"], "torch_archs": known["archs"], "cpu_torch": False}
        if evaluate(alt, setup, facts)["verdict"] == "works":
            version, variant = build.partition("+")[0], build.partition("+")[2] or "cu" + alt["cuda"].replace(".", "")
            pins = f"torch=={version} --index-url {TORCH_INDEX.format(variant=variant)}"
            found.append({"change": "torch", "to": build, "command": f"pip install {pins}",
                          "uv": f"uv pip install {pins}"})
            break
    rows = facts["measured"].get(f"{ctx['arch']}|{ctx['torch']}|{ctx['bnb']}", [])
    for tf, verdict, path in sorted(rows, key=lambda r: vkey(r[0]), reverse=True):
        if verdict == "works" and tf != ctx["transformers"]:
            found.append({"change": "transformers", "to": tf, "command": f"pip install transformers=={tf}",
                          "uv": f"uv pip install transformers=={tf}", "cell": path})
            break
    return found


def check(setup: Setup, facts: dict[str, Any]) -> Verdict:
    """The answer for `setup` from `facts` (see the module docstring)."""
    ctx, assumed, notes = resolve(setup, facts)
    if not ctx["bnb"] and facts["releases"]:
        newest = max(facts["wheels"].get(ctx["platform"], {}) or facts["releases"], key=vkey)
        ctx["bnb"] = newest
        assumed.append(f"bitsandbytes not given: answered for the newest release read, {newest}")
    if ctx["arch"]:
        result = evaluate(ctx, setup, facts)
    else:  # no GPU given: an answer only where every architecture predicted gets the same one
        answers = [evaluate({**ctx, "arch": a}, setup, facts) for a in facts["archs"]]
        verdicts = {a["verdict"] for a in answers}
        result = answers[-1]
        if len(verdicts) == 1 and result["verdict"] != "unknown":
            assumed.append("GPU not given: the answer is the same for every GPU architecture predicted")
        else:
            result = {**answers[0], "verdict": "unknown", "source": "none",
                      "facts": ["GPU not given, and the answer depends on it (--gpu T4, or paste nvidia-smi)"]}
    outs = way_out(ctx, setup, facts) if result["verdict"] in ("fails", "works-with-fix") and ctx["arch"] else []
    resolved = {k: ctx[k] for k in ("gpu", "arch", "platform", "torch", "cuda", "bnb") if ctx.get(k)}
    if result.get("library"):
        resolved["library"] = result["library"]
    return Verdict(verdict=result["verdict"], source=result["source"], facts=tuple(notes + result["facts"]),
                   assumed=tuple(dict.fromkeys(assumed + result["assumed"])), fix=result["fix"], cell=result["cell"],
                   way_out=tuple(outs), setup=setup.given(), resolved=resolved)


def with_flags(paste: Setup, flags: Setup) -> Setup:
    """Flags win over what a paste showed."""
    from matrix.check.setup import merge

    return merge(paste, flags) if paste.given() else replace(flags)
