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

from packaging.version import Version

from matrix.check.facts import normalise, vkey
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
                           "torch_archs": None, "bnb": setup.bnb, "transformers": setup.transformers}
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


def _torch_support(ctx: dict[str, Any], facts: dict[str, Any], chain: list[str], assumed: list[str]) -> str:
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


def library_stem(entry: dict[str, Any], cuda: str, arch: str, override: str) -> tuple[str | None, str]:
    """(library stem, note) the release loads (`matrix.predict.loader_rules.library_name`); None: not known."""
    rule = entry["rule"]
    if rule.get("template") == "unknown" or rule.get("version_from") == "unknown":
        return None, "the release's loader rule could not be read from its source"
    if rule.get("version_from") == "system libcudart":
        return None, ("this release picks its library by the CUDA runtime (libcudart.so) it finds on the system, "
                      "not by torch: which one is not known from here")
    want = tuple(int(x) for x in cuda.split(".")[:2])
    have = {tuple(int(x) for x in v.split(".")[:2]) for v in entry["shipped"]}
    note = ""
    if rule.get("selection") == "nearest-same-major" and not override and want not in have:
        lower = [v for v in have if v[0] == want[0] and v < want]
        higher = [v for v in have if v[0] == want[0] and v > want]
        picked = max(lower) if lower else min(higher) if higher else want
        note = f"no CUDA {want[0]}.{want[1]} library: it takes the nearest of the same major" if picked != want else ""
        want = picked
    stem = f"libbitsandbytes_cuda{want[0]}{want[1]}"
    if rule.get("nocublaslt") and arch_num(arch) < 75:
        stem += "_nocublaslt"
    style = rule.get("override")
    if override:
        if style == "slice":
            return f"{stem}.so"[:-6] + override, "BNB_CUDA_VERSION: the last 6 characters of the name are cut"
        if style == "rstrip":
            return stem.rstrip("0123456789") + override, "BNB_CUDA_VERSION replaces the trailing digits"
        if style == "re.sub":
            return re.sub(r"cuda\d+", f"cuda{override}", stem, count=1), "BNB_CUDA_VERSION replaces cudaXYZ"
        if style == "replace":
            if not override.isdigit():
                return None, f"BNB_CUDA_VERSION={override} is refused (digits only)"
            return f"libbitsandbytes_cuda{override}", "BNB_CUDA_VERSION names the library"
    return stem, note


def reported(ctx: dict[str, Any], facts: dict[str, Any]) -> list[str] | None:
    """The first issue-thread report of this release on this platform that matches on the GPU or on torch (by
    version, the build suffix aside) and differs on neither where both sides know it."""
    base = ctx["torch"].partition("+")[0]
    for row in facts["reports"]:
        arch, bnb, torch, platform = row[:4]
        if bnb != ctx["bnb"] or platform != ctx["platform"]:
            continue
        same_arch = bool(arch and ctx["arch"]) and arch == ctx["arch"]
        same_torch = bool(torch and base) and vkey(torch.partition("+")[0]) == vkey(base)
        if (arch and ctx["arch"] and not same_arch) or (torch and base and not same_torch):
            continue
        if same_arch or same_torch:
            return row
    return None


def evaluate(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any]) -> dict[str, Any]:
    """The answer for one concrete context: measured, else predicted, else reported (see `predicted`)."""
    result = predicted(ctx, setup, facts)
    if result["verdict"] != "unknown":
        return result
    row = reported(ctx, facts)
    if row is None:
        return result
    chain = [*result["facts"], f"reported ({row[5]}): {row[6]}"]
    return {**result, "verdict": row[4], "source": "reported", "facts": chain}


