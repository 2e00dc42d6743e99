"""New releases show up by themselves: compare PyPI's torch, bitsandbytes and transformers releases with the axes.

    python -m matrix discover                     list what PyPI has that the axes lack (and yanked ones)
    python -m matrix discover --add cpu-wide      also add the newest of them to that profile in axes.toml

The scheduled workflow runs it before measuring, so a new bitsandbytes release becomes a column without a code
change. It writes a snapshot of what PyPI had (`results/releases.json`) that the site reads to say plainly which
newest releases are not measured yet: the site build itself never touches the network.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

from packaging.version import InvalidVersion, Version

from matrix.measure.axes import Axes
from matrix.errors import UserError

PACKAGES = ("torch", "bitsandbytes", "transformers")
PYPI_JSON = "https://pypi.org/pypi/{name}/json"
SNAPSHOT = "releases.json"


@dataclass(frozen=True)
class Release:
    """One release of a package on PyPI."""

    package: str
    version: str
    uploaded: str  # ISO date of its first file
    yanked: bool


DEADLINE_S = 120  # for all of discover's requests together
SIZE_LIMIT = 256 * 2**20  # bytes of one PyPI answer (torch's is about 10 MB)


def fetch_json(url: str, deadline: float | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """PyPI's JSON for a package, read before `deadline` (time.monotonic(); default: DEADLINE_S from now), or one
    clear line (UserError) saying what failed: the network, a slow, cut-short or oversized answer, or not JSON.
    `timeout`: seconds one socket operation may wait."""
    deadline = time.monotonic() + DEADLINE_S if deadline is None else deadline
    hint = "check the network, or run discover later"
    try:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no time left of discover's {DEADLINE_S} s")
        with urllib.request.urlopen(url, timeout=min(timeout, left)) as response:
            body = bytearray()
            while chunk := response.read1(1 << 16):  # what one receive brought: a trickle cannot outlast the deadline
                body += chunk
                if time.monotonic() > deadline:
                    raise TimeoutError("the answer was still arriving at discover's deadline")
                if len(body) > SIZE_LIMIT:
                    raise ValueError(f"the answer is over {SIZE_LIMIT // 2**20} MiB")
            if getattr(response, "length", None):  # the connection closed before the promised length arrived
                raise http.client.IncompleteRead(bytes(body), response.length)
        data = json.loads(bytes(body))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, IncompleteRead, JSON
        raise UserError(url, f"cannot read PyPI ({type(exc).__name__}: {str(exc)[:200]})", hint) from None
    if not isinstance(data, dict) or not isinstance(data.get("releases"), dict):
        raise UserError(url, "PyPI's answer has no 'releases' table", hint)
    return data


def final_releases(data: dict[str, Any]) -> Iterator[tuple[Version, str, list[dict[str, Any]]]]:
    """(version, its text, its files) for each final release in PyPI's JSON that has files (no pre-releases,
    no dev releases, no unparseable versions). Shared with `matrix.predict.wheels`."""
    for text, files in data.get("releases", {}).items():
        try:
            version = Version(text)
        except (InvalidVersion, TypeError):
            continue
        files = [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []
        if not (version.is_prerelease or version.is_devrelease) and files:
            yield version, text, files


def releases(package: str, data: dict[str, Any]) -> list[Release]:
    """Final releases (no pre-releases, at least one file) from PyPI's JSON, oldest first."""
    found = [Release(package, text, min(str(f.get("upload_time", ""))[:10] for f in files),
                     all(f.get("yanked") is True for f in files)) for _, text, files in final_releases(data)]
    return sorted(found, key=lambda r: Version(r.version))


def line_heads(found: list[Release]) -> list[Release]:
    """The last non-yanked patch of each minor line (0.45.5 for 0.45.x), oldest line first."""
    heads: dict[tuple[int, ...], Release] = {}
    for rel in found:
        if not rel.yanked:
            heads[Version(rel.version).release[:2]] = rel  # sorted input: the last one wins
    return [heads[k] for k in sorted(heads)]


def axes_versions(axes: Axes, package: str) -> set[str]:
    """Every version of `package` that some profile measures (torch builds by their version)."""
    if package == "torch":
        return {axes.torch_builds[t].version for p in axes.profiles.values() for t in p.torch}
    return {v for p in axes.profiles.values() for v in getattr(p, package) if v != "system"}


def missing(axes: Axes, package: str, found: list[Release]) -> list[Release]:
    """Line heads the axes lack: each line newer than the newest one measured, and a newer patch of a measured
    line (0.48.2 when the axes have 0.48.1). Older lines left out on purpose are not reported again."""
    have = {Version(v) for v in axes_versions(axes, package)}
    if not have:
        return line_heads(found)
    newest = max(have)
    lines = {v.release[:2]: max(w for w in have if w.release[:2] == v.release[:2]) for v in have}
    out = []
    for rel in line_heads(found):
        version = Version(rel.version)
        measured_line = lines.get(version.release[:2])
        if version > newest or (measured_line is not None and version > measured_line):
            out.append(rel)
    return out


def yanked_in_axes(axes: Axes, package: str, found: list[Release]) -> list[Release]:
    """Releases the axes measure that PyPI has since yanked."""
    have = axes_versions(axes, package)
    return [r for r in found if r.yanked and r.version in have]


