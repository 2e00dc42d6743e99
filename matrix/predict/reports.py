"""What people reported in issue threads, beside what the binaries predict for the same setup.

`data/reports.jsonl` holds one real report a line, in our own words: the thread's link, the GPU, the bitsandbytes
release, torch (and its CUDA), the platform, what the system adds (glibc, the CUDA runtime found, BNB_CUDA_VERSION,
driver) and the outcome: loads, no-library, setup-failed, no-kernel, torch-unsupported, l4t-abi, glibc-too-old,
driver-too-old, no-wheel or other. A field the thread does not state is null.

`compare()` predicts each report's setup with `matrix.predict.predict.predict_cell` and says whether the two agree.
A report is "not comparable" when the release's wheel for its platform was not read, its outcome is "other", or the
prediction is unknown; where the GPU is not stated, a prediction that is the same for every GPU of the platform
still compares. A disagreement is kept with the prediction's reason, to be explained, never dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from matrix.predict import gpus, predict, torch_builds

REPORTS = Path(__file__).with_name("data") / "reports.jsonl"
OUTCOMES = ("loads", "no-library", "setup-failed", "no-kernel", "torch-unsupported", "l4t-abi", "glibc-too-old",
            "driver-too-old", "no-wheel", "other")
AGREES = {  # reported outcome -> the predicted verdicts that say the same
    "loads": {"loads", "loads-ptx-jit"}, "no-library": {"no-library", "setup-failed"},
    "setup-failed": {"setup-failed", "no-library"}, "no-kernel": {"no-kernel", "torch-unsupported"},
    "torch-unsupported": {"torch-unsupported"}, "l4t-abi": {"l4t-abi"}, "glibc-too-old": {"glibc-too-old"},
    "driver-too-old": {"driver-too-old"}, "no-wheel": {"no-wheel"},
}
REQUIRED = ("id", "url", "platform", "outcome", "says")


def load(path: Path = REPORTS) -> list[dict[str, Any]]:
    """Every report; a malformed line raises naming the file, the line and what to mend."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            report = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg}); write one JSON object a line") from None
        missing = [k for k in REQUIRED if not report.get(k)]
        if missing or report["outcome"] not in OUTCOMES or not str(report["url"]).startswith("https://github.com/"):
            raise ValueError(f"{path}:{number}: needs {', '.join(REQUIRED)}, an outcome of {', '.join(OUTCOMES)} "
                             f"and a github.com link (got {', '.join(missing) or report.get('outcome')})")
        out.append(report)
    return out


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def find_build(report: dict[str, Any], builds: list[dict[str, Any]],
               variants: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The torch build a report names: a known build of that name, else one made from its CUDA version, with the
    arch list of its release line's variant where `data/torch_variants.toml` has it (else unknown)."""
    name, platform, cuda = report.get("torch"), report["platform"], report.get("torch_cuda")
    known = next((b for b in builds if name and b["build"] == name and b.get("platform") == platform), None)
    if known:
        return known
    release = _version(name.split("+")[0]) if name else None
    series = f"{release.major}.{release.minor}" if release else None
    variant = next((v for v in (variants if variants is not None else torch_builds.load_variants())
                    if series and v["series"] == series and v["cuda"] == cuda and v["platform"] == platform), None)
    return {"build": name or f"a CUDA {cuda or '(unknown)'} torch", "release": name, "platform": platform, "cuda": cuda,
            "archs": variant["archs"] if variant else None, "index": "reported",
            "archs_kind": variant["kind"] if variant else "unknown",
            "archs_source": variant["source"] if variant else "the report's torch; its arch list is not known here"}


def _wheel(report: dict[str, Any], readings: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """(the wheel a pip install of the report's release gives on its platform, why not when None)."""
    release, platform = report.get("bnb"), report["platform"]
    mine = [w for w in readings if w["release"] == release]
    exact = next((w for w in mine if w["platform"] == platform), None)
    if exact:
        return exact, ""
    anywhere = next((w for w in mine if str(w.get("filename", "")).endswith("-any.whl")), None)
    if anywhere:  # 0.39-0.42: one py3-none-any wheel installs everywhere, with Linux x86-64 libraries inside
        return anywhere, ""
    if mine:
        return None, "no-wheel"
    return None, f"bitsandbytes {release or '(release not stated)'} is not among the wheels read"


def _gpus_of(report: dict[str, Any], build: dict[str, Any]) -> list[gpus.Gpu]:
    """The report's GPU, its candidates, or (not stated) every architecture predicted on its platform that the
    report's torch runs on (the report got as far as bitsandbytes, so torch ran on its GPU)."""
    named = [report["gpu"]] if report.get("gpu") else list(report.get("gpu_candidates") or [])
    found = [g for g in (gpus.find_gpu(n) for n in named) if g is not None]
    if named:
        return found
    archs = predict.PLATFORM_ARCHS.get(report["platform"], ())
    return [gpus.arch_gpu(a) for a in archs if predict.torch_support(build, a) != "no"]


def compare_one(report: dict[str, Any], readings: list[dict[str, Any]], builds: list[dict[str, Any]],
                variants: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One report beside its prediction: predicted, reason, agrees ("yes", "no", "not comparable"), why."""
    row = {**report, "predicted": None, "reason": "", "chain": []}
    wheel, missing = _wheel(report, readings)
    if wheel is None and missing == "no-wheel":
        row |= {"predicted": "no-wheel", "reason": f"PyPI has no {report['platform']} wheel of {report['bnb']}"}
    elif wheel is None:
        return row | {"agrees": "not comparable", "why": missing}
    elif (wheel["platform"] == report["platform"] and not report.get("system_cuda")
          and predict.release_rule(wheel)["version_from"] == "system libcudart"):
        return row | {"agrees": "not comparable", "why": f"{report['bnb']} picks its library by the CUDA runtime "
                      "found on the system, which the report does not state"}
    else:
        build = find_build(report, builds, variants)
        cards = _gpus_of(report, build)
        if not cards:
            return row | {"agrees": "not comparable", "why": f"the GPU {report.get('gpu')!r} is not in gpus.toml"}
        cells = [predict.predict_cell(card, build, wheel, bnb_cuda_version=report.get("bnb_cuda_version"),
                                      driver=report.get("driver"), glibc=report.get("glibc"),
                                      system_cuda=report.get("system_cuda"), platform=report["platform"])
                 for card in cards]
        verdicts = {c["verdict"] for c in cells}
        if len(verdicts) > 1:
            differ = ", ".join(sorted(verdicts))
            return row | {"agrees": "not comparable",
                          "why": f"the GPU is not stated and the prediction differs by GPU ({differ})"}
        row |= {"predicted": cells[0]["verdict"], "reason": cells[0]["reason"], "chain": cells[0]["chain"]}
    if report["outcome"] == "other":
        return row | {"agrees": "not comparable", "why": "the outcome is none the predictions name"}
    if row["predicted"] == "unknown":
        return row | {"agrees": "not comparable", "why": f"the prediction is unknown: {row['reason']}"}
    if row["predicted"] in AGREES.get(report["outcome"], set()):
        return row | {"agrees": "yes", "why": ""}
    return row | {"agrees": "no", "why": f"reported {report['outcome']}, predicted {row['predicted']}: {row['reason']}"}


def compare(reports: list[dict[str, Any]], readings: list[dict[str, Any]],
            builds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    variants = torch_builds.load_variants()
    return [compare_one(r, readings, builds, variants) for r in reports]


def summary(compared: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and the agreement share among comparable reports (None when none compares)."""
    comparable = [c for c in compared if c["agrees"] in ("yes", "no")]
    agree = sum(c["agrees"] == "yes" for c in comparable)
    return {"reports": len(compared), "comparable": len(comparable), "agree": agree,
            "disagree": len(comparable) - agree,
            "agreement": round(agree / len(comparable), 3) if comparable else None}
