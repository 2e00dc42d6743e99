"""bnb-matrix doctor: print what decides whether 4-bit loading with bitsandbytes works here.

One file, standard library only, for the Python you load models with (bnb-matrix need not be installed):

    curl -O https://bnb-matrix.github.io/bnb-matrix/doctor.py && python doctor.py

It imports nothing it cannot find and never fails on a missing piece: each line it cannot learn is left out.
Paste the block it prints into the site's "Check my setup" page, or into `python -m matrix check`.
It reads versions and the GPU; it does not load a model, run a kernel or touch the network.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys

BEGIN, END = "--- bnb-matrix doctor 1 ---", "--- end ---"
ENV_NAMES = ("BNB_CUDA_VERSION", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")


def _version(package: str) -> str:
    try:
        from importlib import metadata

        return metadata.version(package)
    except Exception:  # noqa: BLE001 - not installed, or broken metadata: leave the line out
        return ""


def _torch_facts() -> dict[str, str]:
    """torch's build, CUDA version, arch list and the first GPU, if torch imports."""
    out: dict[str, str] = {}
    try:
        import torch  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - report, go on
        out["torch_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return out
    out["torch"] = str(torch.__version__)
    out["torch_cuda"] = str(getattr(torch.version, "cuda", "") or "")
    try:
        out["torch_archs"] = " ".join(torch.cuda.get_arch_list())
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            out["gpu"] = torch.cuda.get_device_name(0)
            out["compute_capability"] = f"{major}.{minor}"
            out["gpu_count"] = str(torch.cuda.device_count())
        else:
            out["cuda_available"] = "no"
    except Exception as exc:  # noqa: BLE001
        out["cuda_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def _nvidia_smi() -> dict[str, str]:
    tool = shutil.which("nvidia-smi")
    if not tool:
        return {}
    try:
        text = subprocess.run([tool, "--query-gpu=name,driver_version", "--format=csv,noheader"], check=False,
                              capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    first = text.strip().splitlines()[0] if text.strip() else ""
    name, _, driver = first.partition(",")
    return {"smi_gpu": name.strip(), "driver": driver.strip()} if driver else {}


def _glibc() -> str:
    lib, version = platform.libc_ver()
    return version if lib == "glibc" else ""


def facts() -> dict[str, str]:
    """Every line of the block, in order; values empty where unknown (they are left out when printed)."""
    out = {"os": "windows" if sys.platform.startswith("win") else "linux" if sys.platform.startswith("linux")
           else sys.platform, "machine": platform.machine().lower().replace("amd64", "x86_64").replace("arm64",
                                                                                                      "aarch64"),
           "glibc": _glibc(), "python": platform.python_version()}
    if os.path.exists("/etc/nv_tegra_release"):
        out["jetson"] = "yes (L4T)"
    smi = _nvidia_smi()
    torch = _torch_facts()
    out["gpu"] = torch.pop("gpu", "") or smi.get("smi_gpu", "")
    out.update(torch)
    out["driver"] = smi.get("driver", "")
    for package, key in (("bitsandbytes", "bitsandbytes"), ("transformers", "transformers"),
                         ("accelerate", "accelerate")):
        out[key] = _version(package)
    env = " ".join(f"{n}={os.environ[n]}" for n in ENV_NAMES[:1] if os.environ.get(n))
    out["env"] = env
    return out


def render(values: dict[str, str]) -> str:
    lines = [BEGIN] + ["%s: %s" % (k, re.sub(r"[\r\n]+", " ", v)) for k, v in values.items() if v] + [END]
    return "\n".join(lines)


def main() -> int:
    print(render(facts()))
    print("Paste the block above into https://bnb-matrix.github.io/bnb-matrix/check/ "
          "(or: python -m matrix check < this output).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
