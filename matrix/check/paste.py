"""Read a setup out of pasted text: `python -m bitsandbytes` (new and old style), our `doctor.py` block,
`nvidia-smi`, `pip list` / `pip freeze`, `python -m torch.utils.collect_env` and `transformers env`.

One table of patterns per field, tried in order; the first that matches gives the field. The same table is
written into the check page's data file, so the page reads a paste exactly as the command line does.
"""

from __future__ import annotations

import re

from matrix.check.setup import Setup, arch_of

PASTE_LIMIT = 200_000  # characters read from a paste (the end kept: the newest output is last)
_V = r"(\d+\.\d+(?:\.\d+)?(?:[a-z0-9.+-]*[a-z0-9])?)"  # a version with an optional local tag

# field -> patterns (Python/JavaScript-compatible regular expressions, case-insensitive, multiline)
PATTERNS: dict[str, list[str]] = {
    "gpu": [r"^gpu:[ \t]*(\S.*)$",
            r"^\|\s+\d+\s+((?:NVIDIA|Tesla|Quadro|GeForce|Orin)[^|]*?)\s+(?:On|Off)\s+\|",
            r"^GPU 0:[ \t]*([^(\n]+?)\s*(?:\(UUID.*)?$",
            r"GPU models and configuration:[ \t]*(?:GPU 0:[ \t]*)?([^\n(]*\w)",
            r"\b(NVIDIA [A-Z][A-Za-z0-9 -]*?\d[A-Za-z0-9]*)(?= with CUDA capability)",
            r"(Jetson[ A-Za-z0-9]*\w)"],
    "compute_capability": [r"^compute_capability:[ \t]*(\d+\.\d+)",
                           r"Highest Compute Capability:\s*\(?(\d+,\s*\d+)\)?",
                           r"Highest Compute Capability:\s*(\d+\.\d+)",
                           r"Highest compute capability among GPUs detected:\s*(\d+\.\d+)",
                           r"with CUDA capability (sm_\d+)"],
    "torch": [r"^torch:[ \t]*" + _V, r"^PyTorch:[ \t]*" + _V, r"PyTorch version:[ \t]*" + _V,
              r"PyTorch version \(GPU\?\):[ \t]*" + _V, r"^\[(?:pip3?|conda)\][ \t]*torch[ \t]*(?:==)?[ \t]*" + _V,
              r"^torch[ \t]*==[ \t]*" + _V, r"^torch[ \t]+" + _V + r"(?:[ \t]|$)"],
    "torch_cuda": [r"^torch_cuda:[ \t]*(\d+\.\d+)", r"^PyTorch:.*\n[ \t]+CUDA:[ \t]*(\d+\.\d+)",
                   r"CUDA used to build PyTorch:[ \t]*(\d+\.\d+)", r"PyTorch settings found: CUDA_VERSION=(\d{3,})"],
    "torch_archs": [r"^torch_archs:[ \t]*(\S.*)$"],
    "bnb": [r"^(?:bnb|bitsandbytes):[ \t]*" + _V, r"bitsandbytes v" + _V, r"bitsandbytes[ \t]*==[ \t]*" + _V,
            r"^\[(?:pip3?|conda)\][ \t]*bitsandbytes[ \t]*(?:==)?[ \t]*" + _V,
            r"^-?[ \t]*`?bitsandbytes`? version:[ \t]*" + _V, r"^bitsandbytes[ \t]+" + _V + r"(?:[ \t]|$)"],
    "transformers": [r"^transformers:[ \t]*" + _V, r"^-?[ \t]*`transformers` version:[ \t]*" + _V,
                     r"transformers[ \t]*==[ \t]*" + _V, r"^transformers[ \t]+" + _V + r"(?:[ \t]|$)",
                     r"^[ \t]+transformers:[ \t]*" + _V],
    "os": [r"^os:[ \t]*(linux|windows)", r"^Platform:[ \t]*(Linux|Windows)", r"^OS:[ \t]*.*\b(Linux|Windows|Ubuntu|"
           r"Debian|CentOS|Red Hat|Rocky|Fedora|Arch)", r"(?:^|\s)([A-Z]:\\)", r"(win_amd64|\.dll\b)",
           r"(/usr/lib|/home/|site-packages/|dist-packages/|\.so\b)"],
    "machine": [r"^machine:[ \t]*(x86_64|aarch64)", r"\b(x86_64|aarch64|arm64|AMD64)\b",
                r"(Jetson|\.nv\d\d\.\d\d|tegra)"],
    "glibc": [r"^glibc:[ \t]*(\d+\.\d+)", r"libc:[ \t]*glibc-(\d+\.\d+)", r"with-glibc(\d+\.\d+)",
              r"Libc version:[ \t]*glibc-(\d+\.\d+)", r"^ldd \(.*\) (\d+\.\d+)"],
    "driver": [r"^driver:[ \t]*(\d+(?:\.\d+)*)", r"Driver Version:[ \t]*(\d+(?:\.\d+)*)",
               r"Nvidia driver version:[ \t]*(\d+(?:\.\d+)*)"],
    "env": [r"(BNB_CUDA_VERSION=\d{3,})"],
    "cuda_runtime": [r"^cuda_runtime:[ \t]*(\d+\.\d+)", r"CUDA SETUP: Detected CUDA version (\d{3,})",
                     r"CUDA runtime path found: \S*?cuda-(\d+\.\d+)/"],
}
OS_WORDS = {"linux": "linux", "windows": "windows", "win_amd64": "windows", ".dll": "windows"}


def _first(field: str, text: str) -> str:
    for pattern in PATTERNS[field]:
        match = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
        if match:
            return match.group(1).strip()
    return ""


def _os(found: str) -> str:
    low = found.lower()
    if low in OS_WORDS:
        return OS_WORDS[low]
    return "windows" if re.match(r"^[a-z]:\\$", low) else "linux"


def _machine(found: str) -> str:
    low = found.lower()
    return {"amd64": "x86_64", "arm64": "aarch64", "x86_64": "x86_64", "aarch64": "aarch64"}.get(low, "aarch64")


def _cc(found: str) -> str:
    arch = arch_of(found.replace(" ", ""))
    if not arch:
        return ""
    number = int(arch[3:])
    return f"{number // 10}.{number % 10}"


def _cuda(found: str) -> str:
    return found if "." in found else f"{found[:-1]}.{found[-1]}"  # CUDA_VERSION=124 -> 12.4


def read_paste(text: str) -> Setup:
    """A Setup from whatever the paste shows; fields it does not show stay empty (the engine says so)."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", "replace")
    text = text[-PASTE_LIMIT:].replace("\r\n", "\n")
    got = {field: _first(field, text) for field in PATTERNS}
    env = tuple(tuple(got["env"].split("=", 1)) for _ in [0] if got["env"])  # type: ignore[misc]
    return Setup(gpu=got["gpu"], torch=got["torch"], bnb=got["bnb"], transformers=got["transformers"],
                 os=_os(got["os"]) if got["os"] else "", machine=_machine(got["machine"]) if got["machine"] else "",
                 glibc=got["glibc"], driver=got["driver"], env=env,  # type: ignore[arg-type]
                 torch_cuda=_cuda(got["torch_cuda"]) if got["torch_cuda"] else "",
                 torch_archs=tuple(got["torch_archs"].split()), compute_capability=_cc(got["compute_capability"])
                 if got["compute_capability"] else "", cuda_runtime=_cuda(got["cuda_runtime"]) if got["cuda_runtime"]
                 else "")


def looks_like_paste(text: str) -> bool:
    """Whether the text shows anything `read_paste` can use."""
    return bool(read_paste(text).given())
