"""Pages written as HTML by us, outside mkdocs, in Material's own frame.

mkdocs builds one stand-in page per kind (`SHELL_PAGE`: a title marker, one heading marker, a body marker) at the
same folder depth as the pages it stands for, so every relative link of its frame (theme assets, nav tabs, search,
palette) is right for them too. `Shell.read()` cuts that built page into the frame before and after the article
body and the table-of-contents item markup; `Shell.page()` fills in a page's title, table of contents and body.
The stand-in is excluded from search and removed from the built site; the pages are added to the sitemap.
Cost per page: two string joins, instead of Markdown, Material's template and the search plugin (about 20 ms).
"""

from __future__ import annotations

import gzip
import html
import re
from dataclasses import dataclass
from pathlib import Path

TITLE, HEADING, BODY = "ShellTitleMarker", "ShellHeadingMarker", "ShellBodyMarker"
CELL_SHELL = "cells/_shell/torch-x/bnb-x/transformers-x/"  # '_' never occurs in a slug (urls.slug): no clash
SHELL_PAGE = f"""---
title: {TITLE}
hide:
  - navigation
search:
  exclude: true
---

# {TITLE}

## {HEADING}

{BODY}
"""
_BLANKS = re.compile(r"\n\s*\n")  # the theme's whitespace-only lines: about half of a page's frame
_INDENT = re.compile(r"\n[ \t]+")


@dataclass(frozen=True)
class Shell:
    """Material's frame of the stand-in page at `path`: head (up to the article body), tail, and the markup of one
    table-of-contents item."""

    path: str
    head: str
    tail: str
    toc_item: str
    toc_list: tuple[str, str]  # the toc <ul ...> opening and its closing, around the items

    @classmethod
    def read(cls, text: str, path: str = CELL_SHELL) -> Shell:
        """Cut the built stand-in page (the HTML of `path`index.html) into its frame (whitespace-only lines
        dropped)."""
        slug = HEADING.lower()
        item = re.search(r'<li class="md-nav__item">\s*<a href="#' + slug + r'".*?</li>', text, re.S)
        h1 = re.search(r"<h1[^>]*>" + TITLE + r".*?</h1>", text, re.S)
        body = text.find(f"<p>{BODY}</p>")
        if not (item and h1 and body > 0):
            raise ValueError(f"{path}index.html: the theme's page no longer has the markers this module cuts at")
        toc_open = text.rfind("<ul", 0, item.start())
        toc_close = text.find("</ul>", item.end())
        head = text[:toc_open] + "\0TOC\0" + text[toc_close + len("</ul>"):h1.start()]
        tail = text[body + len(f"<p>{BODY}</p>"):]
        toc_list = (text[toc_open:text.find(">", toc_open) + 1], "</ul>")
        return cls(path, _squeeze(head), _squeeze(tail), _squeeze(item.group(0)), toc_list)

    def page(self, path: str, title: str, toc: list[tuple[str, str]], body: str) -> bytes:
        """The whole HTML page at site path `path`: `title` (plain text), `toc` [(anchor id, text)], `body` (HTML,
        from the <h1> on). The stand-in's path in canonical links becomes `path`."""
        items = "".join(self.toc_item.replace(f'href="#{HEADING.lower()}"', f'href="#{anchor}"')
                        .replace(HEADING, html.escape(text)) for anchor, text in toc)
        head = self.head.replace("\0TOC\0", self.toc_list[0] + items + self.toc_list[1] if toc else "")
        head = head.replace(TITLE, html.escape(title)).replace(self.path, path)
        return (head + body + self.tail.replace(self.path, path)).encode("utf-8")


def _squeeze(text: str) -> str:
    """Whitespace-only lines and indentation removed (the frame has no <pre>): same rendering, smaller files."""
    return _INDENT.sub("\n", _BLANKS.sub("\n", text))


def heading_id(text: str) -> str:
    """The anchor id Python-Markdown's toc extension gives a heading (lower case, punctuation dropped)."""
    value = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def remove_shell(site: Path, path: str = CELL_SHELL) -> None:
    """Remove the stand-in page (and its folders, when empty) from the built site."""
    page = site / path / "index.html"
    page.unlink(missing_ok=True)
    folder = page.parent
    while folder != site and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def add_to_sitemap(site: Path, site_url: str, paths: list[str]) -> None:
    """Add the directly written pages to mkdocs' sitemap.xml (and .gz), dropping the stand-in's entry."""
    sitemap = site / "sitemap.xml"
    if not sitemap.is_file():
        return
    text = re.sub(r"\s*<url>\s*<loc>[^<]*_shell/[^<]*</loc>.*?</url>", "", sitemap.read_text(encoding="utf-8"),
                  flags=re.S)
    urls = "".join(f"\n    <url>\n         <loc>{html.escape(site_url + p)}</loc>\n    </url>" for p in paths)
    text = text.replace("</urlset>", urls.lstrip("\n") + "\n</urlset>" if urls else "</urlset>")
    sitemap.write_text(text, encoding="utf-8")
    (site / "sitemap.xml.gz").write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
