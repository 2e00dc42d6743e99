"""`explain`: match a pasted error message or whole traceback to a signature and say what to do.

The same classifier as for records: the last exception line of the paste plays the exception, the whole paste
plays stderr, so a root cause printed above a generic re-raise still wins; then the platform the paste shows (its
paths) may turn a generic symptom into its real cause (`platform.adjust`). Fixes are listed by the pass rate the
records in results/ measured for them (`fixrates`). Wired as `python -m matrix explain`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, TextIO

from matrix import urls
from matrix.diagnose import fixrates, platform
from matrix.diagnose.signatures import (
    EXCEPTION_CAP,
    STDERR_CAP,
    UNCLASSIFIED,
    Signature,
    default_catalogue,
    find_warnings,
    normalise,
    ranked_matches,
)

# Causes beyond the first that `explain` names: a root cause and what it led to, rarely more.
MAX_CAUSES = 3

# "ValueError: ...", "torch.OutOfMemoryError: ...", "importlib.metadata.PackageNotFoundError: ..."
_EXCEPTION_LINE = re.compile(r"^[ \t]*((?:[A-Za-z_]\w{0,60}\.){0,6}[A-Za-z_]\w{0,60}"
                             r"(?:Error|Exception|Warning|Exit|Interrupt)):[ \t]?", re.MULTILINE)


def _last_exception(text: str) -> str:
    """The paste from its last `SomeError: ` line on (the message may span lines), or the whole paste."""
    last = None
    for last in _EXCEPTION_LINE.finditer(text):  # noqa: B007 - the loop only finds the last match
        pass
    return text[last.start():] if last else text


def explain_all(text: str) -> list[Signature]:
    """The signatures a pasted message or traceback shows, root cause first (at most MAX_CAUSES); [] when none.

    Every matching error signature, most specific first; a paste that only carries known warnings gives those.
    """
    if not isinstance(text, str):
        text = text.decode("utf-8", errors="replace") if isinstance(text, (bytes, bytearray)) else str(text or "")
    text = text[-STDERR_CAP:]
    catalogue = default_catalogue()
    found = ranked_matches(normalise(_last_exception(text), EXCEPTION_CAP), normalise(text, STDERR_CAP), catalogue)
    found = platform.adjust(found, text, catalogue)
    if not found:
        found = [catalogue[slug] for slug in find_warnings(text, catalogue)]
    return found[:MAX_CAUSES]


def explain(text: str) -> Signature | None:
    """The signature a pasted message or traceback shows (the root cause), or None when only `unclassified` fits."""
    found = explain_all(text)
    return found[0] if found else None


def _indent(block: str, prefix: str = "    ") -> str:
    return textwrap.indent(block, prefix, lambda line: True)


@functools.lru_cache(maxsize=4)
def _records(results_dir: str) -> list[Any]:
    return fixrates.load_records(results_dir)


def _ranked(sig: Signature, records: list[Any] | None) -> list[fixrates.FixRate]:
    return fixrates.ranked_fixes(sig, records or [])


def render_text(sig: Signature, also: list[Signature] | None = None, records: list[Any] | None = None) -> str:
    """The human-readable explanation: title, cause, the fixes by measured pass rate (the best one with its code,
    each saying what was measured or "not measured"), further causes, the permanent URL."""
    url = urls.absolute(urls.error_path(sig.slug))
    generic = "  (a fallback: no specific cause matched)" if sig.fallback else ""
    lines = [f"{sig.title}  [{sig.slug}]{generic}", "", textwrap.fill(sig.cause, width=100), ""]
    ranked = _ranked(sig, records)
    if ranked:
        lines.append("Fixes, by the pass rate measured where this error occurred:" if len(ranked) > 1 else "Fix:")
        for n, rate in enumerate(ranked, 1):
            lines += ["", f"{n}. {rate.fix.title}  [{rate.describe(sig.kind)}]"]
            if rate.fix.code:
                lines += ["", _indent(rate.fix.code, "       ")]
            if rate.fix.note:
                lines.append(textwrap.indent(textwrap.fill(rate.fix.note, width=97), "   "))
        lines.append("")
    if also:
        lines.append("Also present (a consequence of the above, or a second problem):")
        lines += [f"  {other.title}  [{other.slug}]  {_entry(other)['url']}" for other in also]
        lines.append("")
    lines.append(f"More: {url}")
    return "\n".join(lines)


def render_markdown(found: list[Signature], records: list[Any] | None = None) -> str:
    """A reply a maintainer pastes into an issue: per cause present (root cause first) its title linked to its page,
    the cause, and the first fix with its code. Nothing matched: a pointer to the unclassified page."""
    if not found:
        url = urls.absolute(urls.error_path(UNCLASSIFIED))
        return (f"This error is not one bnb-matrix recognises yet; [the unclassified errors page]({url}) says what "
                "to collect (the whole traceback, `python -m matrix doctor`'s output).")
    lines = ["This looks like " + (f"**{found[0].title}**." if len(found) == 1 else
                                   f"{len(found)} problems, the first the root cause:"), ""]
    for n, sig in enumerate(found, 1):
        url = urls.absolute(urls.error_path(sig.slug))
        if len(found) > 1:
            lines += [f"{n}. **[{sig.title}]({url})**", ""]
        lines += [f"**Cause:** {' '.join(sig.cause.split())}", ""]
        ranked = _ranked(sig, records)
        if ranked:
            fix = ranked[0].fix
            lines += [f"**Fix:** {fix.title} ({ranked[0].describe(sig.kind)})", ""]
            if fix.code:
                ticks = "`" * max([3] + [len(run) + 1 for run in re.findall(r"`+", fix.code)])
                lines += [ticks, fix.code.rstrip(), ticks, ""]
        lines += [f"Measured details and other fixes: {url}", ""]
    return "\n".join(lines).rstrip()


def _entry(sig: Signature) -> dict[str, Any]:
    """slug, title, url and "specific": false for a fallback (an umbrella error) or when nothing matched."""
    return {"slug": sig.slug, "title": sig.title, "url": urls.absolute(urls.error_path(sig.slug)),
            "specific": not sig.fallback and sig.slug != UNCLASSIFIED}


def run_explain(text: str, as_json: bool, out: TextIO = sys.stdout, markdown: bool = False,
                results: Path | str | None = None) -> int:
    """Print the explanation of `text` to `out`; 0 when a signature matched, 1 when none did.

    With `as_json`, print {"slug", "title", "url", "specific"} of the root cause (the unclassified entry when nothing
    matched; "specific" is false for it and for a fallback such as cuda-setup-failed), plus "also": the same for the
    further causes present, only when there are any. With `markdown`, print `render_markdown` (a reply to paste into
    an issue). Fix pass rates come from the records in `results` (default ./results; none there: "not measured").
    """
    found = explain_all(text)
    sig = found[0] if found else None
    if as_json:
        payload = _entry(sig if sig is not None else default_catalogue()[UNCLASSIFIED])
        if len(found) > 1:
            payload["also"] = [_entry(other) for other in found[1:]]
        shown_text = json.dumps(payload)
    elif markdown:
        shown_text = render_markdown(found, _records(str(results or fixrates.DEFAULT_RESULTS)))
    elif sig is None:
        shown_text = f"no known signature; see {urls.absolute(urls.error_path(UNCLASSIFIED))}"
    else:
        shown_text = render_text(sig, also=found[1:], records=_records(str(results or fixrates.DEFAULT_RESULTS)))
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
