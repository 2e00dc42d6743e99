"""torch builds: the CUDA version and the GPU architectures each was built for.

PyPI's default builds (Linux x86_64 and aarch64, Windows; 2.3 on) are read from their wheels without downloading
500-900 MB: HTTP range requests read the wheel's zip directory, then only `torch/version.py` (`cuda = '13.0'`) and
`torch/lib/libtorch_python.so` (`torch_python.dll`), which holds the string `torch.cuda.get_arch_list()` returns
(`sm_75 sm_80 ... sm_120`, built from TORCH_CUDA_ARCH_LIST). Cached by wheel sha256 in `results/binaries/torch/`.
PyTorch's own index cannot be reached from here: its variants (cu118 ... cu130 per release line) and their arch
lists come from `data/torch_variants.toml`, each with its kind (build script, report, inference) and source;
`all_builds()` joins the two. A build in neither has an unknown arch list, never a guessed one.
"""

from __future__ import annotations

import io
import json
import re
import tomllib
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from packaging.version import Version

from matrix.predict.store import TORCH_CACHE

TORCH_JSON = "https://pypi.org/pypi/torch/json"
FIRST_TORCH = Version("2.3.0")
WHEEL_TAG = "cp312-cp312-"  # the default wheel of each release and platform, for one Python
PLATFORM_TAGS = {"x86_64.whl": "linux-x86_64", "aarch64.whl": "linux-aarch64", "win_amd64.whl": "windows-x86_64"}
ARCH_STRING = re.compile(rb"(?:sm_\d+[a-z]? ){2,}(?:sm_\d+[a-z]?|compute_\d+)(?: compute_\d+)*")
CUDA_LINE = re.compile(r"^cuda(?:: Optional\[str\])? = '([^']+)'", re.MULTILINE)
VERSION_LINE = re.compile(r"^__version__ = '([^']+)'", re.MULTILINE)


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP range requests (for `zipfile`)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url, self.pos, self.fetched = url, 0, 0
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as resp:
            self.size = int(resp.headers["Content-Length"])

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.pos)
        if count <= 0:
            return 0
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.pos}-{self.pos + count - 1}"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            data = resp.read()
        buffer[: len(data)] = data
        self.pos += len(data)
        self.fetched += len(data)
        return len(data)


def arch_list(library: bytes) -> list[str] | None:
    """The arch string compiled into libtorch_python.so (one distinct match), else None (unknown)."""
    found = {m.group(0).decode() for m in ARCH_STRING.finditer(library)}
    return found.pop().split() if len(found) == 1 else None


def read_torch_wheel(url: str) -> dict[str, Any]:
    """version, CUDA version and arch list of one torch wheel, reading only two members of it."""
    remote = RangeFile(url)
    with zipfile.ZipFile(io.BufferedReader(remote, buffer_size=1 << 16)) as zf:
        names = zf.namelist()
        version_py = zf.read("torch/version.py").decode()
        cuda = CUDA_LINE.search(version_py)
        python_lib = next((n for n in names if n.endswith(("torch/lib/libtorch_python.so",
                                                            "torch/lib/torch_python.dll"))), None)
        archs = arch_list(zf.read(python_lib)) if python_lib and cuda else None  # a CPU build has none
    version = VERSION_LINE.search(version_py)
    return {"version": version.group(1) if version else None, "cuda": cuda.group(1) if cuda else None,
            "archs": archs, "fetched_bytes": remote.fetched,
            "source": "torch/version.py and the arch string in torch/lib/libtorch_python.so (torch_python.dll)"}


def list_torch_wheels(index: dict[str, Any]) -> list[dict[str, Any]]:
    """The default wheel (cp312) of every torch release from FIRST_TORCH on and every platform of
    PLATFORM_TAGS, from PyPI's JSON."""
    wheels = []
    for release, files in index.get("releases", {}).items():
        try:
            if Version(release) < FIRST_TORCH or Version(release).is_prerelease:
                continue
        except ValueError:
            continue
        for suffix, platform in PLATFORM_TAGS.items():
            picks = sorted((f for f in files if WHEEL_TAG in f["filename"] and f["filename"].endswith(suffix)
                            and not f.get("yanked")), key=lambda f: f["filename"])
            if picks:  # a re-uploaded build (torch-2.10.0-3-...) sorts after the first: take the newest upload
                f = picks[-1]
                wheels.append({"release": release, "platform": platform, "filename": f["filename"],
                               "sha256": f["digests"]["sha256"], "url": urllib.parse.urljoin(TORCH_JSON, f["url"]),
                               "size": f["size"]})
    return sorted(wheels, key=lambda w: (Version(w["release"]), w["platform"]))


