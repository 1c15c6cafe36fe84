"""The import contract (STYLE.md 1): pure packages never reach for I/O or the gateway.

import-linter checks the same in CI (``lint-imports``); this test walks the source with
``ast`` so that ``pytest`` alone also enforces it, including imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IO_MODULES = {"asyncio", "bleak", "bumble", "aiomqtt", "psycopg", "socket", "gateway"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _pure_modules() -> list[Path]:
    files = sorted((ROOT / "devices").rglob("*.py")) + sorted((ROOT / "processing").rglob("*.py"))
    return [p for p in files if "sim" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("path", _pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io(path: Path) -> None:
    assert _imported_roots(path).isdisjoint(IO_MODULES)


def test_sim_signals_are_pure() -> None:
    for path in sorted((ROOT / "devices" / "sim" / "signals").rglob("*.py")):
        assert _imported_roots(path).isdisjoint(IO_MODULES), path


def test_processing_does_not_import_devices() -> None:
    for path in sorted((ROOT / "processing").rglob("*.py")):
        assert "devices" not in _imported_roots(path), path


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    import asyncio\nfrom bleak.backends import x\n")
    assert {"asyncio", "bleak"} <= _imported_roots(sample)
