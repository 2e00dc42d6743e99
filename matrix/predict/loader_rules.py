"""Which native library a bitsandbytes release loads, taken from that release's own Python source.

`extract()` keeps the lines of the loader files (`cextension.py`, `cuda_specs.py`, `cuda_setup/main.py`) that decide
the library, with line numbers and the file's sha256. `rule()` is pure: it reads those lines into a rule per release,
each clause with a pointer to the line it rests on:

- `template`: the library name built from a CUDA version (`libbitsandbytes_cuda{major}{minor}`);
- `version_from`: where that version comes from: `torch.version.cuda` (0.41 on), or, in 0.39 and 0.40, the CUDA
  runtime (`libcudart.so`) the loader finds on the system (LD_LIBRARY_PATH, CONDA_PREFIX, /usr/local/cuda...) through
  `cudaRuntimeGetVersion`: there the choice depends on the system, not on torch;
- `nocublaslt`: a GPU below sm_75 gets the `_nocublaslt` library (to 0.44.x);
- `override`: how `BNB_CUDA_VERSION` rewrites the name: `slice` (0.41-0.42: `name[:-6] + value + ".so"`), `rstrip`
  (0.43.x: trailing digits stripped, value appended), `re.sub` (0.44-0.49: `cuda\\d+` replaced), `replace`
  (0.50 on: digits only, the whole name rebuilt), or none;
- `selection`: `exact`, or `nearest-same-major` (0.50 on);
- `missing`: what follows when the named file is not in the wheel: `setup-failed` (to 0.43.0: importing raises
  "CUDA Setup failed despite GPU being available"), `cpu-fallback` (0.43.1-0.45: the CPU library, with a warning),
  `error-on-use` (0.46 on: a stand-in whose first native call raises).
A clause whose lines are not found is "unknown": the rule is read from the source, never assumed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

SOURCE_FILES = ("bitsandbytes/cextension.py", "bitsandbytes/cuda_specs.py", "bitsandbytes/cuda_setup/main.py")
KEYWORDS = re.compile(r"libbitsandbytes|library_name|binary_name|BNB_CUDA_VERSION|torch\.version\.(cuda|hip)|"
                      r"version_string|\.exists\(\)|Mock|ErrorHandler|without GPU|Could not find|_cpu|raise |def |"
                      r"return f[\"']|cuda\{|rocm|xpu|SUFFIX|LoadLibrary|except |runtime_version|available|"
                      r"same major|override_var|override_value|nocublaslt|rstrip|re\.sub|cudaRuntimeGetVersion|"
                      r"Setup Failed|has_cublaslt|\(7, 5\)|cc_minor\) < 5")
MAX_LINES = 400


def extract(sources: dict[str, str]) -> dict[str, Any]:
    """The evidence lines of each loader source file: {path: {"sha256", "lines": [[number, text], ...]}}."""
    evidence: dict[str, Any] = {}
    for path, text in sorted(sources.items()):
        lines = [[n, line.rstrip()] for n, line in enumerate(text.splitlines(), 1) if KEYWORDS.search(line)]
        evidence[path] = {"sha256": hashlib.sha256(text.encode()).hexdigest(), "lines": lines[:MAX_LINES]}
    return evidence


def _find(evidence: dict[str, Any], pattern: str) -> tuple[str, int, str] | None:
    """The first evidence line matching `pattern`: (file, line number, text)."""
    regex = re.compile(pattern)
    for path, facts in sorted(evidence.items()):
        for number, text in facts["lines"]:
            if regex.search(text):
                return path, number, text.strip()
    return None


def _pointer(hit: tuple[str, int, str] | None) -> str | None:
    return f"{hit[0]}:{hit[1]}: {hit[2]}" if hit else None


OVERRIDES = (  # (style, the line that shows it), first match wins
    ("replace", r"library_name = f\"libbitsandbytes_\{prefix\}\{override_value\}"),
    ("re.sub", r"re\.sub\(r?[\"']cuda\\d\+[\"']"),
    ("rstrip", r"\.rstrip\([\"']0123456789[\"']\)"),
    ("slice", r"binary_name\[:-6\] \+ f[\"']\{os\.environ\[[\"']BNB_CUDA_VERSION"),
)
MISSING = (  # (what follows a missing library, the line that shows it), first match wins
    ("error-on-use", r"class ErrorHandlerMockBNBNativeLibrary|ErrorHandlerMockBNBNativeLibrary\("),
    ("cpu-fallback", r"Could not find the bitsandbytes CUDA binary"),
    ("setup-failed", r"raise Exception\([\"']CUDA SETUP: Setup Failed!"),
    ("import-error", r"raise RuntimeError\(.*(not found|Configured CUDA binary)|raise FileNotFoundError"),
)


def rule(evidence: dict[str, Any]) -> dict[str, Any]:
    """The loading rule of one release from its evidence lines (see the module docstring); pointers quote them."""
    template = _find(evidence, r"f[\"'][^\"']*libbitsandbytes_(cuda|\{prefix\})\{(cuda_specs\.)?cuda_version_string\}")
    version = _find(evidence, r"return f[\"']\{major\}\{minor\}[\"']|return f[\"']\{major \* 10 \+ minor\}[\"']")
    nearest = _find(evidence, r"v\[0\] == runtime_version\[0\] and v < runtime_version")
    from_torch = _find(evidence, r"map\(int, torch\.version\.cuda\.split|version_str = torch\.version\.cuda")
    from_system = _find(evidence, r"cudaRuntimeGetVersion\(")
    nocublaslt = _find(evidence, r"(binary_name|library_name) \+?= f?[\"'].*_nocublaslt")
    threshold = _find(evidence, r"\(7, 5\)|int\(cc_minor\) < 5")
    override = next(((style, hit) for style, pattern in OVERRIDES if (hit := _find(evidence, pattern))),
                    ("none found", None))
    missing = next(((kind, hit) for kind, pattern in MISSING if (hit := _find(evidence, pattern))), ("unknown", None))
    version_from, version_from_at = ("torch.version.cuda", from_torch) if from_torch else \
        ("system libcudart", from_system) if from_system else ("unknown", None)
    return {
        "template": "libbitsandbytes_cuda{major}{minor}" if template and version else "unknown",
        "template_at": _pointer(template), "version_at": _pointer(version),
        "version_from": version_from, "version_from_at": _pointer(version_from_at),
        "nocublaslt": bool(nocublaslt), "nocublaslt_at": _pointer(nocublaslt),
        "nocublaslt_below_at": _pointer(threshold) if nocublaslt else None,
        "selection": "nearest-same-major" if nearest else "exact", "selection_at": _pointer(nearest),
        "override": override[0], "override_at": _pointer(override[1]),
        "missing": missing[0], "missing_at": _pointer(missing[1]),
    }


def override_name(rule_: dict[str, Any], stem: str, value: str) -> tuple[str | None, str]:
    """(library stem, note) after BNB_CUDA_VERSION=`value` rewrote `stem`, exactly as the release's code does; None
    when the release refuses the value."""
    style = rule_["override"]
    if style == "slice":  # binary_name[:-6] + value + ".so", on the name with ".so"
        return (f"{stem}.so"[:-6] + value), "the release cuts the last 6 characters of the name and appends the value"
    if style == "rstrip":
        return stem.rstrip("0123456789") + value, "the release strips the trailing digits and appends the value"
    if style == "re.sub":
        return re.sub(r"cuda\d+", f"cuda{value}", stem, count=1), "the release replaces cudaXYZ in the name"
    if style == "replace":
        if not value.isdigit():
            return None, f"BNB_CUDA_VERSION={value!r} is refused: the release wants digits only (raises RuntimeError)"
        return f"libbitsandbytes_cuda{value}", "the release builds the name from the value alone"
    return stem, "this release does not read BNB_CUDA_VERSION"


def library_name(rule_: dict[str, Any], torch_cuda: str | None, shipped: Iterable[str] = (), *,
                 capability: tuple[int, int] | None = None, override: str | None = None,
                 system_cuda: str | None = None) -> tuple[str | None, list[str]]:
    """(library stem, notes) a release loads: from torch's (or, in 0.39-0.40, the system's) CUDA version, the GPU's
    compute capability (`_nocublaslt` below 7.5 where the release has it), BNB_CUDA_VERSION and the CUDA versions
    the wheel ships (for `nearest-same-major`). None: the rule or an input it needs is unknown (notes say which)."""
    if rule_["template"] == "unknown":
        return None, ["the release's loader rule could not be read from its source"]
    cuda = system_cuda if rule_["version_from"] == "system libcudart" else torch_cuda
    if rule_["version_from"] == "system libcudart" and cuda is None:
        return None, ["this release picks the library by the CUDA runtime (libcudart.so) it finds on the system, "
                      "not by torch; which one it finds is not known here"]
    if rule_["version_from"] == "unknown":
        return None, ["where the release takes the CUDA version from could not be read"]
    if cuda is None:
        return None, ["torch's CUDA version is not known"]
    notes = [f"CUDA {cuda} from {rule_['version_from']}"]
    want = tuple(int(x) for x in cuda.split(".")[:2])
    have = {tuple(int(x) for x in v.split(".")[:2]) for v in shipped}
    if rule_.get("selection") == "nearest-same-major" and not override and want not in have:
        lower = [v for v in have if v[0] == want[0] and v < want]
        higher = [v for v in have if v[0] == want[0] and v > want]
        picked = max(lower) if lower else min(higher) if higher else want
        if picked != want:
            notes.append(f"no CUDA {want[0]}.{want[1]} library: the release takes the nearest of the same major, "
                         f"{picked[0]}.{picked[1]}")
        want = picked
    stem = f"libbitsandbytes_cuda{want[0]}{want[1]}"
    if rule_.get("nocublaslt") and capability is not None and capability < (7, 5):
        stem += "_nocublaslt"
        notes.append("a GPU below sm_75 gets the _nocublaslt library")
    if override:
        renamed, note = override_name(rule_, stem, override)
        notes.append(f"BNB_CUDA_VERSION={override}: {note}")
        return renamed, notes
    return stem, notes
