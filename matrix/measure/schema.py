"""The one schema every record, axes value and run id is checked against: what can be measured can be shown.

Records come from runners we do not control and are published on the open web, so a record read from a results
file is checked once here (`check`), field by field, and either comes out safe to publish or is refused with one
sentence (`Invalid`) that the reader turns into a warning with file:line. The axes file (`names`, `budgets`) and
run ids go through the same functions, so a value the probe is told to measure is one the reader accepts.

- Names that become file names, URL segments and labels (runner, versions asked for, recipe, shape, run id) are
  identifiers: letters, digits and ._+- , at most 64 characters, not a name the site uses itself (`index.md`).
- Numbers are finite and in range (a 500-digit integer too); text is valid Unicode (no lone surrogates), one
  line where it is a label, with `\\r` made a newline where it is free text.
- Nested groups keep the keys of KNOWN_KEYS and at most EXTRA_KEYS others; each group is at most GROUP_LIMIT
  characters of JSON, so columns and memory per record stay bounded whatever a record holds.
- Timestamps are ISO 8601 and at most FUTURE_S in the future: a record dated 9999 does not win forever.

Stdlib only: the probe side imports it inside each cell venv.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RUNNER_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")
LABEL_LIMIT = 300  # characters of a one-line label
ITEMS_LIMIT = 256  # entries of one list inside a record
TEXT_LIMIT = 8000  # characters of a free-text field kept on read: head + tail
GROUP_LIMIT = 8000  # characters of one nested group as JSON
EXTRA_KEYS = 16  # keys of a nested group that KNOWN_KEYS does not name, kept as one `<group>_other` column
FUTURE_S = 3600  # a timestamp further ahead than this is refused
BUDGET_RANGE = (1e-3, 1e4)  # GiB
EXIT_RANGE = (-2**31, 2**32)
NUMBER_GROUPS = {"timings_s": (0.0, 1e6, "seconds"), "memory_mib": (0.0, 1e8, "MiB")}
TEXT_FIELDS = ("error_message", "stderr_tail", "skip_reason")

# The keys the probe and the installer write (and h26's `saved_with`); the site makes a column of each. Another
# key is kept in the group's one `<group>_other` column (at most EXTRA_KEYS of them); add it here to give it its own.
KNOWN_KEYS: dict[str, frozenset[str]] = {name: frozenset(keys.split()) for name, keys in {
    "runner": "slug kind arch machine os cpu_model cpu_count ram_gib gpu_name gpu_count gpu_memory_gib gpus "
              "compute_capability driver cuda_runtime",
    "requested": "torch bnb transformers install installer runner probe_version torch_source note",
    "versions": "python torch torch_cuda bitsandbytes transformers accelerate safetensors",
    "timings_s": "budget check check_logits check_reference check_weights checkpoint cuda_init forward imports "
                 "imports_bnb imports_recipe inspect install load process recipe setup start teardown "
                 "unaccounted until_failure save",
    "memory_mib": "ballast cpu_peak_rss cpu_rss_before footprint gpu_forward_peak gpu_load_peak gpu_reserved_peak "
                  "nvml_used",
    "checks": "device_map finite gpu_count layers_per_device linear4bit linear4bit_expected linear_total max_memory "
              "parent_cuda_initialized parent_imported_bnb placement quant_type rel_error start_method "
              "torch_capability weight_rel_error double_quant",
    "saved_with": "bitsandbytes transformers torch quant_type double_quant",
    "env": "",  # environment variables a recipe set: their names are the recipe's, all kept (at most EXTRA_KEYS)
}.items()}
GROUPS = tuple(KNOWN_KEYS)

# Names the site uses for its own files and folders; a record naming one would overwrite or shadow a real page.
RESERVED = frozenset("index 404 assets search sitemap stylesheets javascripts".split())
_FILE_SUFFIX = re.compile(r"\.(?:md|html?|xml|json|jsonl|csv|svg|png|js|css|txt|gz|ya?ml|toml|j2)$", re.I)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)")


class Invalid(ValueError):
    """One sentence saying what is wrong with a value; the caller adds where it was found."""


def url_form(text: str, limit: int = 80) -> str:
    """How a name appears in a URL: lower case, runs of other characters as one '-' ('2.13.0+cpu' -> '2.13.0-cpu',
    'NVIDIA H100' -> 'nvidia-h100'), never '.', '..' or longer than `limit`. Two names with one URL form would
    share one page, so names are compared in this form (`records.one_identity`)."""
    out = re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-")[:limit].strip("-")
    return "unknown" if not out.strip(".") else out


def _shown(value: Any) -> str:
    if not isinstance(value, str):
        return f"of type {type(value).__name__}"
    value = _SURROGATE.sub("\ufffd", value)
    return repr(value) if len(value) <= 60 else f"{value[:40]!r}... ({len(value)} characters)"


def identifier(value: Any, name: str, pattern: re.Pattern[str] = IDENTIFIER, empty: bool = False) -> str:
    """`value` if it is a name usable as a path segment and a label, else Invalid."""
    if empty and value == "":
        return value
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Invalid(f"{name} {_shown(value)} is not a valid name (allowed: {pattern.pattern})")
    if pattern is not KEY and (url_form(value) in RESERVED or _FILE_SUFFIX.search(value)):
        raise Invalid(f"{name} {value!r} is a name the site uses for its own files")
    return value


def number(value: Any, name: str, low: float, high: float, unit: str = "") -> float | int:
    """`value` if it is a finite number in [low, high] (an integer of any size is compared exactly), else Invalid."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name} must be a number, got {type(value).__name__}")
    finite = isinstance(value, int) or math.isfinite(value)
    if not finite or not low <= value <= high:
        shown = f"an integer of {len(str(abs(value)))} digits" if isinstance(value, int) and abs(value) > 1e15 \
            else repr(value)
        raise Invalid(f"{name} is {shown}, allowed: {low:g} to {high:g}{' ' + unit if unit else ''}")
    return value


