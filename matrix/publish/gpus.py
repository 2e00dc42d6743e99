"""The GPUs page's data: coverage of each wheel, predictions, and the prediction beside every measured GPU cell.

Pure functions from the cached readings (and the aggregate's `latest` frame) to DataFrames, lists of dicts,
the template context (`gpus_context`) and the two exports (`binaries_csv`, `predictions_csv`). No I/O except
`load_inputs`, which reads the committed caches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import tomllib
from packaging.version import Version

from matrix.predict import binaries, gpus, predict, reports, torch_builds, wheels
from matrix.measure.axes import DEFAULT_AXES
from matrix.predict.fatbin import arch_number

# Measured signature -> what it says about the native library (None: the run never reached it).
MEASURED = {
    "native-library-missing": "no-library", "compiled-without-gpu": "no-library", "cuda-setup-failed": "no-library",
    "no-kernel-image": "no-kernel", "invalid-device-function": "no-kernel",
    "bnb-too-old": None, "bnb-not-installed": None, "accelerate-missing": None, "no-gpu": None,
    "frozenset-device-check": None,
}
BEFORE_LOADING = ("install", "import")  # stages where a failure says nothing about the native library
AGREES = {"loads": {"loads", "loads-ptx-jit"}, "no-library": {"no-library", "setup-failed"},
          "no-kernel": {"no-kernel", "torch-unsupported"}}
KIND_ORDER = {"read": 0, "build-script": 1, "reported": 2, "inferred": 3}  # which arch list a grid column prefers


def load_inputs(axes_path: Path | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(wheel readings, torch builds to predict for) from the committed caches and the axes file."""
    axes_path = axes_path or DEFAULT_AXES
    axes_builds = tomllib.loads(axes_path.read_text()).get("torch_builds", {})
    return wheels.load_cache(), torch_builds.all_builds(torch_builds.load_builds(), axes_builds)


