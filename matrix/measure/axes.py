"""The axes: the declared matrix (torch builds, bitsandbytes and transformers versions, recipes, shapes, profiles).

`load_axes(path)` parses and validates the TOML file into frozen dataclasses. Every defect raises `AxesError`
with one line: file, key, what is wrong, what is allowed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomllib
from packaging.version import InvalidVersion, Version

from matrix.measure import runner
from matrix.measure import schema
from matrix.errors import AxesError

DEFAULT_AXES = Path(__file__).with_name("axes.toml")
INSTALL_MODES = ("online", "offline", "system")
RECIPE_KINDS = ("", "prequantized")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TorchBuild:
    """A torch version plus its variant (cpu, cu126, cu128, cu130...) and where it installs from."""

    name: str  # "2.13.0+cpu"
    version: str
    variant: str
    index_url: str = ""
    find_links: str = ""
    # PyPI's default Linux wheel: a CUDA build (`variant` says which) whose version carries no "+variant".
    pypi: bool = False

    @property
    def requirement(self) -> str:
        """The pip/uv requirement that installs exactly this build."""
        if self.pypi or not self.variant:
            return f"torch=={self.version}"
        return f"torch=={self.version}+{self.variant}"

    @property
    def wheel_version(self) -> str:
        """The version string in this build's wheel file name."""
        return self.requirement.removeprefix("torch==")


@dataclass(frozen=True)
class Recipe:
    """One way to ask for a 4-bit load: kwargs for BitsAndBytesConfig and from_pretrained, plus environment."""

    name: str
    title: str
    description: str
    claim: str = ""
    bnb_config: dict[str, Any] = field(default_factory=dict)
    from_pretrained: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    requires: str = ""  # "gpu" or ""
    kind: str = ""  # "" = quantize on the fly (the probe); "prequantized" = save 4-bit, load it back (readback)


@dataclass(frozen=True)
class Shape:
    """A Llama-shaped model config the probe builds a checkpoint from."""

    name: str
    description: str
    config: dict[str, int]


@dataclass(frozen=True)
class Profile:
    """The part of the matrix one kind of runner measures."""

    name: str
    description: str
    torch: tuple[str, ...]
    bitsandbytes: tuple[str, ...]
    transformers: tuple[str, ...]
    recipes: tuple[str, ...]
    shapes: tuple[str, ...]
    install: str = "online"
    timeout_s: int = 300
    budgets_gib: tuple[float, ...] = ()
    budget_shapes: tuple[str, ...] = ()

    def pairs(self) -> list[tuple[str, str]]:
        """Every (torch build, bitsandbytes version) pair: one nox session each."""
        return [(t, b) for t in self.torch for b in self.bitsandbytes]


@dataclass(frozen=True)
class Axes:
    path: Path
    torch_builds: dict[str, TorchBuild]
    recipes: dict[str, Recipe]
    shapes: dict[str, Shape]
    profiles: dict[str, Profile]
    baseline: str = "plain"  # the recipe every other recipe is compared against (the axes file names it)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise AxesError(f"{self.path}: profiles", f"no profile named {name!r}" + did_you_mean(name, self.profiles),
                            f"allowed: {', '.join(self.profiles)}")
        return self.profiles[name]

    def names(self) -> set[str]:
        """Every name the axes spell (torch builds, versions, recipes, shapes): a record spelled so keeps its page
        when another spelling has the same URL form (records.one_identity)."""
        versions = {v for p in self.profiles.values() for v in (*p.bitsandbytes, *p.transformers)}
        return set(self.torch_builds) | set(self.recipes) | set(self.shapes) | versions


# What BitsAndBytesConfig takes (transformers), with the TOML types that can hold it; dtypes are strings such as
# "torch.bfloat16", which the probe turns into torch objects.
BNB_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "load_in_4bit": (bool,), "load_in_8bit": (bool,), "llm_int8_threshold": (int, float),
    "llm_int8_skip_modules": (list,), "llm_int8_enable_fp32_cpu_offload": (bool,), "llm_int8_has_fp16_weight": (bool,),
    "bnb_4bit_compute_dtype": (str,), "bnb_4bit_quant_type": (str,), "bnb_4bit_use_double_quant": (bool,),
    "bnb_4bit_quant_storage": (str,),
}
_QUANT_TYPES = ("nf4", "fp4")


