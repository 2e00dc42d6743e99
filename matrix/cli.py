"""Command line: `python -m matrix {site,explain,check,doctor,axes,discover}`.

A `UserError` (bad input the user can mend) prints one line and exits with its code; tracebacks are for our bugs.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from matrix.errors import UserError
from matrix.measure.settings import from_env


def _site(args: argparse.Namespace) -> int:
    from matrix.publish.sitebuild import build_site

    if args.serve:
        from matrix.publish.sitebuild import serve_site

        serve_site(Path(args.results), dev_addr=args.dev_addr, axes_path=args.settings.axes)
        return 0
    report = build_site(Path(args.results), Path(args.out), strict=not args.no_strict, axes_path=args.settings.axes)
    print(report)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from matrix.diagnose.explain import run_explain

    if args.text:
        text = " ".join(args.text)
    else:  # bytes, so a non-UTF-8 paste is read (undecodable bytes become U+FFFD) instead of failing
        text = sys.stdin.buffer.read().decode("utf-8", "replace") if sys.stdin is not None else ""
    if not text.strip():
        raise UserError("explain", "no input", "paste a traceback on stdin, or pass the error text as arguments")
    return run_explain(text, as_json=args.json, markdown=args.markdown)


def _check(args: argparse.Namespace) -> int:
    from matrix.check.run import run_check

    flags = {k: getattr(args, k) or "" for k in ("gpu", "torch", "bnb", "transformers", "os", "machine", "glibc",
                                                  "driver", "cuda_runtime")}
    given = any(flags.values()) or args.env
    text = ""
    if not given:  # no flags: the setup is a paste on stdin
        if sys.stdin is not None and sys.stdin.isatty():
            print("bnb-matrix: paste `python doctor.py` (or `python -m bitsandbytes`, nvidia-smi, pip list) output, "
                  "then Ctrl-D; or pass --gpu/--torch/--bnb", file=sys.stderr)
        text = sys.stdin.buffer.read().decode("utf-8", "replace") if sys.stdin is not None else ""
    from matrix.publish.checkpage import measured_from_results

    return run_check(flags, args.env, text, as_json=args.json, markdown=args.markdown,
                     measured=measured_from_results(Path(args.results)))


def _doctor(args: argparse.Namespace) -> int:
    from matrix.diagnose.doctor import run_doctor

    return run_doctor(shape=args.shape, recipes=args.recipe, as_json=args.json, timeout_s=args.timeout,
                      settings=args.settings)


def _axes(args: argparse.Namespace) -> int:
    from matrix.measure.axes import load_axes, pick_profile

    axes = load_axes(args.path or args.settings.axes)
    profile = pick_profile(axes, args.profile or args.settings.profile)
    if args.json:
        print(json.dumps({"profile": profile.name, "pairs": profile.pairs(), "recipes": profile.recipes,
                          "shapes": profile.shapes, "transformers": profile.transformers}))
    else:
        print(f"{axes.path}: ok; profile {profile.name}: {len(profile.pairs())} pair(s) x "
              f"{len(profile.transformers)} transformers x {len(profile.recipes)} recipe(s) x "
              f"{len(profile.shapes)} shape(s)")
    return 0


def _discover(args: argparse.Namespace) -> int:
    from matrix.measure import discover
    from matrix.measure.axes import load_axes
    from matrix.measure.install import uv_binary

    axes = load_axes(args.axes or args.settings.axes)
    data = discover.snapshot(axes)
    print(discover.report(data))
    print(f"snapshot: {discover.write_snapshot(data, Path(args.results))}")
    if args.add:
        added = discover.add_missing(axes, data, args.add, uv_binary())
        load_axes(axes.path)  # the edited file must still validate
        print(f"added to profile {args.add}: {', '.join(added) or 'nothing'}")
    return 0


def dev_addr(text: str) -> str:
    """`--dev-addr`: host:port with a port from 1 to 65535 (argparse prints the ValueError as one line)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port with a port from 1 to 65535 (127.0.0.1:8000)")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m matrix", description="bnb-matrix: measured 4-bit loading")
    sub = parser.add_subparsers(dest="command", required=True)

    site = sub.add_parser("site", help="aggregate results, render pages, build the static site")
    site.add_argument("--results", default="results", help="folder of *.jsonl records (default: results)")
    site.add_argument("--out", default="public", help="where the built site goes (default: public)")
    site.add_argument("--no-strict", action="store_true", help="do not pass --strict to mkdocs")
    site.add_argument("--serve", action="store_true", help="generate pages, then run mkdocs serve")
    site.add_argument("--dev-addr", default="127.0.0.1:8000", type=dev_addr,
                      help="host:port for --serve (default: 127.0.0.1:8000)")
    site.set_defaults(func=_site)

    explain = sub.add_parser("explain", help="map an error text or pasted traceback to its signature page")
    explain.add_argument("text", nargs="*", help="error text (default: read a whole traceback from stdin)")
    explain.add_argument("--json", action="store_true",
                         help='print {"slug", "title", "url", "specific"} ("specific": false for a fallback cause)')
    explain.add_argument("--markdown", action="store_true",
                         help="print a Markdown reply to paste into an issue (cause, fix, link per cause present)")
    explain.set_defaults(func=_explain)

    check = sub.add_parser("check", help="will 4-bit loading work on this setup? (flags, or a paste on stdin)")
    check.add_argument("--gpu", help="a GPU name (T4, RTX 5090, A100, Jetson AGX Orin) or sm_XX")
    check.add_argument("--torch", help="a torch build: 2.6.0, 2.6.0+cu124, an NVIDIA Jetson build")
    check.add_argument("--bnb", help="bitsandbytes version (default: the newest release read)")
    check.add_argument("--transformers", help="transformers version")
    check.add_argument("--os", help="linux or windows (default: linux)")
    check.add_argument("--machine", help="x86_64 or aarch64 (default: x86_64)")
    check.add_argument("--glibc", help="the C library version (ldd --version), like 2.31")
    check.add_argument("--driver", help="the NVIDIA driver version (nvidia-smi), like 550.54.15")
    check.add_argument("--cuda-runtime", help="the CUDA runtime on the system, like 12.2 (bitsandbytes 0.39-0.40 "
                       "pick their library by it, not by torch)")
    check.add_argument("--env", action="append", metavar="NAME=VALUE", help="an environment setting, like "
                       "BNB_CUDA_VERSION=124 (repeatable)")
    check.add_argument("--json", action="store_true", help='print the answer as JSON (key "verdict")')
    check.add_argument("--markdown", action="store_true", help="print a Markdown reply to paste into an issue")
    check.add_argument("--results", default="results", help="folder of measured records (default: results)")
    check.set_defaults(func=_check)

    doctor = sub.add_parser("doctor", help="probe the installed torch/bitsandbytes/transformers with every recipe")
    doctor.add_argument("--shape", default="tiny", help="model shape from the axes file (default: tiny)")
    doctor.add_argument("--recipe", action="append", help="only this recipe (repeatable)")
    doctor.add_argument("--timeout", type=int, default=300, help="seconds per recipe (default: 300)")
    doctor.add_argument("--json", action="store_true", help="print the records as JSON")
    doctor.set_defaults(func=_doctor)

    axes = sub.add_parser("axes", help="validate the axes file and show the picked profile")
    axes.add_argument("path", nargs="?", help="axes TOML file (default: matrix/axes.toml)")
    axes.add_argument("--profile", help="profile name (default: cuda if a GPU is present, else cpu)")
    axes.add_argument("--json", action="store_true")
    axes.set_defaults(func=_axes)

    disc = sub.add_parser("discover", help="list PyPI releases the axes lack (and yanked ones); --add a profile")
    disc.add_argument("--add", metavar="PROFILE", help="add the missing releases to this profile in the axes file")
    disc.add_argument("--axes", help="axes TOML file (default: matrix/axes.toml)")
    disc.add_argument("--results", default="results", help="where releases.json goes (default: results)")
    disc.set_defaults(func=_discover)
    return parser


