"""Non-blocking check: do the same generated docs also build with Zensical, mkdocs-material's successor?

mkdocs-material is in maintenance mode (end of life 2026-11-05) and MkDocs 2 drops plugins and themes, so we keep
the engine swappable. This script generates the docs once (matrix.publish.sitebuild), builds them with mkdocs and with
`zensical build` from the same generated mkdocs.yml, and lists what the Zensical build drops: pages and files
mkdocs writes that it does not, and features of ours it ignores (the offline search index, the vendored
iframe-worker shim, the feed link of our theme override, no third-party requests). It never fails: a missing or
failing zensical is reported and the exit status is 0, so CI may run it without being blocked.

    .venv/bin/pip install zensical   # optional; without it this prints "skipped"
    .venv/bin/python scripts/zensical_check.py [--results results/]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
THEME_FILES = re.compile(r"^(assets/(javascripts|stylesheets)/|search[/.]|sitemap\.xml)")


def zensical_command() -> list[str] | None:
    """How to run zensical here: the binary next to this interpreter, on PATH, or None."""
    local = Path(sys.executable).with_name("zensical")
    found = str(local) if local.exists() else shutil.which("zensical")
    return [found] if found else None


def site_files(out: Path) -> set[str]:
    """The files of a built site, minus the theme's own assets (their names differ per engine by design)."""
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
            and not THEME_FILES.match(p.relative_to(out).as_posix())}


def feature_checks(out: Path) -> dict[str, bool]:
    """Our features, as a built site shows them."""
    home = (out / "index.html").read_text(encoding="utf-8") if (out / "index.html").exists() else ""
    loads = re.findall(r'\ssrc="([^"]*)"', home)
    loads += re.findall(r'<link\b(?![^>]*rel="canonical")[^>]*href="([^"]*)"', home)
    return {"offline search index (search/search_index.js)": (out / "search" / "search_index.js").exists(),
            "vendored iframe-worker shim (extra.polyfills)": "iframe-worker/shim.js" in home,
            "Atom feed <link rel=alternate> (site/overrides)": 'type="application/atom+xml"' in home,
            "no third-party request from the home page": not any(re.match(r"https?:|//", u) for u in loads),
            "sortable tables (tablesort, extra_javascript)": "tablesort.min.js" in home}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    command = zensical_command()
    if command is None:
        print("zensical: not installed here (pip install zensical); check skipped")
        return 0
    from matrix.publish.sitebuild import build_site

    with tempfile.TemporaryDirectory(prefix="bnb-zensical-") as tmp:
        work = Path(tmp) / "work"
        build_site(args.results, Path(tmp) / "mkdocs-site", work_dir=work, quiet=True)
        done = subprocess.run([*command, "build", "-f", str(work / "mkdocs.yml")], cwd=work, capture_output=True,
                              text=True, timeout=600, check=False)
        print(f"zensical build: exit {done.returncode}")
        for line in (done.stdout + done.stderr).splitlines():
            if line.strip():
                print(f"  | {line}")
        zensical_out = work / "public"  # site_dir of mkdocs.yml, relative to the generated config
        if done.returncode != 0 or not zensical_out.is_dir():
            print("zensical: the build failed; nothing to compare (not blocking)")
            return 0
        mkdocs_files, zensical_files = site_files(Path(tmp) / "mkdocs-site"), site_files(zensical_out)
        dropped = sorted(mkdocs_files - zensical_files)
        print(f"files: mkdocs {len(mkdocs_files)}, zensical {len(zensical_files)}; dropped by zensical: {len(dropped)}")
        for name in dropped:
            print(f"  - {name}")
        for name in sorted(zensical_files - mkdocs_files):
            print(f"  + {name} (zensical only)")
        ours, theirs = feature_checks(Path(tmp) / "mkdocs-site"), feature_checks(zensical_out)
        for feature, kept in theirs.items():
            state = "kept" if kept else ("DROPPED" if ours[feature] else "absent in both")
            print(f"  {state:<15} {feature}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - a check that must never block CI says what broke and exits 0
        print(f"zensical check: could not run ({type(exc).__name__}: {exc}); not blocking")
        sys.exit(0)
