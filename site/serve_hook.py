"""mkdocs hook used by `python -m matrix site --serve` (matrix.sitebuild.serve_site): regenerate the pages before
every rebuild, so edits to results, templates or hand-written pages show up live. Only changed files are written,
so the rebuild this triggers finds nothing new and `mkdocs serve` does not loop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def on_pre_build(config: Any, **kwargs: Any) -> None:
    results = os.environ.get("BNB_MATRIX_RESULTS")
    if not results:
        return
    from matrix.publish.sitebuild import generate

    generate(Path(results), Path(config["docs_dir"]), quiet=True)
