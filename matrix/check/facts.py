"""The facts `check` answers from, as one compact JSON-able dict: the same dict the CLI reads and the check page's
data file (check/data.js) carries, so the command and the page answer alike. Everything comes from the predicted
layer (`matrix.predict`): its GPU table, torch builds, wheel readings, loader rules and driver floors.

- `archs`: the GPU architectures, in the order of every code string below;
- `gpus`: normalised GPU spelling -> [name, arch, jetson] (from `matrix.predict.gpus`);
- `torch`: platform -> torch build -> {"cuda", "archs"} (archs null: not known), `torch_default`: platform ->
  PyPI release -> the build name of its default wheel, `torch_cpu_default`: platform -> releases whose PyPI
  default wheel is CPU-only;
- `wheels`: platform -> release -> {"rule": loader rule (version_from, override, missing, nocublaslt, selection),
  "shipped": the CUDA versions of its libraries, "libs": {library stem: [CUDA, glibc floor, codes]},
  "any": a py3-none-any wheel of another platform pip would install here}. The codes, one letter per arch, say
  what the library's code does on that GPU: L SASS, J PTX the driver JIT-compiles, K nothing it can run, ? unknown
  (`matrix.predict.predict.kernel_for`);
- `measured`: "arch|torch|bnb" -> [[transformers, verdict, cell path], ...] from measured GPU cells;
- `driver`: {"major": CUDA major -> [Linux, Windows] floor, "toolkit": CUDA X.Y -> [Linux, Windows] driver};
- `reports`: [arch or "", bnb, torch or "", platform, "works"/"fails", link, what was seen] from the issue-thread
  reports (`matrix.predict.reports`), used where neither a measurement nor the binaries answer.
"""

from __future__ import annotations

import json
from typing import Any

from packaging.version import InvalidVersion, Version

from matrix.predict import binaries, drivers, gpus, predict, reports, torch_builds, wheels
from matrix.predict.gpus import normalise

SCHEMA = 2
CODES = {"loads": "L", "loads-ptx-jit": "J", "no-kernel": "K", "unknown": "?"}


