"""The check engine: `check(setup, facts) -> Verdict`, one pure function from a user's setup to one answer.

The answer is `works`, `works-with-fix`, `fails` or `unknown`, with where it comes from (`measured`: a measured
cell, linked; `predicted`: the chain of facts from the binaries; `reported`: a report from an issue thread), what
was assumed, and the way out: the nearest setups that work plainly, changing one thing (bitsandbytes, then the
torch build, then transformers), each with the exact command. `site/assets/check.js` is this module in JavaScript
over the same facts (`matrix.check.facts`); tests hold the two to the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version

from matrix.check.facts import vkey
from matrix.check.resolve import driver_below, driver_floor, library_stem, resolve, torch_runs_on, torch_support
from matrix.check.setup import Setup

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


def measured_rows(ctx: dict[str, Any], facts: dict[str, Any]) -> list[list[str]]:
    """The measured cells of this GPU arch, torch build (PyPI's name or its +cuXYZ twin) and release."""
    names = [ctx["torch"]] + ([f"{ctx['torch']}+cu{ctx['cuda'].replace('.', '')}"] if "+" not in ctx["torch"] else [])
    keys = [f"{ctx['arch']}|{n}|{ctx['bnb']}" for n in names]
    return next((facts["measured"][k] for k in keys if k in facts["measured"]), [])


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
    if result["source"] == "measured":  # say what the binaries say beside it: why it fails, or that they agree
        binaries = predicted(ctx, setup, {**facts, "measured": {}})
        if binaries["facts"]:
            said = f"the binaries say {binaries['verdict']}: {binaries['facts'][-1]}"
            return {**result, "facts": [*result["facts"], said], "library": binaries["library"]}
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
        base = ctx["torch"].partition("+")[0]
        if "+" not in ctx["torch"] and any(vkey(r) == vkey(base) for r in
                                           facts.get("torch_cpu_default", {}).get(platform, [])):
            chain.append(f"PyPI's torch {base} for {platform} is a CPU-only build (with it, GPU 4-bit fails); "
                         "installed from PyTorch's index it is not: give the build torch.__version__ prints")
        else:
            chain.append(f"torch {ctx['torch']}'s CUDA version is not known here (give the build, like "
                         f"{base}+cu124)")
        return out
    if not arch or arch not in facts["archs"]:
        return out
    measured = measured_rows(ctx, facts)
    if measured:
        rows = [r for r in measured if r[0] == ctx["transformers"]] or measured
        if not ctx["transformers"] or rows is measured:
            assumed.append(f"transformers {ctx['transformers'] or 'not given'}: answered from the measured cell "
                           f"with transformers {rows[0][0]}")
        chain.append(f"measured on {arch}: torch {ctx['torch']}, bitsandbytes {bnb}, transformers {rows[0][0]}: "
                     f"{rows[0][1]}")
        return {**done(MEASURED_VERDICT.get(rows[0][1], "unknown"), "measured",
                       _measured_fix(rows[0]) if rows[0][1] == "works-with-fix" else ""), "cell": rows[0][2]}
    support = torch_support(ctx, facts, chain, assumed)
    if support == "no":
        chain.append(f"CUDA work fails before bitsandbytes runs: torch has no kernel for {arch}")
        return done("fails")
    floor = driver_floor(facts, ctx["cuda"], platform)
    if setup.driver and floor and driver_below(setup.driver, floor):
        chain.append(f"driver {setup.driver} is below {floor}, the lowest for torch's CUDA {ctx['cuda']}")
        return done("fails")
    override = setup.env_value("BNB_CUDA_VERSION")
    stem, note = library_stem(entry, ctx["cuda"], arch, override, ctx.get("cuda_runtime", ""))
    if stem is None:
        chain.append(note)
        return out
    out["library"] = stem
    how = note if note.startswith("the system's") else f"torch's CUDA {ctx['cuda']}{'; ' + note if note else ''}"
    chain.append(f"bitsandbytes {bnb} loads {stem} ({how})")
    lib = entry["libs"].get(stem)
    if lib is None:
        missing = entry["rule"].get("missing")
        chain.append(f"the {platform} wheel does not ship {stem} (its CUDA libraries: "
                     f"{', '.join(entry['shipped']) or 'none'}): " +
                     ("it falls back to the CPU library and GPU 4-bit fails" if missing == "cpu-fallback" else
                      "the CUDA setup fails at import" if missing in ("setup-failed", "import-error") else
                      "the first native call fails"))
        if override:
            plain, _ = library_stem(entry, ctx["cuda"], arch, "", ctx.get("cuda_runtime", ""))
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


def _measured_fix(row: list[str]) -> str:
    fixes = row[3] if len(row) > 3 else ""
    return f"measured to pass with: {fixes} (see the cell page)" if fixes else "the fix on the cell page"


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


def way_out(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any], archs: list[str] | None = None
            ) -> list[dict[str, str]]:
    """The nearest plain `works`, changing one thing: bitsandbytes, then the torch build, then transformers; without
    a GPU, one that works on every one of `archs`."""
    found = []
    pool = archs or [ctx["arch"]]

    def works(alt: dict[str, Any]) -> bool:
        return all(evaluate({**alt, "arch": a}, setup, facts)["verdict"] == "works" for a in pool)

    releases = [r for r in facts["wheels"].get(ctx["platform"], {}) if r != ctx["bnb"]]
    for bnb in _closeness(ctx["bnb"], releases):
        if works({**ctx, "bnb": bnb}):
            found.append({"change": "bitsandbytes", "to": bnb, "command": f"pip install bitsandbytes=={bnb}",
                          "uv": f"uv pip install bitsandbytes=={bnb}"})
            break
    table = facts["torch"].get(ctx["platform"], {})
    builds = [b for b, t in table.items() if t.get("archs") and t.get("cuda") and b != ctx["torch"]]
    for build in _closeness(ctx["torch"], builds) if ctx["bnb"] else []:
        known = table[build]
        alt = {**ctx, "torch": build, "cuda": known["cuda"], "torch_archs": known["archs"], "cpu_torch": False}
        if works(alt):
            version, variant = build.partition("+")[0], build.partition("+")[2] or "cu" + alt["cuda"].replace(".", "")
            pins = f"torch=={version} --index-url {TORCH_INDEX.format(variant=variant)}"
            found.append({"change": "torch", "to": build, "command": f"pip install {pins}",
                          "uv": f"uv pip install {pins}"})
            break
    rows = measured_rows(ctx, facts) if not archs else []
    for row in sorted(rows, key=lambda r: vkey(r[0]), reverse=True):
        if row[1] == "works" and row[0] != ctx["transformers"]:
            found.append({"change": "transformers", "to": row[0], "command": f"pip install transformers=={row[0]}",
                          "uv": f"uv pip install transformers=={row[0]}", "cell": row[2]})
            break
    return found