def snapshot(axes: Axes, fetch: Callable[[str, float], dict[str, Any]] = fetch_json,
             deadline_s: float = DEADLINE_S) -> dict[str, Any]:
    """What PyPI has per package: newest release, line heads, what the axes lack, yanked ones they use. All
    requests share one deadline (`deadline_s`); any failure is one line per package in one UserError."""
    out: dict[str, Any] = {"fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "packages": {}}
    deadline = time.monotonic() + deadline_s
    failed = []
    for package in PACKAGES:
        url = PYPI_JSON.format(name=package)
        try:
            found = releases(package, fetch(url, deadline))
            if not found:
                raise UserError(url, "PyPI lists no final release", "try again later")
        except UserError as exc:
            failed.append(exc.line())
            continue
        out["packages"][package] = {
            "newest": found[-1].version,
            "line_heads": [asdict(r) for r in line_heads(found)],
            "not_in_axes": [asdict(r) for r in missing(axes, package, found)],
            "yanked_in_axes": [asdict(r) for r in yanked_in_axes(axes, package, found)],
        }
    if failed:
        raise UserError("discover", f"{len(failed)} of {len(PACKAGES)} package(s) not read; nothing written:\n  "
                        + "\n  ".join(failed))
    return out


def write_snapshot(data: dict[str, Any], results_dir: Path) -> Path:
    """Replace results/releases.json atomically (a snapshot, not a measurement: it is rewritten each time)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / SNAPSHOT
    tmp = target.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:  # a full disk names no file: say which
        raise UserError(str(target), f"cannot write the snapshot ({exc.strerror or exc})",
                        "free space there, or pass --results elsewhere") from None
    return target


def read_snapshot(results_dir: Path) -> dict[str, Any] | None:
    """The last snapshot, or None when discover never ran (or the file is unreadable: the site goes on)."""
    try:
        data = json.loads((results_dir / SNAPSHOT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("packages"), dict) else None


# ----------------------------------------------------------------------------------------------------------
# Adding releases to a profile: a text edit of axes.toml, so its comments and layout survive.

def torch_variant(version: str, uv: str) -> str:
    """The CUDA variant of PyPI's default Linux wheel of torch `version`, from what uv would install with it."""
    proc = subprocess.run([uv, "pip", "install", "--dry-run", "--no-config", "--python-platform",
                           "x86_64-manylinux_2_28", "--python-version", "3.11", f"torch=={version}"],
                          capture_output=True, text=True, timeout=300)
    match = re.search(r"nvidia-cuda-runtime(?:-cu\d+)?==(\d+)\.(\d+)", proc.stdout + proc.stderr)
    return f"cu{match.group(1)}{match.group(2)}" if match else "cpu"


def add_to_list(text: str, profile: str, key: str, value: str) -> str:
    """axes.toml text with `value` appended to `key = [...]` of `[profiles.<profile>]`."""
    section = re.search(rf"^\[profiles\.{re.escape(profile)}\]\n(?:(?!^\[).*\n?)*", text, re.M)
    if section is None:
        raise UserError(f"axes.toml: profiles.{profile}", "no such profile", "name a profile of the axes file")
    body = section.group(0)
    entry = re.search(rf"^{key} = \[(.*)\]$", body, re.M)
    if entry is None:
        raise UserError(f"axes.toml: profiles.{profile}.{key}", "not a one-line list", f'write it as {key} = ["a"]')
    items = entry.group(1).rstrip().rstrip(",")
    new_body = body.replace(entry.group(0), f'{key} = [{items}{", " if items else ""}"{value}"]', 1)
    return text[:section.start()] + new_body + text[section.end():]


def add_torch_build(text: str, version: str, variant: str) -> str:
    """axes.toml text with a `[torch_builds."<version>"]` table for PyPI's default wheel, before the recipes."""
    table = f'[torch_builds."{version}"]\nversion = "{version}"\nvariant = "{variant}"\npypi = true\n\n'
    anchor = text.find("[recipes.")
    anchor = text.rfind("\n# ---", 0, anchor) + 1 if anchor > 0 else len(text)
    return text[:anchor] + table + text[anchor:]


def add_missing(axes: Axes, data: dict[str, Any], profile: str, uv: str) -> list[str]:
    """Add every release the snapshot says the axes lack to `profile`; returns what was added."""
    text = axes.path.read_text(encoding="utf-8")
    axes.profile(profile)  # one clear line for an unknown profile
    added = []
    for package in PACKAGES:
        for rel in data["packages"][package]["not_in_axes"]:
            version = rel["version"]
            if package == "torch":
                if version not in axes.torch_builds:
                    text = add_torch_build(text, version, torch_variant(version, uv))
            text = add_to_list(text, profile, package, version)  # profile keys are the package names
            added.append(f"{package} {version}")
    axes.path.write_text(text, encoding="utf-8")
    return added


def report(data: dict[str, Any]) -> str:
    """The human summary discover prints."""
    lines = [f"PyPI as of {data['fetched']}:"]
    for package, info in data["packages"].items():
        lacking = ", ".join(r["version"] for r in info["not_in_axes"]) or "none"
        lines.append(f"  {package:<13} newest {info['newest']:<9} not in the axes yet: {lacking}")
        for rel in info["yanked_in_axes"]:
            lines.append(f"  {package:<13} {rel['version']} is measured but PyPI has yanked it")
    return "\n".join(lines)