def vkey(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def archs() -> list[str]:
    """Every architecture of the GPU table and of the predicted platforms, oldest first."""
    found = set(gpus.archs()) | {a for values in predict.PLATFORM_ARCHS.values() for a in values}
    return sorted(found, key=lambda a: int(a[3:]))


def gpu_table() -> dict[str, list[Any]]:
    """Normalised spelling -> [name, arch, jetson] for every name and alias, and each without a leading rtx/gtx
    where that short key is not shared (as `matrix.predict.gpus.find_gpu` matches)."""
    table: dict[str, list[Any]] = {}
    short: dict[str, list[list[Any]]] = {}
    for g in gpus.load_gpus():
        for spelling in (g.name, *g.aliases):
            table.setdefault(normalise(spelling), [g.name, g.sm, g.jetson])
    for g in gpus.load_gpus():
        for spelling in (g.name, *g.aliases):
            key = normalise(spelling)
            for prefix in ("rtx", "gtx"):
                key = key.removeprefix(prefix)
            short.setdefault(key, []).append([g.name, g.sm, g.jetson])
    for key, found in short.items():
        names = {f[0] for f in found}
        if len(names) == 1 and key not in table and len(key) >= 3:
            table[key] = found[0]
    return table


def library_entry(library: dict[str, Any], order: list[str]) -> list[Any]:
    cov = binaries.coverage(library)  # once per library, not once per architecture
    codes = "".join(CODES.get(predict.kernel_for(library, a, cov)[0], "?") for a in order)
    return [library.get("cuda") or "", predict.glibc_floor(library) or "", codes]


def wheel_table(readings: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """platform -> release -> {"rule", "shipped", "libs", "any"} (see the module docstring)."""
    out: dict[str, Any] = {}
    for wheel in sorted(readings, key=lambda w: vkey(w["release"])):
        rule = predict.release_rule(wheel)
        libs = {lib["name"].split(".")[0]: library_entry(lib, order) for lib in wheel["libraries"]
                if lib.get("backend") == "cuda"}
        shipped = sorted({lib["cuda"] for lib in wheel["libraries"] if lib.get("cuda") and not lib["nocublaslt"]},
                         key=vkey)
        entry = {"rule": {k: rule.get(k) for k in ("version_from", "override", "missing", "nocublaslt", "selection",
                                                      "template")},
                 "shipped": shipped, "libs": libs, "any": str(wheel.get("filename", "")).endswith("-any.whl")}
        out.setdefault(wheel["platform"], {})[wheel["release"]] = entry
    any_wheels = {r: e for p in out.values() for r, e in p.items() if e["any"]}
    for platform in ("linux-x86_64", "linux-aarch64", "windows-x86_64"):  # pip installs a py3-none-any wheel anywhere
        for release, entry in any_wheels.items():
            if release not in out.setdefault(platform, {}):
                out[platform][release] = {**entry, "libs": {}, "foreign": True}
    return out


def torch_table(builds: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(platform -> build -> {"cuda", "archs"}, platform -> PyPI release -> build name)."""
    table: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for b in builds:
        platform = b.get("platform", "linux-x86_64")
        table.setdefault(platform, {})[b["build"]] = {"cuda": b.get("cuda"), "archs": b.get("archs")}
        if b.get("index") == "pypi":
            defaults.setdefault(platform, {})[b["release"]] = b["build"]
    return table, defaults


def report_rows(found: list[dict[str, Any]]) -> list[list[str]]:
    """The reports as compact rows; outcome "other" says nothing either way and is left out."""
    rows = []
    for r in found:
        if r["outcome"] == "other":
            continue
        card = gpus.find_gpu(r["gpu"]) if r.get("gpu") else None
        rows.append([card.sm if card else "", r.get("bnb") or "", r.get("torch") or "", r["platform"],
                     "works" if r["outcome"] == "loads" else "fails", r["url"], r["says"]])
    return rows


def build_facts(readings: list[dict[str, Any]], builds: list[dict[str, Any]],
                measured: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """The whole facts dict from the predicted layer's readings and the measured cells (see the module docstring)."""
    order = archs()
    torch, defaults = torch_table(builds)
    jetson = sorted({g.sm for g in gpus.load_gpus()} - {g.sm for g in gpus.load_gpus() if not g.jetson})
    return {"schema": SCHEMA, "archs": order, "gpus": gpu_table(), "noise": sorted(gpus.NOISE), "jetson_archs": jetson,
            "torch": torch, "torch_default": defaults,
            "platform_archs": {p: list(a) for p, a in predict.PLATFORM_ARCHS.items()},
            "wheels": wheel_table(readings, order), "measured": measured or {},
            "driver": {"major": {str(k): list(v) for k, v in drivers.MAJOR_FLOOR.items()},
                       "toolkit": {k: list(v) for k, v in drivers.TOOLKIT_DRIVER.items()}},
            "releases": sorted({w["release"] for w in readings}, key=vkey), "reports": report_rows(reports.load())}


def load_facts(measured: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """The facts from the committed caches (no network)."""
    read = torch_builds.load_builds()
    facts = build_facts(wheels.load_cache(), torch_builds.all_builds(read), measured)
    cpu: dict[str, list[str]] = {}
    for r in read:  # PyPI defaults read as CPU-only builds (Windows; aarch64 before 2.6)
        if not r.get("cuda") and not r.get("error") and r.get("release"):
            cpu.setdefault(r.get("platform", "linux-x86_64"), []).append(r["release"])
    return {**facts, "torch_cpu_default": cpu}


def to_js(facts: dict[str, Any]) -> bytes:
    """check/data.js: the facts as one compact JavaScript assignment (a script, so it loads from file://)."""
    text = json.dumps(facts, separators=(",", ":"), sort_keys=True)
    return ("window.BNB_CHECK_FACTS=" + text.replace("</", "<\\/") + ";\n").encode()
