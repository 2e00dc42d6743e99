"""The tree shows the parts (issue 20): measuring, predicting, diagnosing errors, publishing. Arrows between parts run
one way, the probe's side stays stdlib-only, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "matrix"
# what each part may import besides itself and the loose modules (cli excepted: it knows all parts)
MAY_READ = {
    "measure": set(),
    "predict": {"measure"},
    "diagnose": {"measure"},
    "check": {"measure", "predict", "diagnose"},
    "publish": {"measure", "predict", "diagnose", "check"},
}
PROBE_SIDE = ("measure/probe.py", "measure/checkpoint.py", "measure/checks.py", "measure/gpu_memory.py",
              "measure/records.py", "measure/schema.py", "measure/runner.py", "measure/prequant.py")


def imported_modules(path: Path) -> list[tuple[str, bool]]:
    """(module, at top level) for every `import matrix...` / `from matrix... import ...` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            out += [(n, id(node) in top) for n in [node.module, *names]]
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
    return out


def part_of(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if len(bits) > 2 and bits[0] == "matrix" and bits[1] in MAY_READ else None


def test_arrows_between_parts_run_one_way():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        here = path.relative_to(PACKAGE).parts
        if len(here) < 2:
            continue  # loose modules (cli knows every part)
        for module, _ in imported_modules(path):
            there = part_of(module)
            if there and there != here[0] and there not in MAY_READ[here[0]]:
                wrong.append(f"{'/'.join(here)} imports {module}")
    assert not wrong, wrong


def test_nothing_reads_publish_but_the_cli():
    readers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.parent.name != "publish" and p.name not in ("cli.py",)
               and any(m.startswith("matrix.publish") for m, _ in imported_modules(p))]
    assert not readers


def test_the_probe_side_imports_only_the_stdlib_and_itself_at_module_level():
    import sys

    for rel in PROBE_SIDE:
        path = PACKAGE / rel
        if not path.exists():
            continue
        for module, at_top in imported_modules(path):
            root = module.split(".")[0]
            if at_top and root not in ("matrix", "__future__"):
                assert root in sys.stdlib_module_names, f"{rel} imports {module} at module level"
            if at_top and root == "matrix":
                target = module.removeprefix("matrix.").replace(".", "/")
                if (PACKAGE / target).is_dir():
                    assert not (PACKAGE / target / "__init__.py").read_text().strip(), f"{target}/__init__.py"
                    continue
                assert any(target.startswith(p.removesuffix(".py")) for p in PROBE_SIDE), f"{rel}: {module}"


def test_few_loose_modules_and_small_ones():
    loose = [p.name for p in PACKAGE.glob("*.py")]
    assert len(loose) <= 10, loose
    parts = [p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert len(parts) >= 3
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        limit = 600 if path.name == "probe.py" else 400
        assert lines <= limit, f"{path.relative_to(PACKAGE)}: {lines} lines (limit {limit})"


def test_only_the_cli_and_publish_read_check():
    readers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.parent.name not in ("publish", "check") and p.name != "cli.py"
               and any(m.startswith("matrix.check") for m, _ in imported_modules(p))]
    assert not readers
