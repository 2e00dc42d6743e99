"""The facts `check` answers from, as one compact JSON-able dict: the same dict the CLI reads and the check page's
data file (check/data.js) carries, so the command and the page answer alike.

- `archs`: the GPU architectures predicted for, in the order of every code string below;
- `gpus`: normalised GPU spelling -> [name, arch, jetson] (`matrix.predict` owns the table);
- `torch`: torch build -> {"cuda", "archs"} as read from its wheel (archs null: not read);
- `wheels`: platform -> release -> {"override", "libs": {CUDA version the loader uses -> [library, codes]}}, the
  codes one letter per arch: L loads (SASS), J loads via PTX JIT, N the library is not in the wheel, K no kernel
  for the GPU, ? unknown. Made by `matrix.predict.predict.predict_cell` for a torch that runs on every GPU, so
  the letter says what bitsandbytes does; whether torch itself runs on the GPU is the `torch` table's part;
- `measured`: "arch|torch|bnb" -> [[transformers, verdict, cell path], ...] from measured GPU cells;
- `driver_floor`: CUDA major -> the lowest driver that runs it (NVIDIA's minor-version compatibility table).
"""

from __future__ import annotations

import json
import re
from typing import Any

from packaging.version import InvalidVersion, Version

from matrix.predict import loader_rules, predict

SCHEMA = 1
CODES = {"loads": "L", "loads-ptx-jit": "J", "no-library": "N", "no-kernel": "K", "torch-unsupported": "K",
         "unknown": "?"}
# Linux drivers from NVIDIA's CUDA minor-version compatibility table (CUDA Toolkit release notes, table 3).
DRIVER_FLOOR = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}
# Stop-gap until matrix.predict carries the GPU names (issue 21): the few names the check page's examples use.
_NAMES = {"T4": "sm_75", "V100": "sm_70", "P100": "sm_60", "P40": "sm_61", "GTX 1080 Ti": "sm_61",
          "A100": "sm_80", "A10": "sm_86", "A6000": "sm_86", "RTX 3090": "sm_86", "L4": "sm_89", "RTX 4090": "sm_89",
          "H100": "sm_90", "H200": "sm_90", "B200": "sm_100", "RTX 5090": "sm_120", "Jetson AGX Orin": "sm_87",
          "Jetson Orin Nano": "sm_87", "Jetson TX2": "sm_62"}
NOISE = ("nvidia", "geforce", "tesla", "quadro")


def normalise(text: str) -> str:
    """Lower case, the words NVIDIA/GeForce/Tesla/Quadro and memory sizes dropped, non-alphanumerics removed."""
    words = re.split(r"[^a-z0-9]+", text.lower())
    return "".join(w for w in words if w and w not in NOISE and not re.fullmatch(r"\d+gb", w))


def gpu_table() -> dict[str, list[Any]]:
    """Normalised spelling -> [name, arch, jetson], also without a leading rtx/gtx where that is unambiguous."""
    names = [(name, arch, name.startswith("Jetson")) for name, arch in _NAMES.items()]
    table = {normalise(n): [n, a, j] for n, a, j in names}
    short: dict[str, list[list[Any]]] = {}
    for key, entry in list(table.items()):
        short.setdefault(re.sub(r"^(rtx|gtx)", "", key), []).append(entry)
    table.update({k: v[0] for k, v in short.items() if len(v) == 1 and k not in table and len(k) >= 3})
    return table


def _vkey(text: str) -> Any:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def wheel_table(readings: list[dict[str, Any]], archs: list[str]) -> tuple[dict[str, Any], list[str]]:
    """platform -> release -> {"override", "libs"} (see the module docstring), and the CUDA versions tabulated."""
    cudas = sorted({lib["cuda"] for w in readings for lib in w["libraries"] if lib.get("cuda")} |
                   {"11.8", "12.1", "12.4", "12.6", "12.8", "12.9", "13.0"}, key=_vkey)
    everything = {"build": "any", "archs": [f"sm_{n}" for n in range(30, 200)]}
    out: dict[str, Any] = {}
    for wheel in sorted(readings, key=lambda w: _vkey(w["release"])):
        rule = loader_rules.rule(wheel["loader"])
        libs = {}
        for cuda in cudas:
            rows = [predict.predict_cell(arch, {**everything, "cuda": cuda}, wheel) for arch in archs]
            library = next((r["library"] for r in rows if r.get("library")), None)
            libs[cuda] = [library, "".join(CODES.get(r["verdict"], "?") for r in rows)]
        out.setdefault(wheel["platform"], {})[wheel["release"]] = {
            "override": rule.get("override") == "BNB_CUDA_VERSION", "missing": rule.get("missing", "unknown"),
            "libs": libs}
    return out, cudas


def torch_table(builds: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(torch build -> {"cuda", "archs"} (archs None where the wheel was not read), PyPI release -> the build its
    default wheel is: "2.6.0" -> "2.6.0+cu124", as the wheel's own torch/version.py says)."""
    table = {b["build"]: {"cuda": b.get("cuda"), "archs": b.get("archs")} for b in builds if b.get("build")}
    defaults = {b["release"]: b["build"] for b in builds if b.get("release") and b.get("build")}
    return table, defaults


def build_facts(readings: list[dict[str, Any]], builds: list[dict[str, Any]],
                measured: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """The whole facts dict from the predicted layer's readings and the measured cells (see the module docstring)."""
    archs = list(predict.GPUS)
    wheels, cudas = wheel_table(readings, archs)
    torch, defaults = torch_table(builds)
    return {"schema": SCHEMA, "archs": archs, "gpus": gpu_table(), "torch": torch, "torch_default": defaults,
            "wheels": wheels,
            "cudas": cudas, "measured": measured or {}, "driver_floor": DRIVER_FLOOR,
            "releases": sorted({w["release"] for w in readings}, key=_vkey)}


def load_facts(measured: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """The facts from the committed caches (no network)."""
    from matrix.predict import torch_builds, wheels

    read = torch_builds.load_builds()
    builds = [{**b, "release": next((r["release"] for r in read if r.get("version") == b["build"]), None)}
              for b in predict.torch_build_list(read)]
    return build_facts(wheels.load_cache(), builds, measured)


def to_js(facts: dict[str, Any]) -> bytes:
    """check/data.js: the facts as one compact JavaScript assignment (a script, so it loads from file://)."""
    text = json.dumps(facts, separators=(",", ":"), sort_keys=True)
    return ("window.BNB_CHECK_FACTS=" + text.replace("</", "<\\/") + ";\n").encode()