def predicted(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any]) -> dict[str, Any]:
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
    entry = facts["wheels"].get(platform, {}).get(bnb)
    if entry is None:
        if bnb in facts["releases"]:
            chain.append(f"bitsandbytes {bnb} has no wheel for {platform} on PyPI (pip finds no matching "
                         "distribution)")
            return done("fails")
        chain.append(f"bitsandbytes {bnb} was not read here (the predicted layer reads releases "
                     f"{facts['releases'][0]} to {facts['releases'][-1]})")
        return out
    if entry.get("foreign"):
        chain.append(f"bitsandbytes {bnb}'s only wheel is py3-none-any with Linux x86-64 libraries: pip installs it "
                     f"on {platform}, where they cannot load (CUDA setup fails at import)")
        return done("fails")
    if ctx["jetson"] and platform == "linux-aarch64" and arch != "sm_110":
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
    if not arch or arch not in facts["archs"]:
        return out
    names = [ctx["torch"]] + ([f"{ctx['torch']}+cu{ctx['cuda'].replace('.', '')}"] if "+" not in ctx["torch"] else [])
    measured = next((facts["measured"][k] for k in (f"{arch}|{n}|{bnb}" for n in names) if k in facts["measured"]),
                    None)
    if measured:
        rows = [r for r in measured if r[0] == ctx["transformers"]] or measured
        if not ctx["transformers"] or rows is measured:
            assumed.append(f"transformers {ctx['transformers'] or 'not given'}: answered from the measured cell "
                           f"with transformers {rows[0][0]}")
        chain.append(f"measured on {arch}: torch {ctx['torch']}, bitsandbytes {bnb}, transformers {rows[0][0]}: "
                     f"{rows[0][1]}")
        return {**done(MEASURED_VERDICT.get(rows[0][1], "unknown"), "measured",
                       "the fix on the cell page" if rows[0][1] == "works-with-fix" else ""), "cell": rows[0][2]}
    support = _torch_support(ctx, facts, chain, assumed)
    if support == "no":
        chain.append(f"CUDA work fails before bitsandbytes runs: torch has no kernel for {arch}")
        return done("fails")
    floor = driver_floor(facts, ctx["cuda"], platform)
    if setup.driver and floor and driver_below(setup.driver, floor):
        chain.append(f"driver {setup.driver} is below {floor}, the lowest for torch's CUDA {ctx['cuda']}")
        return done("fails")
    override = setup.env_value("BNB_CUDA_VERSION")
    stem, note = library_stem(entry, ctx["cuda"], arch, override)
    if stem is None:
        chain.append(note)
        return out
    out["library"] = stem
    chain.append(f"bitsandbytes {bnb} loads {stem} (torch's CUDA {ctx['cuda']}{'; ' + note if note else ''})")
    lib = entry["libs"].get(stem)
    if lib is None:
        missing = entry["rule"].get("missing")
        chain.append(f"the {platform} wheel does not ship {stem} (its CUDA libraries: "
                     f"{', '.join(entry['shipped']) or 'none'}): " +
                     ("it falls back to the CPU library and GPU 4-bit fails" if missing == "cpu-fallback" else
                      "the CUDA setup fails at import" if missing in ("setup-failed", "import-error") else
                      "the first native call fails"))
        if override:
            plain, _ = library_stem(entry, ctx["cuda"], arch, "")
            good = plain in entry["libs"] and entry["libs"][plain][2][facts["archs"].index(arch)] in "LJ"
            return done("works-with-fix", fix="unset BNB_CUDA_VERSION") if good else done("fails")
        alt = _override_fix(entry, ctx["cuda"], arch, facts) if entry["rule"].get("override") != "none found" else ""
        return done("works-with-fix", fix=alt) if alt else done("fails")
    cuda, glibc, codes = lib
    if glibc and setup.glibc and vkey(setup.glibc) < vkey(glibc):
        chain.append(f"{stem} needs GLIBC_{glibc}; glibc {setup.glibc} cannot load it (version `GLIBC_{glibc}' "
                     "not found)")
        return done("fails")
    if glibc and not setup.glibc and vkey(glibc) > vkey("2.28"):
        assumed.append(f"glibc not given: assumed at least {glibc}, which {stem} needs (Ubuntu 20.04 has 2.31)")
    code = codes[facts["archs"].index(arch)]
    if code == "K":
        chain.append(f"{stem} has no kernel for {arch} (neither SASS nor PTX it can JIT)")
        return done("fails")
    if code == "?":
        chain.append(f"{stem}: part of its code could not be confirmed for {arch}")
        return out
    chain.append(f"{stem} carries " + ("SASS for " + arch if code == "L" else
                                       f"no SASS for {arch} but PTX JIT-compiled at the first launch (slow once)"))
    floor = driver_floor(facts, cuda, platform, ptx=code == "J")
    if setup.driver and floor and driver_below(setup.driver, floor):
        chain.append(f"driver {setup.driver} is below {floor}, the lowest for {stem} (CUDA {cuda})")
        return done("fails")
    if support == "unknown":
        chain.append(f"torch {ctx['torch']}'s arch list is not known")
        return out
    if override and override != ctx["cuda"].replace(".", ""):
        assumed.append(f"the CUDA {cuda} runtime libraries are on the library path (BNB_CUDA_VERSION)")
    return done("works")


