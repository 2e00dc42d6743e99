"""`explain`: match a pasted error message or whole traceback to a signature and say what to do.

The same classifier as for records: the last exception line of the paste plays the exception, the whole paste
plays stderr, so a root cause printed above a generic re-raise still wins. Wired as `python -m matrix explain`.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import textwrap
from typing import TextIO

from matrix import urls
from matrix.signatures import (UNCLASSIFIED, Signature, best_match, default_catalogue, find_warnings, normalise,
                               EXCEPTION_CAP, STDERR_CAP)

# "ValueError: ...", "torch.OutOfMemoryError: ...", "importlib.metadata.PackageNotFoundError: ..."
_EXCEPTION_LINE = re.compile(r"^[ \t]*((?:[A-Za-z_]\w{0,60}\.){0,6}[A-Za-z_]\w{0,60}"
                             r"(?:Error|Exception|Warning|Exit|Interrupt)):[ \t]?", re.MULTILINE)


def _last_exception(text: str) -> str:
    """The paste from its last `SomeError: ` line on (the message may span lines), or the whole paste."""
    last = None
    for last in _EXCEPTION_LINE.finditer(text):
        pass
    return text[last.start():] if last else text


def explain(text: str) -> Signature | None:
    """The signature a pasted message or traceback shows, or None when only `unclassified` fits.

    Errors take precedence; a paste that only carries a known warning returns that warning's signature.
    """
    if not isinstance(text, str):
        text = text.decode("utf-8", errors="replace") if isinstance(text, (bytes, bytearray)) else str(text or "")
    text = text[-STDERR_CAP:]
    catalogue = default_catalogue()
    sig = best_match(normalise(_last_exception(text), EXCEPTION_CAP), normalise(text, STDERR_CAP), catalogue)
    if sig is not None:
        return sig
    warnings = find_warnings(text, catalogue)
    return catalogue[warnings[0]] if warnings else None


def _indent(block: str, prefix: str = "    ") -> str:
    return textwrap.indent(block, prefix, lambda line: True)


def render_text(sig: Signature) -> str:
    """The human-readable explanation: title, cause, the first fix with its code, the permanent URL."""
    url = urls.absolute(urls.error_path(sig.slug))
    lines = [f"{sig.title}  [{sig.slug}]", "", textwrap.fill(sig.cause, width=100), ""]
    if sig.fixes:
        fix = sig.fixes[0]
        lines.append(f"Fix: {fix.title}" + (f" (measured recipe: {fix.recipe})" if fix.recipe else ""))
        if fix.code:
            lines += ["", _indent(fix.code), ""]
        if fix.note:
            lines.append(textwrap.fill(fix.note, width=100))
        more = len(sig.fixes) - 1
        if more:
            lines.append(f"({more} more fix{'es' if more > 1 else ''} on the page below.)")
        lines.append("")
    lines.append(f"More: {url}")
    return "\n".join(lines)


def run_explain(text: str, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Print the explanation of `text` to `out`; 0 when a signature matched, 1 when none did.

    With `as_json`, print exactly {"slug", "title", "url"} (the unclassified entry when nothing matched).
    """
    sig = explain(text)
    if as_json:
        shown = sig if sig is not None else default_catalogue()[UNCLASSIFIED]
        payload = {"slug": shown.slug, "title": shown.title, "url": urls.absolute(urls.error_path(shown.slug))}
        shown_text = json.dumps(payload)
    elif sig is None:
        shown_text = f"no known signature; see {urls.absolute(urls.error_path(UNCLASSIFIED))}"
    else:
        shown_text = render_text(sig)
    try:
        print(shown_text, file=out)
        out.flush()
    except BrokenPipeError:  # `... | python -m matrix explain | head`: the reader left; the exit status still says
        _silence_stdout(out)
    except OSError as exc:  # a full disk (`> /dev/full`): one line, not a traceback
        _silence_stdout(out)
        print(f"bnb-matrix: cannot write to stdout ({exc.strerror or exc})", file=sys.stderr)
        return 1
    return 0 if sig is not None else 1


def _silence_stdout(out: TextIO) -> None:
    """Point a closed pipe's file descriptor at /dev/null so the interpreter's final flush does not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
