"""Issue 17, provoked for real: a build killed (SIGKILL, SIGTERM) or failing mid-mkdocs keeps the previous site and
leaves no mkdocs running; two builds at once do not share a work folder; an unreadable or empty results folder and
an unreadable file; a run id that points out of results/; `axes` on a folder; `explain` on bad stdin and a full or
closed stdout; a taken port for `serve`, and serve stopped with SIGTERM leaving the port free."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import nox_command

from matrix.measure import jobs as measure
from matrix.publish import sitebuild
from matrix.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "records.jsonl"
# As root, permissions do not stop reads: drop the capabilities that bypass them for the child.
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def matrix(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matrix", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, **kw)


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT ignored: without
    # this, a test run from a background job sent Ctrl-C to a build that could not hear it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "matrix", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)  # noqa: PLW1509 - the test starts no threads


def _pending(pid: int) -> int:
    """The signals pending for process `pid` (its own and its thread group's), as a bit mask."""
    try:
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
    except OSError:
        return 0
    return int(fields.get("SigPnd", "0"), 16) | int(fields.get("ShdPnd", "0"), 16)


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def snapshot(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*") if p.is_file()}


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results"
    path.mkdir()
    shutil.copy(FIXTURE, path / "records.jsonl")
    return path


@pytest.fixture(scope="module")
def old_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished site of the fixture records, copied fresh for each test that would damage it."""
    base = tmp_path_factory.mktemp("old")
    (base / "results").mkdir()
    shutil.copy(FIXTURE, base / "results" / "records.jsonl")
    sitebuild.build_site(base / "results", base / "public", quiet=True)
    return base / "public"


def _wait_for_mkdocs(out: Path, proc: subprocess.Popen, timeout: float = 120) -> list[int]:
    """Wait until mkdocs is writing the new site into the staging folder beside `out` (some files written, the
    build not finished); return the pids of the mkdocs processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for staging in out.parent.glob(f".{out.name}.building-*"):
            pids = processes_mentioning(str(staging))
            if pids and any(p.is_file() for p in (staging / "site").rglob("*")):
                return pids
        time.sleep(0.005)
    raise AssertionError(f"never caught mkdocs mid-build: {proc.poll()} {proc.stderr.read() if proc.stderr else ''}")


def _gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if Path(f"/proc/{p}").exists() and
                Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]:
            return True
        time.sleep(0.2)
    return False


# ----------------------------------------------------------------------------- (3) interrupted builds keep the site
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_build_killed_during_mkdocs_keeps_the_previous_site_and_leaves_no_mkdocs(sig, old_site, results,
                                                                                   tmp_path):
    out = tmp_path / "public"
    shutil.copytree(old_site, out)
    before = snapshot(out)
    assert len(before) > 50
    (results / "more.jsonl").write_text(FIXTURE.read_text().replace('"run_id": "', '"run_id": "x'))
    proc = start("site", "--results", str(results), "--out", str(out))
    mkdocs = _wait_for_mkdocs(out, proc)
    # Deterministic: mkdocs is frozen, so it cannot finish (and the site be swapped) before the build has its
    # signal; it is let go once the build has asked it to stop (SIGTERM pending) or has gone.
    for pid in mkdocs:
        os.kill(pid, signal.SIGSTOP)
    os.kill(proc.pid, sig)  # only the build process: its mkdocs child must not live on
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and \
            not all(_pending(pid) & (1 << (signal.SIGTERM - 1)) for pid in mkdocs if Path(f"/proc/{pid}").exists()):
        time.sleep(0.01)
    for pid in mkdocs:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    _, stderr = proc.communicate(timeout=60)
    assert _gone(mkdocs), "mkdocs outlived the build it belonged to"
    assert snapshot(out) == before, "the previous site was changed"
    if sig != signal.SIGKILL:  # handled: interrupted, one line, temporary folders removed
        assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
        assert not list(tmp_path.glob(".public.building-*"))
    else:  # the next build removes what the killed one left, and replaces the site whole
        matrix("site", "--results", str(results), "--out", str(out)).check_returncode()
        assert not list(tmp_path.glob(".public.building-*")) and (out / "index.html").is_file()


def test_a_failed_mkdocs_build_keeps_the_previous_site(old_site, results, tmp_path, monkeypatch):
    out = tmp_path / "public"
    shutil.copytree(old_site, out)
    before = snapshot(out)
    broken = tmp_path / "mkdocs.yml"  # the real config with a Markdown extension that does not exist
    broken.write_text(f'INHERIT: "{sitebuild.ROOT_CONFIG}"\nmarkdown_extensions:\n  - no_such_extension\n')
    monkeypatch.setattr(sitebuild, "ROOT_CONFIG", broken)
    with pytest.raises(UserError, match="mkdocs build.*failed"):
        sitebuild.build_site(results, out, quiet=True)
    assert snapshot(out) == before and not list(tmp_path.glob(".public.building-*"))


# -------------------------------------------------------------------------------- (4) no shared work folder
def test_two_builds_at_once_with_different_inputs_do_not_mix(results, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    before = set(sitebuild.GENERATED.glob("build-*")) if sitebuild.GENERATED.exists() else set()
    full = start("site", "--results", str(results), "--out", str(tmp_path / "full"))
    none = start("site", "--results", str(empty), "--out", str(tmp_path / "none"))
    for proc in (full, none):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    home_full = (tmp_path / "full" / "index.html").read_text()
    home_none = (tmp_path / "none" / "index.html").read_text()
    assert "No measurements yet" in home_none and "No measurements yet" not in home_full
    assert (tmp_path / "full" / "runners").is_dir() and not list((tmp_path / "none" / "cells").glob("*/"))
    assert set(sitebuild.GENERATED.glob("build-*")) <= before, "a per-build work folder was left behind"


def test_generated_config_uses_relative_paths(tmp_path):
    config = sitebuild.write_config(tmp_path / "work", tmp_path / "work" / "docs", hook=True).read_text()
    assert 'docs_dir: "docs"' in config and str(tmp_path) not in config.split("docs_dir")[1]
    assert "INHERIT: \"../" in config and "serve_hook.py" in config


# --------------------------------------------------------------------------------------- (5) silent emptiness
def test_an_unreadable_results_folder_is_one_line_and_a_failure(results, tmp_path):
    results.chmod(0)
    try:
        proc = subprocess.run([*NO_DAC, sys.executable, "-m", "matrix", "site", "--results", str(results),
                               "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    finally:
        results.chmod(0o755)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "results directory cannot be read" in proc.stderr


def test_an_unreadable_file_is_reported_with_its_path_and_skipped(results, tmp_path):
    bad = results / "locked.jsonl"
    bad.write_text(FIXTURE.read_text())
    bad.chmod(0)
    proc = subprocess.run([*NO_DAC, sys.executable, "-m", "matrix", "site", "--results", str(results),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"warning: {bad}: cannot be read (Permission denied); skipped" in proc.stderr
    assert "1 problem(s)" in proc.stdout and (tmp_path / "out" / "runners").is_dir()


def test_an_empty_results_folder_warns_and_builds_the_empty_site(tmp_path):
    (tmp_path / "results").mkdir()
    proc = matrix("site", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0 and "holds no usable records" in proc.stderr
    assert "No measurements yet" in (tmp_path / "out" / "index.html").read_text()


# ------------------------------------------------------------------------------ (6) run id from the environment
@pytest.mark.parametrize("run_id", ["../x", "/tmp/x", "a/b", ".hidden", "a..b", "", "x" * 200, "ok\nno"])
def test_a_run_id_that_is_not_a_plain_name_is_refused(run_id):
    with pytest.raises(UserError, match="not a usable run id"):
        measure.check_run_id(run_id)
    assert measure.check_run_id("20260101T000000Z-h100-sm90-1a2b")


def test_nox_refuses_a_run_id_leading_out_of_results(tmp_path):
    results = tmp_path / "a" / "results"
    env = {**os.environ, "BNB_MATRIX_RUN_ID": "../x", "BNB_MATRIX_RESULTS": str(results)}
    proc = subprocess.run(nox_command("-s", "probe"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "BNB_MATRIX_RUN_ID: '../x' is not a usable run id" in proc.stderr
    assert not list(tmp_path.rglob("*.jsonl"))


def test_measure_pair_refuses_a_bad_run_id_before_writing(tmp_path):
    from matrix.measure.axes import load_axes

    axes = load_axes()
    profile = axes.profile("cpu")
    with pytest.raises(UserError, match="run id"):
        measure.measure_pair(Path(sys.executable), axes, profile, profile.torch[0], profile.bitsandbytes[0],
                             tmp_path / "results", "../escaped", installer="pip")
    assert not list(tmp_path.rglob("*.jsonl"))


# ------------------------------------------------------------------------------------- (9) smaller: the CLI
def test_axes_on_a_folder_or_unreadable_file_is_one_line(tmp_path):
    proc = matrix("axes", str(tmp_path))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and "cannot be read (Is a directory)" in proc.stderr
    locked = tmp_path / "axes.toml"
    locked.write_text((ROOT / "matrix" / "measure" / "axes.toml").read_text())
    locked.chmod(0)
    proc = subprocess.run([*NO_DAC, sys.executable, "-m", "matrix", "axes", str(locked)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and "Permission denied" in proc.stderr


def test_explain_on_non_utf8_stdin_and_empty_input():
    proc = subprocess.run([sys.executable, "-m", "matrix", "explain"], cwd=ROOT, capture_output=True,
                          input=b"\xff\xfe\x80 torch.OutOfMemoryError: CUDA out of memory. "
                                b"Tried to allocate 2.00 GiB\n")
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr and b"cuda-oom" in proc.stdout
    empty = subprocess.run([sys.executable, "-m", "matrix", "explain"], cwd=ROOT, capture_output=True, input=b"  \n")
    assert empty.returncode == 2 and b"no input" in empty.stderr and b"Traceback" not in empty.stderr


@pytest.mark.parametrize("command", [["explain", "CUDA out of memory"], ["axes"]])
def test_a_full_or_closed_stdout_is_one_line_not_a_traceback(command):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "matrix", *command], cwd=ROOT, stdout=full,
                              stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "bnb-matrix: cannot write to stdout (No space left on device)"
    closed = subprocess.run(f"{sys.executable} -m matrix {' '.join(repr(c) for c in command)} >&-", shell=True,
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert "Traceback" not in closed.stderr and "stdout is closed" in closed.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("serve never listened")


def _port_free(port: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sitebuild.check_port(f"127.0.0.1:{port}")
            return True
        except UserError:
            time.sleep(0.2)
    return False


def test_serve_on_a_taken_port_fails_and_sigterm_stops_mkdocs(results):
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    first = start("site", "--serve", "--results", str(results), "--dev-addr", addr)
    try:
        _wait_listening(port, first)
        second = matrix("site", "--serve", "--results", str(results), "--dev-addr", addr)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert second.stderr.strip().count("\n") == 0 and f"{addr}: cannot serve there" in second.stderr
        mkdocs = processes_mentioning(f"-a {addr}")
        assert mkdocs
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        assert _gone(mkdocs) and _port_free(port), "mkdocs serve outlived SIGTERM"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


@pytest.mark.slow
def test_nox_serve_stopped_with_sigterm_leaves_no_mkdocs_on_the_port(results):
    """`nox -s serve` (nox, then python -m matrix, then mkdocs): SIGTERM to nox alone frees the port."""
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    env = {**os.environ, "BNB_MATRIX_RESULTS": str(results)}
    nox = subprocess.Popen(nox_command("-s", "serve", "--", "--dev-addr", addr),
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        _wait_listening(port, nox, timeout=600)
        mkdocs = processes_mentioning(f"-a {addr}")
        nox.send_signal(signal.SIGTERM)
        nox.wait(timeout=60)
        assert _gone(mkdocs, timeout=30) and _port_free(port), "a child of nox -s serve kept the port"
    finally:
        if nox.poll() is None:
            os.killpg(nox.pid, signal.SIGKILL)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('index_url = "https://download.pytorch.org/whl/cpu"', 'index_url = "not a url"', "is not an http(s) URL"),
    ("bnb_config = { load_in_4bit = true }", 'bnb_config = { load_in_4bit = "yes please" }',
     "load_in_4bit: must be true/false, got 'yes please'"),
    ("bnb_config = { load_in_4bit = true }", "bnb_config = { load_in_4bits = true }",
     "did you mean 'load_in_4bit'?"),
    ('bitsandbytes = ["', 'bitsandbytes = ["0.50.2 ", "', "has spaces around it"),
    ("[shapes.tiny]\n", "[shapes.tiny]\ndescripton = 'x'\n", "unknown key (did you mean 'description'?)"),
])
def test_axes_values_are_checked_in_one_line(tmp_path, old, new, message):
    text = (ROOT / "matrix" / "measure" / "axes.toml").read_text()
    assert old in text, old
    path = tmp_path / "axes.toml"
    path.write_text(text.replace(old, new, 1))
    proc = matrix("axes", str(path), "--profile", "cpu")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


# ----------------------------------------------------------------------------- issue 24: the smaller promises
def test_out_refuses_a_folder_it_did_not_build_and_deletes_nothing(results, tmp_path):
    """An `index.html` no longer makes a folder ours: without the marker a build refuses it in one line."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "index.html").write_text("my own page")
    (out / "notes.txt").write_text("keep me")
    proc = matrix("site", "--results", str(results), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert ".bnb-matrix-site" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_out_takes_a_new_an_empty_or_its_own_folder_and_marks_it(old_site, results, tmp_path):
    from matrix.publish import safeio

    assert (old_site / safeio.MARKER).is_file()  # every site swap_in puts in place is marked
    empty = tmp_path / "empty"
    empty.mkdir()
    sitebuild.check_out_dir(empty)
    sitebuild.check_out_dir(tmp_path / "new")
    sitebuild.check_out_dir(old_site)
    unmarked = tmp_path / "unmarked"
    shutil.copytree(old_site, unmarked)
    (unmarked / safeio.MARKER).unlink()
    with pytest.raises(UserError, match="not a previous site build"):
        safeio.swap_in(empty, unmarked)  # the swap itself refuses, whoever calls it
    assert snapshot(unmarked) == {k: v for k, v in snapshot(old_site).items() if k != safeio.MARKER}


def test_a_results_folder_readable_but_not_searchable_is_one_line(results, tmp_path):
    results.chmod(0o444)
    try:
        proc = subprocess.run([*NO_DAC, sys.executable, "-m", "matrix", "site", "--results", str(results),
                               "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    finally:
        results.chmod(0o755)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "cannot be read or searched" in proc.stderr


def test_a_sub_folder_readable_but_not_searchable_is_a_warning_and_the_build_goes_on(results, tmp_path):
    locked = results / "old"
    locked.mkdir()
    shutil.copy(FIXTURE, locked / "more.jsonl")
    locked.chmod(0o444)
    try:
        proc = subprocess.run([*NO_DAC, sys.executable, "-m", "matrix", "site", "--results", str(results),
                               "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"warning: {locked}: folder cannot be read (Permission denied)" in proc.stderr


def test_a_full_disk_in_the_work_folder_names_the_folder_not_stdout(results, tmp_path, monkeypatch, capsys):
    """A write that hits a full disk names no file; it used to be reported as 'cannot write to stdout'."""
    import errno

    from matrix import cli
    from matrix.publish import render

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(render, "render_site", full)
    code = cli.main(["site", "--results", str(results), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "stdout" not in err and "No space left on device" in err
    assert "site/generated/build-" in err and "free space there" in err


@pytest.mark.parametrize("addr", ["127.0.0.1:99999", "127.0.0.1:0", "localhost", "127.0.0.1:80 80"])
def test_serve_dev_addr_is_checked_in_one_line(results, addr):
    proc = matrix("site", "--serve", "--results", str(results), "--dev-addr", addr)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not host:port with a port from 1 to 65535" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("log", "kind"), [
    ("pip._vendor.urllib3.exceptions.ProtocolError: ('Connection broken: IncompleteRead(1024 bytes read, "
     "4096 more expected)', IncompleteRead(1024 bytes read, 4096 more expected))", "DownloadCorrupt"),
    ("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n    torch from https://x "
     "Expected sha256 abc\n Got def", "DownloadCorrupt"),
    ("error: Failed to install: torch-2.6.0.whl\n  Caused by: No space left on device (os error 28)", "DiskFull"),
    ("ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device", "DiskFull"),
    ("Downloading torch (800MiB)\n" + "\n".join(__import__("matrix.measure.install", fromlist=["x"])
                                                  .killed_line(-9)), "InstallerKilled"),
    ("Collecting torch\n" + "\n".join(__import__("matrix.measure.install", fromlist=["x"]).killed_line(137)),
     "InstallerKilled"),
    ("ERROR: No matching distribution found for bitsandbytes==9.9", "NoMatchingDistribution"),
])
def test_transient_install_failures_are_typed_to_be_retried(log, kind):
    from matrix.measure.install import TRANSIENT, install_failure_type

    assert install_failure_type(log) == kind
    assert (kind in TRANSIENT) == (kind != "NoMatchingDistribution")


def test_a_transient_install_failure_is_retried_and_decides_no_verdict(tmp_path, monkeypatch):
    """measure_pair writes such a record without a fingerprint (the next run measures the job again), and the
    site never takes it for a verdict."""
    from matrix.measure import records
    from matrix.measure.axes import load_axes
    from matrix.publish import aggregate

    axes = load_axes()
    profile = axes.profile("cpu")
    log = "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"
    monkeypatch.setattr(measure, "install_cell", lambda *a, **k: (False, log))
    written = measure.measure_pair(Path(sys.executable), axes, profile, profile.torch[0], profile.bitsandbytes[0],
                                   tmp_path / "results", "20260101T000000Z-test-0001", installer="pip",
                                   log=lambda *_: None)
    assert written and all(r["error_type"] == "DiskFull" and r["fingerprint"] == "" for r in written)
    assert measure.measured_fingerprints(tmp_path / "results") == set()
    found, problems = records.read_results(tmp_path / "results")
    agg = aggregate.aggregate(found, problems, use_signatures=False)
    assert set(agg.verdicts["verdict"]) == set() and agg.latest.empty


@pytest.mark.parametrize(("old", "new", "message"), [
    ('bitsandbytes = ["', 'bitsandbytes = ["1!0.45.5", "', "is not a version a record can name"),
    ("budgets_gib = [6, 8, 12]", "budgets_gib = [6, nan]", "must be a list of budgets in GiB"),
    ("budgets_gib = [6, 8, 12]", "budgets_gib = [6, 1e9]", "must be a list of budgets in GiB"),
    ("[recipes.plain]", '[recipes."index.md"]\ntitle = "x"\ndescription = "x"\nbnb_config = { load_in_4bit = true }'
                        "\n\n[recipes.plain]", "a name the site uses for its own files"),
])
def test_axes_refuse_what_the_reader_would_refuse(tmp_path, old, new, message):
    text = (ROOT / "matrix" / "measure" / "axes.toml").read_text()
    assert old in text, old
    path = tmp_path / "axes.toml"
    path.write_text(text.replace(old, new, 1))
    proc = matrix("axes", str(path), "--profile", "cpu")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


def test_a_run_id_the_reader_would_refuse_is_refused_before_measuring():
    with pytest.raises(UserError, match="not a usable run id"):
        measure.check_run_id("r" * 85)
    with pytest.raises(UserError, match="not a usable run id"):
        measure.check_run_id("index.md")
    assert len(measure.new_run_id("x" * 64)) <= 64 and measure.check_run_id(measure.new_run_id("x" * 64))


def test_a_full_disk_beside_the_output_names_that_path(results, tmp_path, monkeypatch, capsys):
    """ENOSPC where the new site is built (an OSError naming its path) is one line with the path."""
    import errno

    from matrix import cli
    from matrix.publish import safeio

    def full(command, cwd, env, capture):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".out.building-1"))

    monkeypatch.setattr(safeio, "run_child", full)
    code = cli.main(["site", "--results", str(results), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"{tmp_path / '.out.building-1'}: No space left on device" in err