def _flush_stdout() -> int:
    """Flush stdout now, so a full disk or closed pipe is one line here and not a traceback at exit. 1 when stdout
    cannot be written (reported on stderr), else 0."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        return _stdout_failed(exc)
    return 0


def _stdout_failed(exc: OSError) -> int:
    """Report a failed write to stdout in one line (none for a reader that left, `| head`) and point stdout at
    /dev/null so the interpreter's own final flush succeeds. 1 for a real failure, 0 for a closed pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    if isinstance(exc, BrokenPipeError):
        return 0
    print(f"bnb-matrix: cannot write to stdout ({exc.strerror or exc})", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.settings = from_env(os.environ)  # the only place the command line reads BNB_MATRIX_* variables
    if sys.stdout is None:  # started with stdout closed (`>&-`): say so, run anyway, the exit status still counts
        print("bnb-matrix: stdout is closed; the output is discarded", file=sys.stderr)
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    try:
        code = args.func(args)
        return _flush_stdout() or code
    except OSError as exc:
        if exc.filename is None and exc.errno in (errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT):
            return _stdout_failed(exc) or 141  # a write to stdout failed (print names no file)
        if exc.filename is not None and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            print(f"bnb-matrix: {exc.filename}: {exc.strerror} (free space or fix permissions there)",
                  file=sys.stderr)  # the machine, not our bug: one line naming the path
            return 1
        raise
    except UserError as exc:
        print(f"bnb-matrix: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bnb-matrix: interrupted", file=sys.stderr)
        return 130
