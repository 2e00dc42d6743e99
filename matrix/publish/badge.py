"""A cell's verdict as a badge for issue trackers: a shields.io endpoint JSON and the same badge pre-rendered as SVG.

The SVG follows shields.io's flat style, so both look alike, but needs no third-party service: it is a file of the
site. Text widths are measured with matplotlib's bundled DejaVu Sans at 11 px (metrics close to Verdana's, which
shields uses), and each text carries `textLength`, so the badge keeps its layout whatever font the viewer has.
"""

from __future__ import annotations

import json
from functools import lru_cache

from markupsafe import escape

LABEL = "bnb-matrix"
FONT_PX = 11
PAD = 6  # px each side of a text, as shields.io
# verdict -> (message, shields.io colour name, that colour's hex)
VERDICTS = {"works": ("works", "brightgreen", "#4c1"), "works-with-fix": ("works with a fix", "yellow", "#dfb317"),
            "fails": ("fails", "red", "#e05d44"),
            "not-installable": ("cannot be installed together", "orange", "#fe7d37"),
            "not-available": ("no installable release", "lightgrey", "#9f9f9f"),
            "not-measured": ("not measured", "lightgrey", "#9f9f9f")}

_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {msg}">\
<title>{label}: {msg}</title>\
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>\
<stop offset="1" stop-opacity=".1"/></linearGradient>\
<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>\
<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" \
fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>\
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="{px}">\
<text x="{lx}" y="15" fill="#010101" fill-opacity=".3" textLength="{ltw}">{label}</text>\
<text x="{lx}" y="14" textLength="{ltw}">{label}</text>\
<text x="{mx}" y="15" fill="#010101" fill-opacity=".3" textLength="{mtw}">{msg}</text>\
<text x="{mx}" y="14" textLength="{mtw}">{msg}</text></g></svg>
"""


@lru_cache(maxsize=256)
def text_width(text: str, px: int = FONT_PX) -> float:
    """Advance width in px of `text` set in DejaVu Sans at `px` pixels (kerning included), from the font's metrics."""
    from matplotlib import font_manager, ft2font

    font = ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans")))
    font.set_size(px, 72)  # 72 dpi: one point is one pixel
    font.set_text(text, 0.0)
    return font.get_width_height()[0] / 64  # 26.6 fixed point


def svg(message: str, color: str, label: str = LABEL) -> bytes:
    """The badge as SVG: `label` on grey, `message` on `color` (a CSS colour); text is escaped."""
    ltw, mtw = round(text_width(label), 1), round(text_width(message), 1)
    lw, mw = round(ltw + 2 * PAD), round(mtw + 2 * PAD)
    return _SVG.format(w=lw + mw, lw=lw, mw=mw, lx=lw / 2, mx=lw + mw / 2, ltw=ltw, mtw=mtw, px=FONT_PX,
                       color=escape(color), label=escape(label), msg=escape(message)).encode()


def endpoint(message: str, color: str, label: str = LABEL) -> bytes:
    """The shields.io endpoint JSON (schemaVersion 1): https://img.shields.io/endpoint?url=<this file's URL>."""
    return (json.dumps({"schemaVersion": 1, "label": label, "message": message, "color": color}, sort_keys=True)
            + "\n").encode()


def message(verdict: str) -> str:
    """The badge's words for a verdict."""
    return VERDICTS.get(verdict, VERDICTS["not-measured"])[0]


def files(verdict: str) -> dict[str, bytes]:
    """badge.svg and badge.json of a cell with this verdict."""
    message, name, hex_color = VERDICTS.get(verdict, VERDICTS["not-measured"])
    return {"badge.svg": svg(message, hex_color), "badge.json": endpoint(message, name)}
