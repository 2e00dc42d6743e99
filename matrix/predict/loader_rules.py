"""Which native library a bitsandbytes release loads, taken from that release's own Python source.

`extract()` runs when a wheel is read (`matrix.predict.wheels`): it keeps the lines of `cextension.py` and
`cuda_specs.py` that decide the library (with line numbers and the file's sha256) as evidence in the cache.
`rule()` is pure: it reads that evidence into a rule per release, with a pointer to the lines it rests on:

- `template`: the library file name built from torch's CUDA version (`libbitsandbytes_cuda{...}`);
- `version_format`: how torch.version.cuda becomes the `{...}` part (`"12.4"` -> `"124"`);
- `override`: whether BNB_CUDA_VERSION replaces that part;
- `missing`: what happens when the named file is not in the wheel (`cpu-fallback`: loads the CPU library and
  warns; `error-on-use`: a stand-in object that raises on the first native call; `import-error`: raises).
A clause whose lines are not found is "unknown": the rule is read from the source, never assumed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

SOURCE_FILES = ("bitsandbytes/cextension.py", "bitsandbytes/cuda_specs.py", "bitsandbytes/cuda_setup/main.py")
KEYWORDS = re.compile(r"libbitsandbytes|library_name|BNB_CUDA_VERSION|torch\.version\.(cuda|hip)|version_string|"
                      r"\.exists\(\)|Mock|ErrorHandler|without GPU|Could not find|_cpu|raise |def |return f\"|"
                      r"cuda\{|rocm|xpu|SUFFIX|LoadLibrary|except |runtime_version|available|same major|override_var")
MAX_LINES = 200


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


def rule(evidence: dict[str, Any]) -> dict[str, Any]:
    """The loading rule of one release from its evidence lines (see the module docstring); pointers quote them."""
    template = _find(evidence, r"f\"[^\"]*libbitsandbytes_(cuda|\{prefix\})\{cuda_specs\.cuda_version_string\}")
    version = _find(evidence, r"return f\"\{major\}\{minor\}\"|return f\"\{major \* 10 \+ minor\}\"")
    nearest = _find(evidence, r"v\[0\] == runtime_version\[0\] and v < runtime_version")
    source_of_version = _find(evidence, r"torch\.version\.cuda")
    override = _find(evidence, r"os\.environ.*BNB_CUDA_VERSION|BNB_CUDA_VERSION.*environ|"
                               r"override_var = .*BNB_CUDA_VERSION")
    fallback_cpu = _find(evidence, r"Could not find the bitsandbytes CUDA binary")
    mock = _find(evidence, r"class ErrorHandlerMockBNBNativeLibrary|ErrorHandlerMockBNBNativeLibrary\(")
    raises = _find(evidence, r"raise RuntimeError\(.*(not found|Configured CUDA binary)|raise FileNotFoundError")
    if mock:
        missing, missing_at = "error-on-use", mock
    elif fallback_cpu:
        missing, missing_at = "cpu-fallback", fallback_cpu
    elif raises:
        missing, missing_at = "import-error", raises
    else:
        missing, missing_at = "unknown", None
    return {
        "template": "libbitsandbytes_cuda{major}{minor}" if template and version else "unknown",
        "template_at": _pointer(template), "version_at": _pointer(version),
        "version_from": "torch.version.cuda" if source_of_version else "unknown",
        "version_from_at": _pointer(source_of_version),
        "selection": "nearest-same-major" if nearest else "exact",
        "selection_at": _pointer(nearest),
        "override": "BNB_CUDA_VERSION" if override else "none found",
        "override_at": _pointer(override),
        "missing": missing, "missing_at": _pointer(missing_at),
    }


def library_name(rule_: dict[str, Any], torch_cuda: str, shipped: Iterable[str] = ()) -> str | None:
    """The CUDA library stem a release loads under torch's CUDA version (`12.4` -> `libbitsandbytes_cuda124`).

    With `selection` nearest-same-major (0.50 on) and no exact match among the `shipped` CUDA versions: the
    highest lower version of the same major, else the lowest higher one, else the exact (missing) name.
    """
    if rule_["template"] == "unknown":
        return None
    want = tuple(int(x) for x in torch_cuda.split(".")[:2])
    have = {tuple(int(x) for x in v.split(".")[:2]) for v in shipped}
    if rule_.get("selection") == "nearest-same-major" and want not in have:
        lower = [v for v in have if v[0] == want[0] and v < want]
        higher = [v for v in have if v[0] == want[0] and v > want]
        want = max(lower) if lower else min(higher) if higher else want
    return f"libbitsandbytes_cuda{want[0]}{want[1]}"
