"""Rendering: the pages of `matrix.publish.pages` -> Markdown, charts and data files in a generated docs dir for mkdocs.

Every page comes from one Jinja template under site/templates/ (autoescape on) and one context function in
`pages`; the numbers come from `findings`. This module holds the Jinja environment, its filters and
links, and the writing. Untrusted text (error messages, stderr) only reaches a page through `pre()`, which strips
ANSI escapes, caps the length and html-escapes it inside a raw `<pre><code>` block, so Markdown fences, `{{ }}`
and `<script>` in it stay inert. Record-derived words in tables go through `md()` (html-escaped, Markdown
specials as entities). Files are written only when their content changed; stale generated files are removed.
"""

from __future__ import annotations

import html
import json
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from markupsafe import Markup

from matrix import urls
from matrix.publish import charts, direct, exports, findings, pages
from matrix.diagnose import signatures
from matrix.publish.aggregate import Aggregate
from matrix.publish.pages import num, plural

SITE_DIR = Path(__file__).resolve().parents[2] / "site"
TEXT_LIMIT = 4000
LIST_LIMIT = 100  # rows of a long table on a narrative page (fix, error, runner); all are in the data exports
VERBATIM_LIMIT = 20  # failures quoted in full on an error page
VERDICT_LABELS = {"works": "works", "works-with-fix": "works with a fix", "fails": "fails",
                  "not-installable": "cannot be installed together", "not-available": "no installable release",
                  "not-measured": "not measured"}
VERDICT_SYMBOLS = {"works": "✓", "works-with-fix": "fix", "fails": "✗", "not-installable": "⊘", "not-available": "∅",
                   "not-measured": "–"}

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LOCAL_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|/|#)([^)\s]+)")  # a Markdown link to a relative path
_INLINE = {c: f"&#{ord(c)};" for c in "\\`*_{}[]()#!|~<>&\"'"}


# ---------------------------------------------------------------------------------------------------- filters
def clean(text: Any, limit: int = TEXT_LIMIT, keep: str = "head") -> str:
    """Untrusted text made readable: ANSI escapes and control characters removed, at most `limit` characters
    (keeping the head or the tail) with a note saying how much was cut."""
    text = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    text = _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep == "tail":
        return f"[... {cut} characters cut ...]\n" + text[-limit:]
    return text[:limit] + f"\n[... {cut} characters cut ...]"


def pre(text: Any, limit: int = TEXT_LIMIT, keep: str = "head") -> Markup:
    """Untrusted text as an inert raw-HTML code block, all on one Markdown line (newlines as entities) so no
    Markdown or template syntax inside it is ever interpreted."""
    body = html.escape(clean(text, limit, keep), quote=True).replace("\n", "&#10;")
    return Markup(f'<pre class="untrusted"><code>{body}</code></pre>')


def md(text: Any, limit: int = 300) -> Markup:
    """A word or phrase from a record, safe inline in Markdown (tables, headings, link text)."""
    return Markup("".join(_INLINE.get(c, c) for c in clean(text, limit).replace("\n", " ")))


_LOOKALIKE = {"&#60;": "\u2039", "&#62;": "\u203a", "&#38;": "\uff06"}  # < > & as ‹ › ＆


def heading(text: Any) -> Markup:
    """A word or phrase from a record in a heading: `md()`, and `<`, `>`, `&` as look-alike characters. mkdocs makes
    the page's <title> and the table of contents from headings with entities unescaped, so no escaping survives
    there; records are validated before this (records.check_fields), this is the second line."""
    out = str(text if isinstance(text, Markup) else md(text))
    for entity, lookalike in _LOOKALIKE.items():
        out = out.replace(entity, lookalike)
    return Markup(out)


def fence(text: str, lang: str = "") -> Markup:
    """A fenced code block longer than any backtick run in `text`, so the text cannot close it early."""
    runs = [len(m) for m in re.findall(r"`+", text)] or [0]
    ticks = "`" * max(3, max(runs) + 1)
    return Markup(f"{ticks}{lang}\n{text.rstrip()}\n{ticks}")


