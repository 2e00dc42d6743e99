"""Permanent URLs of the site's pages, built from their parts. Pure functions; the site, `explain` and `doctor`
all use these, so a link pasted into an issue keeps working. Never change a scheme once published."""

from __future__ import annotations

import os

from matrix.measure import schema

DEFAULT_SITE_URL = "https://bnb-matrix.github.io/bnb-matrix/"


def site_url() -> str:
    """The published site's base URL ($BNB_MATRIX_SITE_URL, as mkdocs.yml reads it too), ending in '/'."""
    url = os.environ.get("BNB_MATRIX_SITE_URL") or DEFAULT_SITE_URL
    return url if url.endswith("/") else url + "/"


SLUG_LIMIT = 80  # characters; a path segment must stay far below the file system's 255 bytes


def slug(text: str) -> str:
    """Lower-case, URL-safe: '2.11.0+cu130' -> '2.11.0-cu130', 'NVIDIA H100' -> 'nvidia-h100'. Never '.', '..'
    or a segment too long for a file name (records are validated before this; this is the second line). The one
    URL form of a name (schema.url_form): the reader compares names in it, so two names never share a page."""
    return schema.url_form(text, SLUG_LIMIT)


def cell_path(runner: str, torch: str, bnb: str, transformers: str) -> str:
    """cells/<runner>/torch-<build>/bnb-<version>/transformers-<version>/"""
    return f"cells/{slug(runner)}/torch-{slug(torch)}/bnb-{slug(bnb)}/transformers-{slug(transformers)}/"


def error_path(signature: str) -> str:
    return f"errors/{slug(signature)}/"


def fix_path(recipe: str) -> str:
    return f"fixes/{slug(recipe)}/"


def runner_path(runner: str) -> str:
    return f"runners/{slug(runner)}/"


def gpu_path(arch: str) -> str:
    """gpus/<sm_XX>/: the predicted grid of one GPU architecture."""
    return f"gpus/{slug(arch)}/"


def absolute(path: str) -> str:
    """A site-relative path as a full URL on the published site."""
    return site_url() + path
