"""Signatures: known failures of a 4-bit load, recognised from the exception and the process's stderr.

The catalogue is data (`signatures.toml`); this module loads and validates it into frozen dataclasses and
classifies records against it. The rule: of every error signature whose patterns match the exception line or
the stderr tail, the one with the highest `priority` wins (the exception breaks ties), and a `fallback` one (an
umbrella error such as cuda-setup-failed) only when nothing else matches. That lets the root cause bitsandbytes
prints at import win over the generic error transformers re-raises later.

Stdlib only (the probe side may import it); never raises on the text it classifies.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matrix.errors import UserError

DEFAULT_CATALOGUE = Path(__file__).with_name("signatures.toml")
SCHEMA_VERSION = 1
KINDS = ("error", "warning")
CRASH, TIMEOUT, UNCLASSIFIED = "crash", "timeout", "unclassified"
RESERVED = (CRASH, TIMEOUT, UNCLASSIFIED)  # given by outcome or as the fallback; code refers to them

# Caps on what is scanned: errors worth classifying end up at the end of stderr, and long texts must not make
# classification slow.
STDERR_CAP = 64 * 1024
EXCEPTION_CAP = 16 * 1024
PATTERN_CAP = 400

_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]{0,200}(\x07|\x1b\\)|\\u001b\[[0-9;]{0,20}m")
_QUOTES = re.compile("[`'\"\u2018\u2019\u201a\u201b\u201c\u201d\u00b4]")
_SPACE = re.compile(r"\s+")
# Paste debris that splits a message: "> " quote markers of a quoted reply at line starts, markdown bold around an
# error line.
_QUOTE_MARKERS = re.compile(r"^[ \t]{0,8}(?:>[ \t]?){1,8}", re.MULTILINE)
_BOLD = re.compile(r"\*\*")
# A quantified group that is itself quantified, e.g. (a+)+ or (\w*)*: the classic catastrophic backtracking.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]")


class CatalogueError(UserError):
    """The signatures catalogue is malformed."""


@dataclass(frozen=True)
class Fix:
    """One way out of a failure; `recipe` names a measured recipe when the fix is one."""

    title: str
    code: str = ""
    note: str = ""
    recipe: str = ""


@dataclass(frozen=True)
class Signature:
    """A known failure: how to recognise it, why it happens, what helps."""

    slug: str
    title: str
    kind: str
    cause: str
    fixes: tuple[Fix, ...]
    references: tuple[str, ...]
    messages: tuple[str, ...]
    priority: int = 50
    patterns: tuple[re.Pattern[str], ...] = ()
    fallback: bool = False  # an umbrella error many causes end in: chosen only when nothing specific matches

    def matches(self, normalised: str) -> bool:
        """True when any pattern occurs in text already passed through `normalise`."""
        return any(p.search(normalised) for p in self.patterns)


def normalise(text: Any, cap: int = STDERR_CAP) -> str:
    """The form patterns are written against: last `cap` chars, no ANSI codes, no quote marks, single spaces.

    Accepts anything (None, bytes, str with lone surrogates) and never raises.
    """
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[-cap * 4:]).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    text = text[-cap:]
    text = _ANSI.sub("", text)
    text = _QUOTE_MARKERS.sub("", text)
    text = _BOLD.sub("", text)
    text = _QUOTES.sub("", text)
    return _SPACE.sub(" ", text).strip()


# ---------------------------------------------------------------------------------------------------------
# loading


class _Reader:
    """Validation helpers that name the file and key in every error."""

    def __init__(self, path: Path, recipes: tuple[str, ...] = ()) -> None:
        self.recipes = recipes  # the recipes of the axes file: the ones a fix may name
        self.path = path

    def fail(self, key: str, what: str, allowed: str) -> CatalogueError:
        return CatalogueError(f"{self.path}: {key}", what, f"allowed: {allowed}")

    def text(self, table: dict[str, Any], key: str, where: str, required: bool = True) -> str:
        value = table.get(key, "")
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"is {type(value).__name__} {value!r:.40}", "a string")
        if required and not value.strip():
            raise self.fail(f"{where}.{key}", "is missing or empty", "a non-empty string")
        return value.strip()

    def strings(self, table: dict[str, Any], key: str, where: str) -> list[str]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(f"{where}.{key}", f"is {value!r:.60}", "a list of non-empty strings")
        return [v.strip() for v in value]

    def pattern(self, source: str, where: str) -> re.Pattern[str]:
        if len(source) > PATTERN_CAP:
            raise self.fail(where, f"pattern is {len(source)} characters long", f"at most {PATTERN_CAP}")
        if _NESTED_QUANTIFIER.search(source):
            raise self.fail(where, f"pattern {source!r} repeats a repeated group (slow on long text)",
                            "flat patterns with bounded gaps such as .{0,200}")
        if source != source.strip() or "  " in source:
            raise self.fail(where, f"pattern {source!r} has leading, trailing or double spaces",
                            "single spaces (text is matched with whitespace collapsed)")
        try:
            return re.compile(source, re.IGNORECASE)
        except re.error as exc:
            raise self.fail(where, f"pattern {source!r} is not a valid regular expression ({exc})",
                            "Python re syntax") from None

    def fix(self, raw: Any, where: str) -> Fix:
        if not isinstance(raw, dict):
            raise self.fail(where, f"is {type(raw).__name__}", "a table with title, code, note, recipe")
        unknown = sorted(set(raw) - {"title", "code", "note", "recipe"})
        if unknown:
            raise self.fail(f"{where}.{unknown[0]}", "is not a known key", "title, code, note, recipe")
        recipe = self.text(raw, "recipe", where, required=False)
        if recipe and recipe not in self.recipes:
            raise self.fail(f"{where}.recipe", f"names {recipe!r}", ", ".join(self.recipes))
        return Fix(title=self.text(raw, "title", where), code=self.text(raw, "code", where, required=False),
                   note=self.text(raw, "note", where, required=False), recipe=recipe)

    def signature(self, slug: str, raw: Any) -> Signature:
        where = f"signatures.{slug}"
        if not _SLUG.fullmatch(slug) or len(slug) > 40:
            raise self.fail(where, f"slug {slug!r} is not a short kebab-case name", "lower-case words joined by '-'")
        if not isinstance(raw, dict):
            raise self.fail(where, f"is {type(raw).__name__}", "a table")
        known = {"title", "kind", "priority", "fallback", "patterns", "messages", "cause", "references", "fixes"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise self.fail(f"{where}.{unknown[0]}", "is not a known key", ", ".join(sorted(known)))
        kind = raw.get("kind", "error")
        if kind not in KINDS:
            raise self.fail(f"{where}.kind", f"is {kind!r}", ", ".join(KINDS))
        priority = raw.get("priority", 50)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
            raise self.fail(f"{where}.priority", f"is {priority!r}", "an integer from 0 to 100")
        fallback = raw.get("fallback", False)
        if not isinstance(fallback, bool):
            raise self.fail(f"{where}.fallback", f"is {fallback!r}", "true or false")
        sources = self.strings(raw, "patterns", where)
        if not sources and slug not in RESERVED:
            raise self.fail(f"{where}.patterns", "is empty",
                            f"at least one pattern (only {', '.join(RESERVED)} may have none)")
        patterns = tuple(self.pattern(s, f"{where}.patterns[{i}]") for i, s in enumerate(sources))
        references = self.strings(raw, "references", where)
        for i, url in enumerate(references):
            if not url.startswith("https://") or any(c.isspace() for c in url):
                raise self.fail(f"{where}.references[{i}]", f"is {url!r:.80}", "an https:// URL")
        raw_fixes = raw.get("fixes", [])
        if not isinstance(raw_fixes, list) or not raw_fixes:
            raise self.fail(f"{where}.fixes", "is missing or empty", "one or more [[signatures.<slug>.fixes]] tables")
        fixes = tuple(self.fix(f, f"{where}.fixes[{i}]") for i, f in enumerate(raw_fixes))
        messages = tuple(self.strings(raw, "messages", where))
        for i, message in enumerate(messages):
            if patterns and not any(p.search(normalise(message)) for p in patterns):
                raise self.fail(f"{where}.messages[{i}]", f"{message!r:.80} matches none of the patterns",
                                "messages that the signature's own patterns recognise")
        return Signature(slug=slug, title=self.text(raw, "title", where), kind=kind,
                         cause=_SPACE.sub(" ", self.text(raw, "cause", where)), fixes=fixes,
                         references=tuple(references), messages=messages, priority=priority, patterns=patterns,
                         fallback=fallback)


def load_catalogue(path: Path | str | None = None, recipes: tuple[str, ...] | None = None) -> dict[str, Signature]:
    """Load and validate the catalogue (default: the packaged one), slug -> Signature in file order. A fix may
    name one of `recipes` (default: the recipes of the default axes file).

    Raises CatalogueError (a UserError) naming the file, the key, what is wrong and what is allowed.
    """
    path = Path(path) if path is not None else DEFAULT_CATALOGUE
    if recipes is None:
        from matrix.measure.axes import load_axes

        recipes = tuple(load_axes().recipes)
    reader = _Reader(path, recipes)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(str(path), "signatures file not found", "pass an existing TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # tomllib also reports a slug defined twice here ("Cannot overwrite a value")
        raise CatalogueError(str(path), f"not valid TOML: {exc}", "fix the syntax at that line") from None
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise reader.fail("schema", f"is {schema!r}", str(SCHEMA_VERSION))
    unknown = sorted(set(data) - {"schema", "signatures"})
    if unknown:
        raise reader.fail(unknown[0], "is not a known top-level key", "schema, signatures")
    table = data.get("signatures")
    if not isinstance(table, dict) or not table:
        raise reader.fail("signatures", "is missing or empty", "one [signatures.<slug>] table per signature")
    catalogue = {slug: reader.signature(slug, raw) for slug, raw in table.items()}
    for slug in RESERVED:
        if slug not in catalogue or catalogue[slug].kind != "error":
            raise reader.fail(f"signatures.{slug}", "is missing or not kind = \"error\"",
                              f"the reserved signatures {', '.join(RESERVED)} must exist")
    return catalogue


@functools.lru_cache(maxsize=1)
def default_catalogue() -> dict[str, Signature]:
    """The packaged catalogue, loaded once."""
    return load_catalogue()


# ---------------------------------------------------------------------------------------------------------
# classifying


def ranked_matches(exception_text: str, stderr_text: str, catalogue: dict[str, Signature]) -> list[Signature]:
    """Every error signature matching either (already normalised) text, most specific (the root cause) first.

    Order: specific before fallback, then priority, then whether the exception itself carries it, then file order.
    """
    keyed = []
    for index, sig in enumerate(catalogue.values()):
        if sig.kind != "error" or not sig.patterns:
            continue
        in_exception = sig.matches(exception_text)
        if in_exception or sig.matches(stderr_text):
            keyed.append(((not sig.fallback, sig.priority, in_exception, -index), sig))
    return [sig for _, sig in sorted(keyed, key=lambda pair: pair[0], reverse=True)]


def best_match(exception_text: str, stderr_text: str, catalogue: dict[str, Signature]) -> Signature | None:
    """The most specific error signature matching either (already normalised) text, or None."""
    ranked = ranked_matches(exception_text, stderr_text, catalogue)
    return ranked[0] if ranked else None


def classify(error_type: str, message: str, stderr: str = "", outcome: str = "fail",
             catalogue: dict[str, Signature] | None = None) -> str:
    """The slug of the most specific error signature for one failure.

    `outcome` "timeout" is always `timeout`; a "crash" with nothing more specific is `crash`; no match is
    `unclassified`.
    """
    if outcome == TIMEOUT:
        return TIMEOUT
    catalogue = catalogue if catalogue is not None else default_catalogue()
    error_type = error_type if isinstance(error_type, str) else ""
    message = message if isinstance(message, (str, bytes)) else str(message or "")
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    # keep both ends of a long exception message: the type and headline first, details last
    if len(message) > EXCEPTION_CAP:
        message = message[: EXCEPTION_CAP // 2] + "\n" + message[-EXCEPTION_CAP // 2:]
    exception_text = normalise(f"{error_type[:200]}: {message}" if error_type else message, EXCEPTION_CAP + 201)
    sig = best_match(exception_text, normalise(stderr, STDERR_CAP), catalogue)
    if sig is not None:
        return sig.slug
    return CRASH if outcome == CRASH else UNCLASSIFIED


def classify_record(record: Any) -> str | None:
    """The error slug of a `matrix.measure.records.Record`; None when it passed or was skipped."""
    outcome = getattr(record, "outcome", "")
    if outcome in ("pass", "skip"):
        return None
    slug = classify(getattr(record, "error_type", ""), getattr(record, "error_message", ""),
                    getattr(record, "stderr_tail", ""), outcome)
    # transformers words "not installed" and "too old" the same; the record knows which it was
    versions = getattr(record, "versions", None)
    if slug == "bnb-too-old" and isinstance(versions, dict) and not versions.get("bitsandbytes"):
        return "bnb-not-installed"
    return slug


def find_warnings(stderr: str, catalogue: dict[str, Signature] | None = None) -> list[str]:
    """Slugs of the warning signatures present in `stderr`, in catalogue order (passing records included)."""
    catalogue = catalogue if catalogue is not None else default_catalogue()
    text = normalise(stderr, STDERR_CAP)
    return [s.slug for s in catalogue.values() if s.kind == "warning" and text and s.matches(text)]


def summary_line(rec: dict) -> str:
    """One console line per record: recipe, shape, budget, outcome and, for a failure, the signature it classifies
    as (the error page a reader would open) before the first words of the message."""
    slug = ""
    if rec.get("outcome") not in ("pass", "skip"):
        slug = "[" + classify(rec.get("error_type", ""), rec.get("error_message", ""),
                              rec.get("stderr_tail", ""), rec.get("outcome", "fail")) + "] "
    return (f"  {rec['recipe']:<12} {rec['shape']:<5} budget={rec.get('budget_gib') or '-':<5} {rec['outcome']:<8}"
            f" {slug}{rec.get('error_type', '')} {str(rec.get('error_message', ''))[:100]}")