def _releases_that_work(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any]) -> list[str]:
    """["bitsandbytes releases that work here: 0.45.3 to 0.50.2 (12 of 40 read)"] when bitsandbytes was not given."""
    releases = sorted(facts["wheels"].get(ctx["platform"], {}), key=vkey)
    good = [r for r in releases if evaluate({**ctx, "bnb": r}, setup, facts)["verdict"] == "works"]
    if not good:
        return [f"no bitsandbytes release read works plainly here ({len(releases)} read)"]
    runs: list[list[str]] = []
    for r in releases:
        if r in good and runs and runs[-1][-1] == releases[releases.index(r) - 1]:
            runs[-1].append(r)
        elif r in good:
            runs.append([r])
    spans = ", ".join(run[0] if len(run) == 1 else f"{run[0]} to {run[-1]}" for run in runs)
    return [f"bitsandbytes releases that work here: {spans} ({len(good)} of {len(releases)} read)"]


def _any_gpu(ctx: dict[str, Any], setup: Setup, facts: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]]:
    """(answer, assumption) without a GPU: the answer of every architecture predicted for the platform, or of every
    one torch itself runs on (a GPU torch rejects fails in torch first), where they all agree; else unknown."""
    archs = facts["platform_archs"].get(ctx["platform"], facts["archs"])
    answers = {a: evaluate({**ctx, "arch": a}, setup, facts) for a in archs}
    runs = [a for a in archs if torch_runs_on(ctx["torch_archs"], a) == "yes"] if ctx["torch_archs"] else []
    for pool, words in ((runs, f"every GPU torch {ctx['torch']} runs on ({', '.join(runs)})"),
                        (archs, "every GPU architecture predicted")):
        verdicts = {answers[a]["verdict"] for a in pool}
        if len(verdicts) == 1 and "unknown" not in verdicts:
            pick = "sm_80" if "sm_80" in pool else pool[len(pool) // 2]
            return answers[pick], f"GPU not given: the answer is the same for {words}", pool
    first = answers[archs[0]]
    return {**first, "verdict": "unknown", "source": "none",
            "facts": ["GPU not given, and the answer depends on it (--gpu T4, or paste nvidia-smi)"]}, "", []


def check(setup: Setup, facts: dict[str, Any]) -> Verdict:
    """The answer for `setup` from `facts` (see the module docstring)."""
    ctx, assumed, notes = resolve(setup, facts)
    if not ctx["bnb"] and facts["releases"]:
        newest = max(facts["wheels"].get(ctx["platform"], {}) or facts["releases"], key=vkey)
        ctx["bnb"] = newest
        assumed.append(f"bitsandbytes not given: answered for the newest release read, {newest}")
    chosen = _releases_that_work(ctx, setup, facts) if not setup.bnb and ctx["arch"] else []
    if ctx["arch"]:
        result = evaluate(ctx, setup, facts)
        pool: list[str] = []
    else:  # no GPU given: an answer only where every GPU the platform and torch support gets the same one
        result, note, pool = _any_gpu(ctx, setup, facts)
        if note:
            assumed.append(note)
    outs = way_out(ctx, setup, facts, pool) if result["verdict"] in ("fails", "works-with-fix") and (
        ctx["arch"] or pool) else []
    resolved = {k: ctx[k] for k in ("gpu", "arch", "platform", "torch", "cuda", "bnb") if ctx.get(k)}
    if result.get("library"):
        resolved["library"] = result["library"]
    return Verdict(verdict=result["verdict"], source=result["source"], facts=tuple(notes + result["facts"] + chosen),
                   assumed=tuple(dict.fromkeys(assumed + result["assumed"])), fix=result["fix"], cell=result["cell"],
                   way_out=tuple(outs), setup=setup.given(), resolved=resolved)
