"""Axes validation: the shipped file is valid, and every kind of defect is one line naming file, key and mend."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from matrix.measure.axes import DEFAULT_AXES, load_axes, parse_axes, pick_profile
from matrix.measure.settings import from_env
from matrix.errors import AxesError

ROOT = Path(__file__).resolve().parent.parent


def base() -> dict:
    return tomllib.loads(DEFAULT_AXES.read_text())


def error_for(data: dict) -> str:
    with pytest.raises(AxesError) as info:
        parse_axes(data, Path("axes.toml"))
    return info.value.line()


def test_shipped_axes_hold_the_promised_cpu_profile():
    axes = load_axes()
    cpu = axes.profile("cpu")
    assert cpu.torch == ("2.13.0+cpu",)
    assert {"0.45.5", "0.46.1", "0.47.0", "0.48.2", "0.49.2", "0.50.2"} <= set(cpu.bitsandbytes)
    assert {"plain", "seed-fix", "nf4-bf16", "cpu-offload"} <= set(cpu.recipes)
    assert ("2.13.0+cpu", "0.50.2") in cpu.pairs()
    assert "cuda" in axes.profiles and "8b" in axes.profile("cuda").shapes


def test_recipes_are_data():
    recipes = load_axes().recipes
    assert recipes["plain"].bnb_config == {"load_in_4bit": True} and recipes["plain"].from_pretrained == {}
    seed = recipes["seed-fix"]
    assert seed.from_pretrained == {"device_map": "auto"}
    assert seed.bnb_config["bnb_4bit_compute_dtype"] == "torch.float16"
    assert recipes["cpu-offload"].requires == "gpu"


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["profiles"]["cpu"].update(bogus=1), "profiles.cpu.bogus: unknown key"),
    (lambda d: d["profiles"]["cpu"].update(timeout_s="ten"), "profiles.cpu.timeout_s: must be a positive integer"),
    (lambda d: d["profiles"]["cpu"].update(recipes=["plain", "nope"]), "profiles.cpu.recipes[1]: unknown 'nope'"),
    (lambda d: d["profiles"]["cpu"].update(bitsandbytes=[]), "profiles.cpu.bitsandbytes: is empty"),
    (lambda d: d["profiles"]["cpu"].update(bitsandbytes=["0.48.2", "0.48.2"]),
     "profiles.cpu.bitsandbytes[1]: duplicate '0.48.2'"),
    (lambda d: d["profiles"]["cpu"].update(bitsandbytes=["latest"]),
     "profiles.cpu.bitsandbytes[0]: 'latest' is not a version"),
    (lambda d: d["profiles"]["cpu"].update(install="ftp"), "profiles.cpu.install: is 'ftp'"),
    (lambda d: d["recipes"]["plain"].pop("bnb_config"), "recipes.plain.bnb_config: missing"),
    (lambda d: d["recipes"]["plain"].update(env={"A": 1}), "recipes.plain.env: values must be strings"),
    (lambda d: d["shapes"]["tiny"].update(hidden_size=-1), "shapes.tiny.hidden_size: must be a positive integer"),
    (lambda d: d["torch_builds"]["2.13.0+cpu"].update(version="two"), "is not a version"),
    (lambda d: d.update(schema=9), "schema: is 9"),
    (lambda d: d.update(baseline="nope"), "baseline: names 'nope', which is not a recipe"),
])
def test_each_defect_is_one_line_with_key_and_allowed(mutate, expected):
    data = base()
    mutate(data)
    line = error_for(data)
    assert expected in line
    assert line.startswith("axes.toml: ") and "allowed:" in line and "\n" not in line


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(AxesError, match="axes file not found"):
        load_axes(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[profiles\n")
    with pytest.raises(AxesError, match="not valid TOML"):
        load_axes(bad)


def test_profile_is_picked_by_name_env_or_gpu(monkeypatch):
    axes = load_axes()
    assert pick_profile(axes, "cuda").name == "cuda"
    assert pick_profile(axes, from_env({"BNB_MATRIX_PROFILE": "cuda-budgets"}).profile).name == "cuda-budgets"
    monkeypatch.setattr("matrix.measure.axes.gpu_present", lambda: True)
    assert pick_profile(axes).name == "cuda"
    monkeypatch.setattr("matrix.measure.axes.gpu_present", lambda: False)
    assert pick_profile(axes).name == "cpu"
    with pytest.raises(AxesError, match="unknown profile|profiles"):
        pick_profile(axes, "nope")


def test_cli_reports_a_bad_file_in_one_line_without_traceback(tmp_path):
    data = DEFAULT_AXES.read_text().replace('install = "online"\ntimeout_s = 300', 'install = "ftp"\ntimeout_s = 300')
    bad = tmp_path / "axes.toml"
    bad.write_text(data)
    proc = subprocess.run([sys.executable, "-m", "matrix", "axes", str(bad), "--profile", "cpu"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "profiles.cpu.install: is 'ftp'" in proc.stderr


def test_noxfile_lists_readable_ids_and_rejects_bad_axes(tmp_path):
    nox = Path(sys.executable).with_name("nox")
    env_ok = {"BNB_MATRIX_PROFILE": "cpu", "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([str(nox), "-l"], cwd=ROOT, capture_output=True, text=True, env=env_ok)
    assert "probe(torch='2.13.0+cpu', bnb='0.50.2')" in listed.stdout
    bad = tmp_path / "axes.toml"
    bad.write_text("schema = 1\n")
    proc = subprocess.run([str(nox), "-l"], cwd=ROOT, capture_output=True, text=True,
                          env={**env_ok, "BNB_MATRIX_AXES": str(bad)})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{bad}: (top).torch_builds: missing" in proc.stderr


def test_nox_install_posarg_is_checked_in_one_line(tmp_path):
    nox = Path(sys.executable).with_name("nox")
    proc = subprocess.run([str(nox), "--envdir", str(tmp_path / "envs"), "-s",
                           "probe(torch='2.13.0+cpu', bnb='0.50.2')", "--", "--install", "ftp"],
                          cwd=ROOT, capture_output=True, text=True,
                          env={"BNB_MATRIX_PROFILE": "cpu", "BNB_MATRIX_RESULTS": str(tmp_path),
                               "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--install 'ftp': allowed: online, offline, system" in proc.stderr


@pytest.mark.parametrize("table", ["recipes", "shapes", "torch_builds"])
def test_names_that_records_would_refuse_are_refused_here(tmp_path, table):
    """A name lands in every record; a record whose names are not identifiers is skipped on read, so the axes
    refuse the name first instead of measuring something the site would never show."""
    import tomllib

    from matrix.measure.axes import parse_axes

    data = tomllib.loads(DEFAULT_AXES.read_text())
    first = next(iter(data[table]))
    data[table]["my fix</b>"] = data[table][first]
    with pytest.raises(AxesError, match=r"my fix</b>.*not allowed"):
        parse_axes(data, tmp_path / "axes.toml")
