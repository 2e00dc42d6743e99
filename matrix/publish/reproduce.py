"""The command a cell page prints to measure that cell again: a nox session of a profile that really holds it.

A nox session is one (torch, bitsandbytes) pair of a profile and measures every transformers release, recipe and
shape that profile lists, so the profile printed must list the cell's torch, bitsandbytes AND transformers: a
profile holding the pair alone would re-measure other transformers releases and never this cell.
"""

from __future__ import annotations

from matrix.measure import runner
from matrix.measure.axes import Axes, Profile


def holds(profile: Profile, torch: str, bnb: str, transformers: str | None = None) -> bool:
    """Whether a run of `profile` measures this torch build, bitsandbytes release (and transformers release)."""
    return (torch, bnb) in profile.pairs() and (transformers is None or transformers in profile.transformers)


def profile_for(runner_kind: str, torch: str, bnb: str, axes: Axes | None = None,
                transformers: str | None = None) -> str:
    """The profile to print: the runner kind's default when it holds the cell, else the first one named after
    the default that does ('cpu-wide' for 'cpu'), else the first in the axes file that does; the default when
    none does (or no axes are given)."""
    default = runner.default_profile(str(runner_kind))
    if axes is None:
        return default
    having = [name for name, p in axes.profiles.items() if holds(p, torch, bnb, transformers)]
    if default in having:
        return default
    return next((n for n in having if n.startswith(default)), having[0] if having else default)


def reproduce_command(runner_kind: str, torch: str, bnb: str, axes: Axes | None = None,
                      transformers: str | None = None) -> str:
    """The command that measures this cell again on a runner of the same kind, as typed in a checkout after the
    README's install: the venv's nox, a profile that holds the cell (`profile_for`), and `--force`, since the
    cell is already measured."""
    profile = profile_for(runner_kind, torch, bnb, axes, transformers)
    return f"BNB_MATRIX_PROFILE={profile} .venv/bin/nox -s \"probe(torch='{torch}', bnb='{bnb}')\" -- --force"


def cell_command(cell: dict[str, str], axes: Axes | None = None) -> str:
    """`reproduce_command` for a verdict row (runner_kind, torch, bnb, transformers)."""
    return reproduce_command(cell["runner_kind"], cell["torch"], cell["bnb"], axes, cell["transformers"])
