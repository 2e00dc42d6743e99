"""discover: PyPI's releases against the axes, the snapshot the site reads, and adding releases to a profile."""

from __future__ import annotations

import http.server
import shutil
from pathlib import Path

import pytest

from matrix.measure import discover
from matrix.measure.axes import DEFAULT_AXES, load_axes
from matrix.errors import UserError


def pypi(*versions: str, yanked: tuple[str, ...] = (), empty: tuple[str, ...] = ()) -> dict:
    """PyPI-shaped JSON: one file per release, uploaded in version order."""
    return {"releases": {v: [] if v in empty else [{"upload_time": f"2026-01-{i + 1:02d}T00:00:00",
                                                     "yanked": v in yanked}]
                         for i, v in enumerate(versions)}}


def test_releases_skip_prereleases_and_empty_and_flag_yanked():
    found = discover.releases("bitsandbytes", pypi("0.49.0", "0.50.0rc1", "0.49.2", "0.51.0", "0.48.0",
                                                   yanked=("0.49.2",), empty=("0.48.0",)))
    assert [r.version for r in found] == ["0.49.0", "0.49.2", "0.51.0"]
    assert [r.version for r in found if r.yanked] == ["0.49.2"]
    # a yanked release is never a line head: 0.49.0 stands for its line
    assert [r.version for r in discover.line_heads(found)] == ["0.49.0", "0.51.0"]


def test_missing_reports_new_lines_and_newer_patches_not_old_gaps(tmp_path: Path):
    axes = load_axes(DEFAULT_AXES)
    newest = max(axes_v for p in axes.profiles.values() for axes_v in p.bitsandbytes)
    found = discover.releases("bitsandbytes", pypi("0.30.0", "0.48.3", newest, "9.1.0", "9.1.1", "9.2.0"))
    lacking = [r.version for r in discover.missing(axes, "bitsandbytes", found)]
    assert lacking == ["0.48.3", "9.1.1", "9.2.0"]  # 0.30 is an old gap left out on purpose


def test_snapshot_round_trip_and_report(tmp_path: Path):
    axes = load_axes(DEFAULT_AXES)
    data = discover.snapshot(axes, fetch=lambda url, deadline: pypi("0.43.3", "2.6.0", "4.57.6", "99.0.0"))
    assert all(info["newest"] == "99.0.0" for info in data["packages"].values())
    path = discover.write_snapshot(data, tmp_path)
    assert discover.read_snapshot(tmp_path) == data
    assert "not in the axes yet: 99.0.0" in discover.report(data)
    path.write_text("{torn")
    assert discover.read_snapshot(tmp_path) is None  # the site goes on without it


def test_add_missing_edits_axes_text_and_it_still_validates(tmp_path: Path, monkeypatch):
    path = tmp_path / "axes.toml"
    shutil.copy(DEFAULT_AXES, path)
    axes = load_axes(path)
    monkeypatch.setattr(discover, "torch_variant", lambda version, uv: "cu999")
    per_package = {"torch": pypi("2.6.0", "99.0.0"), "bitsandbytes": pypi("0.43.3", "99.0.0"),
                   "transformers": pypi("4.57.6", "99.0.0")}
    data = discover.snapshot(axes, fetch=lambda url, deadline: per_package[url.split("/")[-2]])
    added = discover.add_missing(axes, data, "cpu-wide", uv="uv")
    assert added == ["torch 99.0.0", "bitsandbytes 99.0.0", "transformers 99.0.0"]
    again = load_axes(path)
    wide = again.profile("cpu-wide")
    assert wide.torch[-1] == "99.0.0" and wide.bitsandbytes[-1] == "99.0.0" and wide.transformers[-1] == "99.0.0"
    assert again.torch_builds["99.0.0"].pypi and again.torch_builds["99.0.0"].variant == "cu999"
    assert again.profile("cpu").bitsandbytes == load_axes(DEFAULT_AXES).profile("cpu").bitsandbytes
    assert "# The declared matrix" in path.read_text()  # comments survive


def test_add_to_unknown_profile_is_one_line():
    with pytest.raises(UserError, match="no such profile"):
        discover.add_to_list(DEFAULT_AXES.read_text(), "nope", "torch", "1.0")


# --------------------------------------------------------- issue 24: a broken or slow PyPI is one line, in time
class _PyPI(http.server.BaseHTTPRequestHandler):
    """A PyPI that misbehaves by path: slow (a byte every 0.2 s), cut (Content-Length promises more), not JSON,
    a server error, JSON without releases, or good."""

    def do_GET(self) -> None:  # noqa: N802 - the handler's name
        import json
        import time

        kind = self.path.strip("/").split("/")[0]
        body = json.dumps(pypi("0.45.5", "0.48.2")).encode()
        if kind == "error":
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if kind == "cut":
            self.send_header("Content-Length", str(len(body) + 5000))
        elif kind == "notjson":
            body = b"<html>maintenance</html>"
        elif kind == "noreleases":
            body = b'{"info": {}}'
        self.end_headers()
        if kind == "slow":
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PyPI)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(("kind", "words"), [("cut", "IncompleteRead"), ("notjson", "JSONDecodeError"),
                                             ("error", "HTTPError"), ("noreleases", "no 'releases' table")])
def test_a_broken_pypi_answer_is_one_line(server, kind, words):
    with pytest.raises(UserError) as info:
        discover.fetch_json(f"{server}/{kind}/json")
    assert words in info.value.line() and "\n" not in info.value.line()


def test_a_slow_answer_stops_at_the_deadline(server):
    import time

    started = time.monotonic()
    with pytest.raises(UserError, match="still arriving|timed out|no time left"):
        discover.fetch_json(f"{server}/slow/json", deadline=time.monotonic() + 1.5, timeout=1.0)
    assert time.monotonic() - started < 4


def test_snapshot_has_one_deadline_for_all_packages_and_one_line_per_failure(server, monkeypatch):
    """Each package failing gets its line; together they never run past the one deadline."""
    import time

    axes = load_axes()
    monkeypatch.setattr(discover, "PYPI_JSON", server + "/slow/{name}")
    started = time.monotonic()
    with pytest.raises(UserError) as info:
        discover.snapshot(axes, deadline_s=2.0)
    assert time.monotonic() - started < 5
    lines = info.value.line().splitlines()
    assert "3 of 3 package(s) not read; nothing written" in lines[0]
    assert [ln.split("/slow/")[1].split(":")[0] for ln in lines[1:]] == ["torch", "bitsandbytes", "transformers"]


def test_discover_on_a_broken_pypi_exits_in_lines_not_a_traceback(server, tmp_path):
    import os
    import subprocess
    import sys

    code = ("import sys; from matrix.measure import discover; discover.PYPI_JSON = sys.argv[1]; "
            "from matrix.cli import main; sys.exit(main(['discover', '--results', sys.argv[2]]))")
    proc = subprocess.run([sys.executable, "-c", code, server + "/notjson/{name}", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
                          env={**os.environ})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 4 and not (tmp_path / "releases.json").exists()


def test_a_full_disk_when_writing_the_snapshot_names_the_file(tmp_path, monkeypatch):
    import errno

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(UserError, match=r"releases.json: cannot write the snapshot \(No space left on device\)"):
        discover.write_snapshot({"fetched": "x", "packages": {}}, tmp_path)
