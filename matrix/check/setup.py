"""A user's setup: the small frozen dataclass `check` answers for, read from flags or a paste.

Every field is text as the user gave it (or as a paste showed it); empty means "not given". `assumed` lists what
the reader filled in or guessed, in words, so the answer can say it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from matrix.errors import UserError

OSES = ("linux", "windows")
MACHINES = ("x86_64", "aarch64")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}([a-z0-9.+-]*)$", re.I)


@dataclass(frozen=True)
class Setup:
    """What the user has. `gpu` is a name (T4, RTX 5090) or an arch (sm_86); `torch` any build string."""

    gpu: str = ""
    torch: str = ""
    bnb: str = ""
    transformers: str = ""
    os: str = ""
    machine: str = ""
    glibc: str = ""
    driver: str = ""
    env: tuple[tuple[str, str], ...] = ()
    torch_cuda: str = ""  # from a paste: torch.version.cuda
    torch_archs: tuple[str, ...] = ()  # from a doctor paste: torch.cuda.get_arch_list()
    compute_capability: str = ""  # from a paste: "8.6"
    cuda_runtime: str = ""  # the CUDA runtime on the system (what bitsandbytes 0.39-0.40 pick their library by)
    assumed: tuple[str, ...] = field(default=(), compare=False)

    def env_value(self, name: str) -> str:
        return next((v for k, v in self.env if k == name), "")

    def given(self) -> dict[str, Any]:
        """The fields that were given, for JSON and the page's link."""
        out: dict[str, Any] = {}
        for key in ("gpu", "torch", "bnb", "transformers", "os", "machine", "glibc", "driver", "torch_cuda",
                    "compute_capability", "cuda_runtime"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.env:
            out["env"] = dict(self.env)
        if self.torch_archs:
            out["torch_archs"] = list(self.torch_archs)
        return out

    def with_assumption(self, text: str) -> Setup:
        return replace(self, assumed=(*self.assumed, text))


def arch_of(text: str) -> str | None:
    """`sm_86`, `sm86`, `compute_120`, `8.6`, `12.0` -> `sm_86` / `sm_120`; None for anything else (a GPU name)."""
    text = text.strip().lower()
    match = re.fullmatch(r"(?:sm|compute)_?(\d{2,3})[a-z]?", text)
    if match:
        return f"sm_{int(match.group(1))}"
    match = re.fullmatch(r"\(?(\d{1,2})\s*[.,]\s*(\d)\)?", text)
    return f"sm_{match.group(1)}{match.group(2)}" if match else None


def parse_env(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`--env NAME=VALUE` items as pairs; a malformed one is a UserError saying how to write it."""
    out = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UserError(f"--env {item}", "not NAME=VALUE", "write it like --env BNB_CUDA_VERSION=124")
        out.append((name, value))
    return tuple(out)


def _version(flag: str, value: str) -> str:
    value = value.strip()
    if value and not _VERSION.match(value):
        raise UserError(f"--{flag} {value}", "not a version", f"write it like --{flag} 0.45.5 or 2.6.0+cu124")
    return value


def from_flags(gpu: str = "", torch: str = "", bnb: str = "", transformers: str = "", os: str = "",
               machine: str = "", glibc: str = "", driver: str = "", env: list[str] | None = None,
               cuda_runtime: str = "") -> Setup:
    """A Setup from command-line flags, checked: a bad value is a UserError with the mending hint."""
    os_, machine_ = os.strip().lower(), machine.strip().lower()
    if os_ and os_ not in OSES:
        raise UserError(f"--os {os}", "unknown OS", "use linux or windows (WSL is linux)")
    machine_ = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(machine_, machine_)
    if machine_ and machine_ not in MACHINES:
        raise UserError(f"--machine {machine}", "unknown machine", "use x86_64 or aarch64")
    for flag, value in (("glibc", glibc), ("driver", driver), ("cuda-runtime", cuda_runtime)):
        if value and not re.fullmatch(r"\d+(\.\d+){0,3}", value.strip()):
            raise UserError(f"--{flag} {value}", "not a version", f"write it like --{flag} " +
                            {"glibc": "2.31", "driver": "550.54.15"}.get(flag, "12.2"))
    if torch.strip() and not re.match(r"^\d+\.\d+", torch.strip()):
        raise UserError(f"--torch {torch}", "not a torch version", "write it like --torch 2.6.0 or 2.6.0+cu124")
    return Setup(gpu=gpu.strip(), torch=torch.strip(), bnb=_version("bnb", bnb),
                 transformers=_version("transformers", transformers), os=os_, machine=machine_,
                 glibc=glibc.strip(), driver=driver.strip(), env=parse_env(env), cuda_runtime=cuda_runtime.strip())


def merge(base: Setup, over: Setup) -> Setup:
    """`over`'s given fields on top of `base` (flags on top of a paste)."""
    keys = ("gpu", "torch", "bnb", "transformers", "os", "machine", "glibc", "driver", "torch_cuda", "torch_archs",
            "compute_capability", "cuda_runtime")
    changes = {k: getattr(over, k) for k in keys
               if getattr(over, k)}
    env = dict(base.env) | dict(over.env)
    return replace(base, **changes, env=tuple(env.items()), assumed=base.assumed + over.assumed)