def did_you_mean(word: str, allowed: Any) -> str:
    """' (did you mean 'x'?)' for the closest allowed word, '' when none is close."""
    close = get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size")


class _Reader:
    """Small helpers that turn a TOML table into checked values, naming file and key on every defect."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, what: str, allowed: str) -> AxesError:
        return AxesError(f"{self.path}: {key}", what, f"allowed: {allowed}")

    def name(self, name: str, key: str) -> str:
        """A torch build, recipe or shape name: it lands in every record, and the site skips records whose names
        are refused by the schema (schema.identifier), so such a name would be measured and then never shown."""
        try:
            return schema.identifier(name, "name")
        except schema.Invalid as exc:
            raise self.fail(key, f"name {name!r} is not allowed: it becomes a path, a slug and a label ({exc})",
                            "letters, digits and . _ + - (at most 64, starting with a letter or digit)") from None

    def table(self, data: Any, key: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"must be a table, got {type(data).__name__}", f"a [{key}] table")
        return data

    def keys(self, data: dict[str, Any], key: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
        for k in data:
            if k not in required + optional:
                raise self.fail(f"{key}.{k}", "unknown key" + did_you_mean(k, required + optional),
                                ", ".join(required + optional))
        for k in required:
            if k not in data:
                raise self.fail(f"{key}.{k}", "missing", f"{key} needs {', '.join(required)}")

    def string(self, data: dict[str, Any], key: str, name: str, default: str | None = None) -> str:
        value = data.get(name, default)
        if not isinstance(value, str) or (default is None and not value.strip()):
            raise self.fail(f"{key}.{name}", f"must be a non-empty string, got {value!r}", "a quoted string")
        return value

    def url(self, data: dict[str, Any], key: str, name: str) -> str:
        value = self.string(data, key, name, "")
        parts = urlsplit(value)
        if value and (value != value.strip() or parts.scheme not in ("http", "https") or not parts.netloc):
            raise self.fail(f"{key}.{name}", f"{value!r} is not an http(s) URL",
                            '"https://download.pytorch.org/whl/cu128" or leave it out')
        return value

    def bnb_config(self, data: Any, key: str) -> dict[str, Any]:
        config = self.table(data, key)
        for name, value in config.items():
            if name not in BNB_CONFIG_TYPES:
                raise self.fail(f"{key}.{name}", "is not a BitsAndBytesConfig argument" + did_you_mean(
                    name, BNB_CONFIG_TYPES), ", ".join(BNB_CONFIG_TYPES))
            types = BNB_CONFIG_TYPES[name]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                kind = " or ".join("true/false" if t is bool else t.__name__ for t in types)
                raise self.fail(f"{key}.{name}", f"must be {kind}, got {value!r}", f"a TOML {kind}")
            if name == "bnb_4bit_quant_type" and value not in _QUANT_TYPES:
                raise self.fail(f"{key}.{name}", f"is {value!r}", ", ".join(_QUANT_TYPES))
            if name == "llm_int8_skip_modules" and not (isinstance(value, list)
                                                        and all(isinstance(v, str) for v in value)):
                raise self.fail(f"{key}.{name}", f"must be a list of module names, got {value!r}", '["lm_head"]')
        return config

    def strings(self, data: dict[str, Any], key: str, name: str, known: dict[str, Any] | None = None,
                versions: bool = False, allow_empty: bool = False) -> tuple[str, ...]:
        value = data.get(name, [])
        where = f"{key}.{name}"
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"must be a list of strings, got {value!r}", '["a", "b"]')
        if not value and not allow_empty:
            raise self.fail(where, "is empty: a profile must list at least one", "one or more entries")
        seen: set[str] = set()
        for i, item in enumerate(value):
            if item in seen:
                raise self.fail(f"{where}[{i}]", f"duplicate {item!r}", "each entry once")
            seen.add(item)
            if item != item.strip() or not item:
                raise self.fail(f"{where}[{i}]", f"{item!r} has spaces around it or is empty", "the bare name")
            if known is not None and item not in known:
                raise self.fail(f"{where}[{i}]", f"unknown {item!r}" + did_you_mean(item, known),
                                ", ".join(known) or "(none defined)")
            if versions and item != "system":
                try:
                    Version(schema.identifier(item, "version"))  # as records spell it: no '1!0.45.5'
                except (InvalidVersion, schema.Invalid):
                    raise self.fail(f"{where}[{i}]", f"{item!r} is not a version a record can name",
                                    "PEP 440 in letters, digits and . _ + -, e.g. 0.48.2") from None
        return tuple(value)


def load_axes(path: Path | str | None = None) -> Axes:
    """Read and validate the axes file (default: matrix/axes.toml; settings.axes names another)."""
    path = Path(path or DEFAULT_AXES)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AxesError(str(path), "axes file not found",
                        "pass an existing TOML file or omit it for the default") from None
    except OSError as exc:  # a folder, no permission, an I/O error
        raise AxesError(str(path), f"axes file cannot be read ({exc.strerror or exc})",
                        "pass a readable TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AxesError(str(path), f"not valid TOML: {exc}", "fix the syntax at that line") from None
    return parse_axes(data, path)


def parse_axes(data: dict[str, Any], path: Path) -> Axes:
    """Validate already-decoded TOML data (pure; see load_axes)."""
    r = _Reader(path)
    r.keys(data, "(top)", ("torch_builds", "recipes", "shapes", "profiles"), ("schema", "baseline"))
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise r.fail("schema", f"is {data.get('schema')!r}", str(SCHEMA_VERSION))

    builds = {}
    for name, t in r.table(data["torch_builds"], "torch_builds").items():
        key = f"torch_builds.{name}"
        t = r.table(t, r.name(name, key))
        r.keys(t, key, ("version", "variant"), ("index_url", "find_links", "pypi"))
        version = r.string(t, key, "version")
        try:
            if version != version.strip():
                raise InvalidVersion(version)
            Version(version)
        except InvalidVersion:
            raise r.fail(f"{key}.version", f"{version!r} is not a version", "PEP 440, e.g. 2.13.0") from None
        pypi = t.get("pypi", False)
        if not isinstance(pypi, bool):
            raise r.fail(f"{key}.pypi", f"must be true or false, got {pypi!r}", "true for PyPI's default wheel")
        builds[name] = TorchBuild(name, version, r.string(t, key, "variant"),
                                  r.url(t, key, "index_url"), r.string(t, key, "find_links", ""), pypi)

    recipes = {}
    for name, t in r.table(data["recipes"], "recipes").items():
        key = f"recipes.{name}"
        t = r.table(t, r.name(name, key))
        r.keys(t, key, ("title", "description", "bnb_config"),
               ("claim", "from_pretrained", "env", "requires", "kind"))
        env = r.table(t.get("env", {}), f"{key}.env")
        if not all(isinstance(v, str) for v in env.values()):
            raise r.fail(f"{key}.env", "values must be strings", 'NAME = "value"')
        requires = r.string(t, key, "requires", "")
        if requires not in ("", "gpu"):
            raise r.fail(f"{key}.requires", f"is {requires!r}", '"gpu" or leave it out')
        kind = r.string(t, key, "kind", "")
        if kind not in RECIPE_KINDS:
            raise r.fail(f"{key}.kind", f"is {kind!r}", '"prequantized" or leave it out')
        config = r.bnb_config(t["bnb_config"], f"{key}.bnb_config")
        if kind and (config.get("load_in_4bit") is not True or t.get("from_pretrained") or env or requires):
            raise r.fail(key, "a prequantized recipe saves and reloads a 4-bit checkpoint: it takes load_in_4bit "
                              "= true and no from_pretrained, env or requires", "bnb_config = { load_in_4bit = true, "
                              "bnb_4bit_quant_type = \"nf4\" }")
        recipes[name] = Recipe(name, r.string(t, key, "title"), r.string(t, key, "description"),
                               r.string(t, key, "claim", ""), config,
                               r.table(t.get("from_pretrained", {}), f"{key}.from_pretrained"), env, requires, kind)

    shapes = {}
    for name, t in r.table(data["shapes"], "shapes").items():
        key = f"shapes.{name}"
        t = r.table(t, r.name(name, key))
        r.keys(t, key, _SHAPE_KEYS, ("description",))
        for k in _SHAPE_KEYS:
            if isinstance(t[k], bool) or not isinstance(t[k], int) or t[k] <= 0:
                raise r.fail(f"{key}.{k}", f"must be a positive integer, got {t[k]!r}", "e.g. 2048")
        shapes[name] = Shape(name, r.string(t, key, "description", ""), {k: t[k] for k in _SHAPE_KEYS})

    profiles = {}
    for name, t in r.table(data["profiles"], "profiles").items():
        key = f"profiles.{name}"
        t = r.table(t, key)
        r.keys(t, key, ("torch", "bitsandbytes", "transformers", "recipes", "shapes"),
               ("description", "install", "timeout_s", "budgets_gib", "budget_shapes"))
        install = r.string(t, key, "install", "online")
        if install not in INSTALL_MODES:
            raise r.fail(f"{key}.install", f"is {install!r}", ", ".join(INSTALL_MODES))
        timeout = t.get("timeout_s", 300)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise r.fail(f"{key}.timeout_s", f"must be a positive integer, got {timeout!r}", "seconds, e.g. 300")
        budgets = t.get("budgets_gib", [])
        try:
            if not isinstance(budgets, list):
                raise schema.Invalid("not a list")
            for budget in budgets:
                schema.budget(budget, "budget")  # what a record may hold: finite, 0.001 to 10000 GiB
        except schema.Invalid as exc:
            raise r.fail(f"{key}.budgets_gib", f"must be a list of budgets in GiB, got {budgets!r} ({exc})",
                         "[6, 8, 12]") from None
        if len(set(budgets)) != len(budgets):
            raise r.fail(f"{key}.budgets_gib", "has duplicates", "each budget once")
        profiles[name] = Profile(
            name=name, description=r.string(t, key, "description", ""),
            torch=r.strings(t, key, "torch", builds), bitsandbytes=r.strings(t, key, "bitsandbytes", versions=True),
            transformers=r.strings(t, key, "transformers", versions=True),
            recipes=r.strings(t, key, "recipes", recipes), shapes=r.strings(t, key, "shapes", shapes),
            install=install, timeout_s=timeout, budgets_gib=tuple(float(b) for b in budgets),
            budget_shapes=r.strings(t, key, "budget_shapes", shapes, allow_empty=True))
    if not profiles:
        raise r.fail("profiles", "no profile defined", "at least [profiles.cpu]")
    for name, profile in profiles.items():  # `nox -s probe` runs one kind, `nox -s readback` the other
        if len({recipes[n].kind for n in profile.recipes}) > 1:
            raise r.fail(f"profiles.{name}.recipes", "mixes prequantized recipes with on-the-fly ones",
                         "only prequantized recipes (for nox -s readback) or none (for nox -s probe)")
    baseline = r.string(data, "(top)", "baseline", "plain")
    on_the_fly = ", ".join(n for n, rec in recipes.items() if not rec.kind)
    if baseline not in recipes:
        raise r.fail("baseline", f"names {baseline!r}, which is not a recipe", on_the_fly)
    if recipes[baseline].kind:
        raise r.fail("baseline", f"names {baseline!r}, a prequantized recipe: nothing is compared with it", on_the_fly)
    return Axes(path, builds, recipes, shapes, profiles, baseline)


def gpu_present() -> bool:
    """True when nvidia-smi lists a GPU (the host side never imports torch)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def pick_profile(axes: Axes, name: str | None = None) -> Profile:
    """The named profile (see matrix.measure.settings), else the default profile of this machine's kind of runner."""
    return axes.profile(name or runner.default_profile("gpu" if gpu_present() else "cpu"))