def _override_fix(entry: dict[str, Any], cuda: str, arch: str, facts: dict[str, Any]) -> str:
    """`BNB_CUDA_VERSION=XY` that makes the release load a shipped library of torch's CUDA major, below torch's
    CUDA, whose SASS runs on the GPU (the nearest one)."""
    major, index = cuda.split(".")[0], facts["archs"].index(arch)
    for option in sorted(entry["shipped"], key=vkey, reverse=True):
        if option.split(".")[0] != major or vkey(option) >= vkey(cuda):
            continue
        value = option.replace(".", "")
        stem, _ = library_stem(entry, cuda, arch, value)
        if stem in entry["libs"] and entry["libs"][stem][2][index] == "L":
            return f"set BNB_CUDA_VERSION={value} (loads {stem}, built for CUDA {option})"
    return ""


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
    table = facts["torch"].get(ctx["platform"], {})
    builds = [b for b, t in table.items() if t.get("archs") and t.get("cuda") and b != ctx["torch"]]
    for build in _closeness(ctx["torch"], builds) if ctx["bnb"] else []:
        known = table[build]
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


def _any_gpu(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(answer, assumption) without a GPU: the answer of every architecture predicted for the platform, or of every
    one torch itself runs on (a GPU torch rejects fails in torch first), where they all agree; else unknown."""
    archs = facts["platform_archs"].get(ctx["platform"], facts["archs"])
    answers = {a: evaluate({**ctx, "arch": a}, setup, facts) for a in archs}
    runs = [a for a in archs if torch_runs_on(ctx["torch_archs"], a) == "yes"] if ctx["torch_archs"] else []
    for pool, words in ((archs, "every GPU architecture predicted"),
                        (runs, f"every GPU torch {ctx['torch']} runs on ({', '.join(runs)})")):
        verdicts = {answers[a]["verdict"] for a in pool}
        if len(verdicts) == 1 and "unknown" not in verdicts:
            pick = "sm_80" if "sm_80" in pool else pool[len(pool) // 2]
            return answers[pick], f"GPU not given: the answer is the same for {words}"
    first = answers[archs[0]]
    return {**first, "verdict": "unknown", "source": "none",
            "facts": ["GPU not given, and the answer depends on it (--gpu T4, or paste nvidia-smi)"]}, ""


def check(setup: Setup, facts: dict[str, Any]) -> Verdict:
    """The answer for `setup` from `facts` (see the module docstring)."""
    ctx, assumed, notes = resolve(setup, facts)
    if not ctx["bnb"] and facts["releases"]:
        newest = max(facts["wheels"].get(ctx["platform"], {}) or facts["releases"], key=vkey)
        ctx["bnb"] = newest
        assumed.append(f"bitsandbytes not given: answered for the newest release read, {newest}")
    if ctx["arch"]:
        result = evaluate(ctx, setup, facts)
    else:  # no GPU given: an answer only where every GPU the platform and torch support gets the same one
        result, note = _any_gpu(ctx, setup, facts)
        if note:
            assumed.append(note)
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