def refresh(cache_dir: Path = TORCH_CACHE, index: dict[str, Any] | None = None, log: Any = print) -> int:
    """Read every torch wheel not yet cached; returns how many were read."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    if index is None:
        with urllib.request.urlopen(TORCH_JSON, timeout=120) as resp:
            index = json.load(resp)
    read = 0
    for wheel in list_torch_wheels(index):
        target = cache_dir / f"{wheel['sha256']}.json"
        if target.exists():
            continue
        try:
            facts = read_torch_wheel(wheel["url"])
        except Exception as exc:  # noqa: BLE001 - recorded as unknown, the refresh goes on
            facts = {"version": None, "cuda": None, "archs": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
        record = {"schema": 1, **{k: wheel[k] for k in ("release", "platform", "filename", "sha256", "size")},
                  **facts}
        target.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        read += 1
        log(f"{wheel['filename']}: torch {facts.get('version')}, CUDA {facts.get('cuda')}, {facts.get('archs')}")
    return read


def load_builds(cache_dir: Path = TORCH_CACHE) -> list[dict[str, Any]]:
    """Every cached torch build reading, by release (records before platforms were read are Linux x86_64)."""
    records = [{"platform": "linux-x86_64", **json.loads(p.read_text())} for p in sorted(cache_dir.glob("*.json"))]
    return sorted(records, key=lambda r: (Version(r["release"]), r["platform"]))


VARIANTS_TOML = Path(__file__).with_name("data") / "torch_variants.toml"


def load_variants(path: Path = VARIANTS_TOML) -> list[dict[str, Any]]:
    """The PyTorch-index variants of `data/torch_variants.toml`, one entry per (series, CUDA, platform), with the
    source text resolved."""
    table = tomllib.loads(path.read_text())
    sources = table.get("sources", {})
    out = []
    for number, entry in enumerate(table.get("variant", []), 1):
        if not {"series", "cuda", "platform", "archs", "kind", "source"} <= entry.keys():
            raise ValueError(f"{path}: variant {number} needs series, cuda, platform, archs, kind and source")
        for series in entry["series"]:
            key = entry["source"].replace("{series}", series.replace(".", "_"))
            name = key.split(" ")[0]
            text = sources.get(name, name) + key[len(name):]
            out.append({"series": series, "cuda": entry["cuda"], "platform": entry["platform"],
                        "archs": entry["archs"].split(), "kind": entry["kind"], "source": text})
    return out


def series_of(release: str) -> str:
    """"2.10.1" -> "2.10"."""
    return ".".join(release.split(".")[:2])


def all_builds(read: list[dict[str, Any]], axes_builds: dict[str, Any] | None = None,
               variants: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every CUDA torch build users install, per platform: PyPI's default of each release (read from its wheel; a
    CPU default is left out), each PyTorch-index variant of that release's line (`data/torch_variants.toml`), and
    the axes' builds. A variant with the CUDA version of the PyPI default is that same build: it is listed once,
    under the PyPI name, unless the axes name it (then it is listed under both names with the read facts)."""
    variants = load_variants() if variants is None else variants
    builds: dict[tuple[str, str], dict[str, Any]] = {}
    defaults: dict[tuple[str, str], dict[str, Any]] = {}
    for r in read:
        release, platform = r["release"], r.get("platform", "linux-x86_64")
        if r.get("error") or not r.get("cuda"):
            continue
        build = {"build": release, "release": release, "platform": platform, "cuda": r["cuda"],
                 "archs": r.get("archs"), "index": "pypi", "archs_kind": "read" if r.get("archs") else "unknown",
                 "archs_source": f"read from PyPI's {r['filename']} ({r.get('version')})"}
        builds[(release, platform)] = defaults[(release, platform)] = build
    releases = sorted({r["release"] for r in read}, key=Version)
    for v in variants:
        for release in (x for x in releases if series_of(x) == v["series"]):
            default = defaults.get((release, v["platform"]))
            if default and default["cuda"] == v["cuda"]:
                continue  # the PyPI default is this build, read from its wheel
            name = f"{release}+cu{v['cuda'].replace('.', '')}"
            builds[(name, v["platform"])] = {
                "build": name, "release": release, "platform": v["platform"], "cuda": v["cuda"], "archs": v["archs"],
                "index": "pytorch", "archs_kind": v["kind"], "archs_source": v["source"]}
    for name, spec in (axes_builds or {}).items():
        variant = spec.get("variant", "") if isinstance(spec, dict) else getattr(spec, "variant", "")
        release = name.split("+")[0]
        if not variant.startswith("cu") or (name, "linux-x86_64") in builds:
            continue
        cuda = f"{variant[2:-1]}.{variant[-1]}"
        twin = defaults.get((release, "linux-x86_64"))
        if twin and twin["cuda"] == cuda:
            builds[(name, "linux-x86_64")] = {**twin, "build": name, "index": "pytorch",
                                              "archs_source": f"the same build as PyPI's {release}: "
                                                              + twin["archs_source"]}
        else:
            builds[(name, "linux-x86_64")] = {
                "build": name, "release": release, "platform": "linux-x86_64", "cuda": cuda, "archs": None,
                "index": "pytorch", "archs_kind": "unknown",
                "archs_source": "an axes build whose arch list is neither read nor in data/torch_variants.toml"}
    return sorted(builds.values(), key=lambda b: (b["platform"], Version(b["release"]), b["build"]))
