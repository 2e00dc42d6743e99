"""mkdocs hook used by `python -m matrix site --serve` (matrix.sitebuild.serve_site): regenerate the pages before
every rebuild, so edits to results, templates or hand-written pages show up live. Only changed files are written,
so the rebuild this triggers finds nothing new and `mkdocs serve` does not loop. After each build the cell pages
and the record exports, which mkdocs does not build, are written into the served site."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_LAST: dict[str, Any] = {}


def on_pre_build(config: Any, **kwargs: Any) -> None:
    results = os.environ.get("BNB_MATRIX_RESULTS")
    if not results:
        return
    from matrix.publish.sitebuild import generate

    _LAST["generated"] = generate(Path(results), Path(config["docs_dir"]), quiet=True)


def on_post_build(config: Any, **kwargs: Any) -> None:
    generated = _LAST.get("generated")
    if generated is None:
        return
    from matrix.publish import cellsite, direct, incremental

    site = Path(config["site_dir"])
    shell = (site / direct.CELL_SHELL / "index.html").read_text(encoding="utf-8")
    incremental.write_exports(generated.agg.frame, generated.sources, generated.source_keys, site / "data")
    cellsite.write_cells(generated.site, site, None, shell)