def sci(value: Any) -> str:
    """A small number (relative error) in 2-significant-digit scientific-ish form."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if pd.isna(number) else f"{number:.2g}"


def placement(value: Any) -> str:
    """The checks.placement JSON ({"cuda:0": 14, "cpu": 1}) as 'cuda:0 14, cpu 1'."""
    if not isinstance(value, str) or not value.startswith("{"):
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    try:
        # accelerate keeps offloaded modules on the meta device and streams their weights in at forward time
        return ", ".join(f"{'offloaded (meta)' if k == 'meta' else k} {v}" for k, v in json.loads(value).items())
    except json.JSONDecodeError:
        return value


# ----------------------------------------------------------------------------------------------- page helpers
def _dir(path: str) -> str:
    return path.rstrip("/") or "."


def rel_url(here: str, target: str) -> str:
    """Relative URL from the page at site path `here` to site path `target`. A folder target ('cells/x/') links to
    its index.html, as mkdocs writes links without directory URLs, so the site also works opened from disk."""
    if target.endswith("/") or target == "":
        return rel_file(here, target).removesuffix(".md") + ".html"
    return posixpath.relpath(target, _dir(here))


def rel_file(here: str, target: str) -> str:
    """Relative Markdown file link (mkdocs checks these in --strict) from page `here` to site path `target`."""
    source = target + "index.md" if target.endswith("/") or target == "" else target
    return posixpath.relpath(source, _dir(here))


def is_cell_page(target: str) -> bool:
    """A cell page: written as HTML outside mkdocs (matrix/publish/cellsite.py), so not a Markdown file."""
    return target.startswith("cells/") and target != "cells/"


@pass_context
def _link(ctx: Any, target: str, text: Any) -> Markup:
    if is_cell_page(target):  # raw HTML: mkdocs --strict would look for a cells/.../index.md that is not there
        return Markup(f'<a href="{html.escape(rel_url(ctx["here"], target))}">{md(text)}</a>')
    return Markup(f"[{md(text)}]({rel_file(ctx['here'], target)})")


@pass_context
def _url(ctx: Any, target: str) -> str:
    return rel_url(ctx["here"], target)


def environment(site_dir: Path = SITE_DIR) -> Environment:
    """The Jinja environment: templates from site/templates, autoescape on, strict undefined."""
    env = Environment(loader=FileSystemLoader(str(site_dir / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(pre=pre, md=md, clean=clean, heading=heading, fence=fence, num=num, sci=sci, placement=placement)
    env.tests["safe_url"] = lambda text: bool(re.fullmatch(r"https?://[^\s()<>\[\]\"'`]+", str(text)))
    env.globals.update(LIST_LIMIT=LIST_LIMIT, VERBATIM_LIMIT=VERBATIM_LIMIT)
    env.globals.update(link=_link, url=_url, plural=plural, VERDICT_LABELS=VERDICT_LABELS,
                       VERDICT_SYMBOLS=VERDICT_SYMBOLS, cell_path=urls.cell_path, error_path=urls.error_path,
                       fix_path=urls.fix_path, runner_path=urls.runner_path,
                       gpu_path=urls.gpu_path)
    return env


@dataclass
class WriteReport:
    """What render_site did to the docs dir."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)


