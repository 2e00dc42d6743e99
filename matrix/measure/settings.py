"""Settings: every BNB_MATRIX_* environment variable, read once at the edge into one frozen object.

The entry points (noxfile.py, `python -m matrix`) call `from_env(os.environ, ...)` with what the session or the
command line said; the rest of the code receives the `Settings` and never reads the environment itself. Each
value resolves as: session argument > environment > the axes file (see `install_mode`, `profile_name`).
Stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path.home() / ".cache" / "bnb-matrix"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What the environment (or a session argument) decided; empty means 'not said: ask the axes file'."""

    axes: Path | None = None  # BNB_MATRIX_AXES: the axes file (default matrix/axes.toml)
    profile: str = ""  # BNB_MATRIX_PROFILE: cpu, cuda, ... (default: by this machine's kind of runner)
    install: str = ""  # BNB_MATRIX_INSTALL: online, offline, system (default: the profile's)
    results: Path | None = None  # BNB_MATRIX_RESULTS: where records are appended (default results/)
    wheelhouses: tuple[str, ...] = ()  # BNB_MATRIX_WHEELHOUSE then pip's PIP_FIND_LINKS (space separated)
    cache: Path = DEFAULT_CACHE  # BNB_MATRIX_CACHE: the probe's checkpoints
    checkpoint: str = ""  # BNB_MATRIX_CHECKPOINT: probe this local checkpoint instead of a built one
    start_method: str = "auto"  # BNB_MATRIX_START: how the probe starts recipe processes (auto, fork, spawn)
    install_note: str = ""  # BNB_MATRIX_INSTALL_NOTE: recorded with each record (e.g. a slimmed wheel)
    run_id: str = ""  # BNB_MATRIX_RUN_ID: the results file every session of one nox run appends to

    def install_mode(self, profile: Any, session: str | None = None) -> str:
        """The install mode: the session's (`--install`) > BNB_MATRIX_INSTALL > the profile's."""
        return session or self.install or profile.install


def from_env(env: Mapping[str, str], **session: Any) -> Settings:
    """Settings from `env` (pass os.environ at the edge), then `session` keywords (non-empty ones win)."""
    values: dict[str, Any] = {
        "axes": Path(env["BNB_MATRIX_AXES"]) if env.get("BNB_MATRIX_AXES") else None,
        "profile": env.get("BNB_MATRIX_PROFILE", ""),
        "install": env.get("BNB_MATRIX_INSTALL", ""),
        "results": Path(env["BNB_MATRIX_RESULTS"]) if env.get("BNB_MATRIX_RESULTS") else None,
        "wheelhouses": tuple(env.get("BNB_MATRIX_WHEELHOUSE", "").split() + env.get("PIP_FIND_LINKS", "").split()),
        "cache": Path(env["BNB_MATRIX_CACHE"]) if env.get("BNB_MATRIX_CACHE") else DEFAULT_CACHE,
        "checkpoint": env.get("BNB_MATRIX_CHECKPOINT", ""),
        "start_method": env.get("BNB_MATRIX_START", "") or "auto",
        "install_note": env.get("BNB_MATRIX_INSTALL_NOTE", ""),
        "run_id": env.get("BNB_MATRIX_RUN_ID", ""),
    }
    values.update({k: v for k, v in session.items() if v not in (None, "")})
    return Settings(**values)
