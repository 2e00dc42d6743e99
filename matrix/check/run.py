"""`python -m matrix check`: read the setup (flags, or a paste on stdin), answer, print. The exit status follows
`explain`: 0 answered (works, works-with-fix or fails), 1 no answer (unknown), 2 bad input."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from matrix.check import render
from matrix.check.engine import check
from matrix.check.facts import load_facts
from matrix.check.paste import read_paste
from matrix.check.setup import from_flags, merge
from matrix.errors import UserError


def run_check(flags: dict[str, str], env: list[str] | None, text: str, as_json: bool = False,
              markdown: bool = False, measured: dict[str, Any] | None = None, out: TextIO = sys.stdout) -> int:
    """Answer for the flags (on top of what a paste shows) and print it; the exit status as above."""
    setup = from_flags(**flags, env=env)
    if text.strip():
        pasted = read_paste(text)
        if not pasted.given():
            raise UserError("check", "the paste shows no GPU, torch or bitsandbytes version",
                            "paste `python -m bitsandbytes`, `python doctor.py`, `nvidia-smi` or `pip list` output, "
                            "or pass --gpu/--torch/--bnb")
        setup = merge(pasted, setup)
    elif not setup.given():
        raise UserError("check", "no setup given", "pass --gpu T4 --torch 2.6.0 --bnb 0.45.5, or paste "
                        "`python doctor.py` output on stdin")
    verdict = check(setup, load_facts(measured))
    text_out = render.as_json(verdict) if as_json else render.as_markdown(verdict) if markdown else \
        render.as_text(verdict)
    print(text_out, file=out)
    return 1 if verdict.verdict == "unknown" else 0