class Site:
    """Every output file of the site: hand-written pages and assets, data exports, and each page of PAGES."""

    def __init__(self, agg: Aggregate, axes: Any = None, catalogue: dict[str, Any] | None = None,
                 site_dir: Path = SITE_DIR) -> None:
        self.site_dir = site_dir
        intro_path = site_dir / "index.md"
        intro = intro_path.read_text(encoding="utf-8") if intro_path.exists() else "# bnb-matrix\n"
        self.data = pages.SiteData.of(agg, axes, catalogue or {}, intro)
        self.env = environment(site_dir)
        fix_pages = set(self.data.recipes) | set(agg.latest["recipe"])
        # Link only to pages that exist, whatever the catalogue or records name.
        self.env.globals.update(
            signatures=self.data.catalogue, known_error=lambda slug: findings.known(slug, self.data.catalogue),
            has_fix_page=lambda name: name in fix_pages)

    def files(self) -> dict[str, bytes]:
        """The docs dir mkdocs builds: every page but the cell pages (`cellsite.write_cells` writes those into the
        built site, in the frame of the stand-in page `direct.CELL_SHELL`), hand-written pages, assets, exports."""
        out = self.hand_written()
        out[direct.CELL_SHELL + "index.md"] = direct.SHELL_PAGE.encode("utf-8")
        # results.csv.gz and results.json.gz go straight into the built site (matrix/publish/incremental.py)
        exported = {"matrix.json": exports.matrix_json(self.data.agg), **findings.exports(self.data.found),
                    **self.data.gpu_exports()}
        out.update({f"data/{name}": data for name, data in exported.items()})
        charts.draw_all(self.data.chart_jobs())
        for kind in pages.PAGES:
            template = self.env.get_template(kind.template)
            for page in kind.pages(self.data):
                text = template.render(here=page.path, **page.context)
                out[(page.path + "index.md") if page.path.endswith("/") or not page.path else page.path] = \
                    text.encode("utf-8")
                out.update({page.path + name: data for name, data in page.files.items()})
        return dict(sorted(out.items()))

    def hand_written(self) -> dict[str, bytes]:
        """Hand-written pages (site/*.md but the home intro) and assets. A page x.md becomes x/index.md, so its
        permanent URL stays the folder x/ now that pages are files (x/index.html); its relative links move with it."""
        out = {f"{p.stem}/index.md": _LOCAL_LINK.sub(r"](../\1", p.read_text(encoding="utf-8")).encode("utf-8")
               for p in sorted(self.site_dir.glob("*.md")) if p.name != "index.md"}
        if (self.site_dir / "doctor.py").is_file():  # served as /doctor.py: `curl -O .../doctor.py && python doctor.py`
            out["doctor.py"] = (self.site_dir / "doctor.py").read_bytes()
        for path in sorted((self.site_dir / "assets").rglob("*")):
            if path.is_file():
                out[path.relative_to(self.site_dir).as_posix()] = path.read_bytes()
        return out


def write_tree(files: dict[str, bytes], docs_dir: Path) -> WriteReport:
    """Make `docs_dir` hold exactly `files`: write a file only when its bytes changed (so `mkdocs serve` does
    not loop), remove files no longer produced, and leave everything else untouched."""
    report = WriteReport()
    docs_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = docs_dir / name
        if target.is_file() and target.read_bytes() == data:
            report.unchanged += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        report.written.append(name)
    for path in sorted(docs_dir.rglob("*"), reverse=True):
        name = path.relative_to(docs_dir).as_posix()
        if path.is_file() and name not in files:
            path.unlink()
            report.removed.append(name)
        elif path.is_dir() and not any(path.iterdir()):
            shutil.rmtree(path)
    return report


def load_catalogue() -> dict[str, Any]:
    """The signature catalogue of matrix.diagnose.signatures."""
    return dict(signatures.load_catalogue())


def render_site(agg: Aggregate, docs_dir: Path, axes: Any = None, catalogue: dict[str, Any] | None = None,
                site_dir: Path = SITE_DIR) -> tuple[Site, WriteReport]:
    """Render every mkdocs page, chart and export of `agg` into `docs_dir` (see write_tree); returns the Site (its
    cell pages are written after mkdocs, `cellsite.write_cells`) and what was written. `axes`
    (matrix.measure.axes.Axes) gives recipe code and the declared versions; `catalogue` the error signatures
    (default: diagnose.signatures)."""
    if catalogue is None:
        catalogue = load_catalogue()
    site = Site(agg, axes, catalogue, site_dir)
    return site, write_tree(site.files(), Path(docs_dir))