def binaries_frame(readings: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (release, platform, library, section, kind, arch): status compiled or unknown. PTX arch as sm_XX.

    `section` is where the code sits: nv_fatbin (device-linked) or relfatbin (relocatable; its PTX is JIT-linked
    by the runtime at first launch); glibc/glibcxx are the library's highest needed GLIBC_/GLIBCXX_ versions."""
    rows = []
    for wheel in readings:
        for lib in wheel["libraries"]:
            base = {"release": wheel["release"], "platform": wheel["platform"], "library": lib["name"],
                    "backend": lib["backend"], "cuda": lib.get("cuda", ""), "nocublaslt": lib.get("nocublaslt", False),
                    "glibc": lib.get("glibc") or "", "glibcxx": lib.get("glibcxx") or ""}
            by_section = binaries.coverage_by_section(lib)
            for section, cov in by_section.items():
                for kind in ("sass", "ptx"):
                    for arch, status in sorted(cov[kind].items(), key=lambda kv: arch_number(kv[0])):
                        rows.append({**base, "section": section, "kind": kind, "arch": f"sm_{arch_number(arch)}",
                                     "status": status})
            if binaries.problem(lib) and not any(c for cov in by_section.values() for c in cov.values()):
                rows.append({**base, "section": "", "kind": "unknown", "arch": "", "status": "unknown"})
    return pd.DataFrame(rows, columns=["release", "platform", "library", "backend", "cuda", "kind", "arch", "section",
                                       "status", "nocublaslt", "glibc", "glibcxx"])


def libraries_frame(readings: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (release, platform, library): what it needs and whether both readers agreed on it."""
    rows = [{"release": w["release"], "platform": w["platform"], "library": lib["name"], "backend": lib["backend"],
             "cuda": lib.get("cuda", ""), "size": lib["size"], "needed": " ".join(lib["needed"]),
             "glibc": lib.get("glibc") or "", "glibcxx": lib.get("glibcxx") or "", "cxxabi": lib.get("cxxabi") or "",
             "readers_agree": binaries.readers_agree(lib), "problem": binaries.problem(lib) or ""}
            for w in readings for lib in w["libraries"]]
    return pd.DataFrame(rows)


def release_rules(readings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loading rule of each release (from its own source), newest first."""
    seen: dict[str, dict[str, Any]] = {}
    for wheel in readings:
        if wheel["platform"] == predict.PLATFORM:
            seen[wheel["release"]] = {"release": wheel["release"], **predict.release_rule(wheel)}
    return sorted(seen.values(), key=lambda r: Version(r["release"]), reverse=True)


def coverage_rows(readings: list[dict[str, Any]], platform: str = predict.PLATFORM) -> list[dict[str, Any]]:
    """Per release and CUDA library of one platform: SASS and PTX archs, unknown ones marked with '?'."""
    rows = []
    for wheel in readings:
        if wheel["platform"] != platform:
            continue
        for lib in wheel["libraries"]:
            if lib["backend"] != "cuda":
                continue
            cov = binaries.coverage(lib)
            rows.append({"release": wheel["release"], "library": lib["name"], "cuda": lib.get("cuda", ""),
                         "agree": binaries.readers_agree(lib),
                         **{kind: " ".join(a + ("" if s == "compiled" else "?") for a, s in
                                           sorted(cov[kind].items(), key=lambda kv: arch_number(kv[0])))
                            for kind in ("sass", "ptx")},
                         "needed": " ".join(n for n in lib["needed"] if "cu" in n.lower())})
    return sorted(rows, key=lambda r: (Version(r["release"]), r["cuda"]), reverse=True)


def agreement(latest: pd.DataFrame, preds: pd.DataFrame) -> list[dict[str, Any]]:
    """Every measured GPU cell (latest rows on a runner with a compute capability) beside its prediction.

    `agrees` is "yes", "no", "not comparable" (the run stopped before bitsandbytes loaded its library) or
    "unknown" (the prediction is); `why` explains every answer that is not a plain yes.
    """
    if latest.empty or "runner_compute_capability" not in latest:
        return []
    gpu_rows = latest[latest["runner_compute_capability"].fillna("").astype(str) != ""]
    cells = gpu_rows.groupby(["runner", "runner_compute_capability", "torch", "bnb"], sort=True)
    linux = preds[preds.platform == predict.PLATFORM] if not preds.empty else preds  # the measuring runners' platform
    index = {(r.gpu_arch, r.torch, r.bnb): r for r in linux.itertuples()} if not linux.empty else {}
    out = []
    for (runner, cc, torch, bnb), rows in cells:
        gpu = "sm_" + str(cc).replace(".", "")
        passed = (rows["outcome"] == "pass").any()
        slugs = sorted({s for s in rows["signature"].fillna("") if s})
        measured = "loads" if passed else next((MEASURED[s] for s in slugs if MEASURED.get(s)), None)
        # stopped before the library could show anything: a signature that says so, or every failure at install
        # or import with no library signature (a failure found later, out of memory say, means it loaded)
        stopped = not passed and (any(s in MEASURED and MEASURED[s] is None for s in slugs) or (
            measured is None and rows["stage"].isin(BEFORE_LOADING).all()))
        if measured is None and not passed and not stopped:
            measured = "loads"  # failed later (out of memory, dispatch): the library loaded and ran kernels
        pred = index.get((gpu, torch, bnb))
        row = {"runner": runner, "gpu_arch": gpu, "torch": torch, "bnb": bnb,
               "measured": "stopped before loading" if stopped else measured, "signatures": " ".join(slugs),
               "predicted": pred.verdict if pred is not None else "not predicted",
               "reason": pred.reason if pred is not None else ""}
        if pred is None or pred.verdict == "unknown":
            row |= {"agrees": "unknown", "why": "no prediction could be made for this cell" if pred is None
                    else f"the prediction is unknown: {pred.reason}"}
        elif stopped:
            row |= {"agrees": "not comparable",
                    "why": f"the run stopped before bitsandbytes loaded a library ({', '.join(slugs)})"}
        elif pred.verdict in AGREES.get(measured or "", set()):
            row |= {"agrees": "yes", "why": ""}
        else:
            seen = ", ".join(slugs) or "pass"
            row |= {"agrees": "no", "why": f"predicted {pred.label}, measured {measured} ({seen})"}
        out.append(row)
    return out


def cell_prediction(preds: pd.DataFrame, compute_capability: str, torch: str, bnb: str) -> dict[str, Any] | None:
    """The prediction to show beside one measured GPU cell (compute capability "9.0"), or None if there is none."""
    if preds.empty or not compute_capability:
        return None
    gpu = "sm_" + str(compute_capability).replace(".", "")
    hit = preds[(preds.gpu_arch == gpu) & (preds.torch == torch) & (preds.bnb == bnb)
                & (preds.platform == predict.PLATFORM)]
    return hit.iloc[0].to_dict() if len(hit) else None


def home_platform(arch: str) -> str:
    """Where an architecture's grid is drawn: Linux x86_64, or Linux aarch64 for Arm-only GPUs (Jetson, Spark)."""
    return predict.PLATFORM if arch in predict.PLATFORM_ARCHS[predict.PLATFORM] else "linux-aarch64"


def grid(preds: pd.DataFrame, columns: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per GPU arch: rows of (release, cells for each torch build of `columns[platform]`), newest release first."""
    names = gpus.names_by_arch()
    out = []
    for arch in sorted({a for archs in predict.PLATFORM_ARCHS.values() for a in archs}, key=arch_number):
        platform = home_platform(arch)
        builds = columns.get(platform, [])
        mine = preds[(preds.gpu_arch == arch) & (preds.platform == platform)] if not preds.empty else preds
        sub = mine[mine.torch.isin(builds)] if not mine.empty else mine
        rows = []
        for bnb in sorted(set(sub.bnb) if not sub.empty else set(), key=Version, reverse=True):
            cells = {r.torch: {"verdict": r.verdict, "label": r.label, "reason": r.reason,
                               "signature": r.signature if isinstance(r.signature, str) else None}  # NaN: none
                     for r in sub[sub.bnb == bnb].itertuples()}
            rows.append({"bnb": bnb, "cells": [cells.get(b) for b in builds]})
        counts = mine["verdict"].value_counts().to_dict() if not mine.empty else {}
        out.append({"arch": arch, "gpus": names.get(arch, ""), "platform": platform, "builds": builds, "rows": rows,
                    "counts": counts})
    return out


def grid_builds(builds: list[dict[str, Any]], platform: str = predict.PLATFORM,
                axes_names: list[str] | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """(the torch builds a platform's grid shows, the builds it leaves out with why).

    Per CUDA version: the newest build whose arch list is known (read from a wheel before a build script, before a
    report, before an inference); the axes' builds whose arch list is known are shown too."""
    mine = [b for b in builds if b.get("platform", predict.PLATFORM) == platform and b.get("cuda")]
    known = [b for b in mine if b.get("archs")]
    best: dict[str, dict[str, Any]] = {}
    for b in known:  # builds come oldest first: a newer release replaces an older one of the same kind or worse
        old = best.get(b["cuda"])
        if old is None or KIND_ORDER.get(b["archs_kind"], 9) <= KIND_ORDER.get(old["archs_kind"], 9):
            best[b["cuda"]] = b
    chosen = {b["build"] for b in best.values()} | {b["build"] for b in known if b["build"] in (axes_names or [])}
    shown = [b["build"] for b in mine if b["build"] in chosen]
    left = [{"build": b["build"], "cuda": b["cuda"],
             "why": "its arch list is unknown" if not b.get("archs") else
             f"a newer or better-read CUDA {b['cuda']} build is shown ({best[b['cuda']]['build']})"}
            for b in mine if b["build"] not in chosen]
    return shown, left


def predictions_csv(preds: pd.DataFrame) -> bytes:
    """data/predictions.csv: one row per (GPU arch, torch build, bitsandbytes release). What is the same for every
    row of an arch or a release (GPU names, the loader rule's source line) is in loader-rules.csv and gpu-names.csv,
    not repeated on 38,000 rows (it was 6 of the file's 15 MB)."""
    cols = ["gpu_arch", "torch", "torch_cuda", "torch_index", "torch_archs_kind", "bnb", "platform",
            "library", "verdict", "signature", "reason", "torch_supports_gpu", "glibc_floor", "driver_floor"]
    return preds.reindex(columns=cols).to_csv(index=False).encode()


def loader_rules_csv(preds: pd.DataFrame) -> bytes:
    """data/loader-rules.csv: per bitsandbytes release and platform, the source line its loader names the library by."""
    return preds.reindex(columns=["bnb", "platform", "rule_at"]).drop_duplicates().to_csv(index=False).encode()


def gpu_names_csv(preds: pd.DataFrame) -> bytes:
    """data/gpu-names.csv: the GPUs users name, per architecture."""
    return preds.reindex(columns=["gpu_arch", "gpus"]).drop_duplicates().to_csv(index=False).encode()


def binaries_csv(readings: list[dict[str, Any]]) -> bytes:
    """data/binaries.csv: one row per (release, platform, library, kind, arch)."""
    return binaries_frame(readings).to_csv(index=False).encode()


def gpus_context(readings: list[dict[str, Any]], builds: list[dict[str, Any]], latest: pd.DataFrame | None = None,
                 axes_names: list[str] | None = None, preds: pd.DataFrame | None = None) -> dict[str, Any]:
    """Everything `site/templates/gpus.md.j2` needs; `preds` when the caller has made the predictions already."""
    preds = predict.predictions(readings, builds) if preds is None else preds
    columns, left_out = {}, {}
    for platform in predict.PLATFORM_ARCHS:
        columns[platform], left_out[platform] = grid_builds(builds, platform, axes_names)
    agree = agreement(latest if latest is not None else pd.DataFrame(), preds)
    libs = libraries_frame(readings)
    releases = sorted({w["release"] for w in readings}, key=Version)
    reported = reports.compare(reports.load(), readings, builds)
    arch_grid = grid(preds, columns)
    for g in arch_grid:  # each architecture's page lists the reports about a GPU of it
        g["reported"] = [r for r in reported if r.get("gpu") and (found := gpus.find_gpu(r["gpu"])) is not None
                         and found.sm == g["arch"]]
    return {
        "gpus": [{"arch": a, "names": n} for a, n in gpus.names_by_arch().items()],
        "builds": [b for b in builds if b["build"] in columns[predict.PLATFORM]
                   and b.get("platform", predict.PLATFORM) == predict.PLATFORM],
        "all_builds": builds, "left_out": left_out, "columns": columns,
        "grid": arch_grid, "verdicts": predict.VERDICTS,
        "coverage": coverage_rows(readings), "rules": release_rules(readings), "agreement": agree,
        "disagreements": [a for a in agree if a["agrees"] == "no"],
        "reported": reported, "reported_summary": reports.summary(reported),
        "releases": releases, "platforms": sorted({w["platform"] for w in readings}),
        "unknown_libraries": libs[~libs.readers_agree & (libs.backend == "cuda")].to_dict("records")
        if not libs.empty else [],
        "counts": preds.verdict.value_counts().to_dict() if not preds.empty else {},
    }