def text(value: Any, name: str) -> str:
    """A free text (message, stderr): valid Unicode, '\\r\\n' and a lone '\\r' made '\\n' (a '\\r' cut tables)."""
    if not isinstance(value, str):
        raise Invalid(f"'{name}' must be a string, got {type(value).__name__}")
    if _SURROGATE.search(value):
        raise Invalid(f"'{name}' is not valid Unicode (a lone surrogate)")
    return value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value


def label(value: Any, name: str) -> Any:
    """A nested value: null, a boolean, a finite number, a one-line label, or a small list/object of them."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return number(value, name, -1e15, 1e15)
    if isinstance(value, str):
        if len(value) > LABEL_LIMIT or _UNPRINTABLE.search(value) or _SURROGATE.search(value):
            raise Invalid(f"{name} is not a one-line text of at most {LABEL_LIMIT} characters")
        return value
    if isinstance(value, (list, dict)):
        if len(value) > ITEMS_LIMIT:
            raise Invalid(f"{name} has more than {ITEMS_LIMIT} entries")
        if isinstance(value, list):
            return [label(item, f"{name}[{i}]") for i, item in enumerate(value)]
        return {identifier(key, f"key in {name}", KEY): label(item, f"{name}.{key}") for key, item in value.items()}
    raise Invalid(f"{name} has a value of type {type(value).__name__}")


def group(value: Any, name: str) -> dict[str, Any]:
    """A nested group (runner, checks, ...): an object whose keys are KNOWN_KEYS[name] and at most EXTRA_KEYS
    others, at most GROUP_LIMIT characters as JSON."""
    if not isinstance(value, dict):
        raise Invalid(f"'{name}' must be an object, got {type(value).__name__}")
    known = KNOWN_KEYS.get(name, frozenset())
    extra = [k for k in value if k not in known]
    if len(extra) > EXTRA_KEYS:
        raise Invalid(f"'{name}' has {len(extra)} keys this schema does not know (at most {EXTRA_KEYS}; known: "
                      f"{', '.join(sorted(known)) or 'none'})")
    out = label(value, name)
    size = len(json.dumps(out, ensure_ascii=True))
    if size > GROUP_LIMIT:
        raise Invalid(f"'{name}' is {size} characters as JSON, at most {GROUP_LIMIT}")
    return out


def timestamp(value: Any, now: dt.datetime | None = None) -> str:
    """An ISO 8601 time with its zone ('2026-11-25T04:42:26Z'), not more than FUTURE_S ahead of `now`."""
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise Invalid(f"'timestamp' {_shown(value)} is not an ISO 8601 time with a zone (2026-11-25T04:42:26Z)")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"'timestamp' {value!r} is not a real date and time") from None
    now = now or dt.datetime.now(dt.timezone.utc)
    if (when - now).total_seconds() > FUTURE_S:
        raise Invalid(f"'timestamp' {value!r} is in the future (the clock of the machine that wrote it is wrong)")
    return value


def budget(value: Any, name: str = "'budget_gib'") -> float:
    """A VRAM budget in GiB: finite, from 1 MiB to 10 TiB."""
    return float(number(value, name, *BUDGET_RANGE, "GiB"))


def check(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every field of a record (Record's keyword arguments, types already checked) made safe to publish, or
    Invalid: identifiers where names become paths, finite numbers in range, bounded groups and labels, valid
    Unicode, a timestamp not in the future. Returns the fields with free text cleaned."""
    out = dict(kwargs)
    for name in GROUPS:
        if name in out:
            out[name] = group(out[name], name)
    runner, requested = out["runner"], out["requested"]
    identifier(runner.get("slug"), "runner slug", RUNNER_SLUG)
    identifier(requested.get("torch"), "requested torch")
    identifier(requested.get("bnb"), "requested bnb")
    identifier(requested.get("transformers", ""), "requested transformers", empty=True)
    for name in ("run_id", "recipe", "shape"):
        identifier(out[name], f"'{name}'")
    for key, version in out["versions"].items():
        if version is not None:
            identifier(version, f"versions.{key}", empty=True)
    if not re.fullmatch(r"[a-z_]{0,32}", out.get("stage", "")):
        raise Invalid(f"'stage' {_shown(out['stage'])} is not a stage name")
    if out.get("budget_gib") is not None:
        budget(out["budget_gib"])
    if out.get("exit_code") is not None:
        number(out["exit_code"], "'exit_code'", *EXIT_RANGE)
    for name, (low, high, unit) in NUMBER_GROUPS.items():
        for key, value in out.get(name, {}).items():
            if value is not None:
                number(value, f"{name}.{key}", low, high, unit)
    timestamp(out["timestamp"])
    for name in ("error_type", "fingerprint"):
        label(out.get(name, ""), f"'{name}'")
    for name in TEXT_FIELDS:
        if name in out:
            out[name] = text(out[name], name)
    return out
