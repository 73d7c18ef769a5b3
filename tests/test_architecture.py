"""The shape of the code: which package may import which, and no module or class grows
past what a reader takes in at once.

The map (README, "For developers"): ``cli`` is the only package that imports Typer;
``inference`` never imports ``training`` or ``cli``; nothing outside ``cli`` imports it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "nmt"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200
SIZE_REASON = "Size:"  # a longer module or class says why in its docstring, after this


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The nmt module an import names (``from nmt.a import b``: nmt.a.b if a module, else nmt.a)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported name, inside a function) for every import of a file, TYPE_CHECKING ones out."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, in_function))
                found.extend((f"{child.module}.{a.name}", in_function) for a in child.names)
            function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, in_function or function)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _nmt_imports(module: str, in_function: bool | None = None) -> set[str]:
    return {
        resolved
        for name, inner in _imports(MODULES[module])
        if (in_function is None or inner == in_function) and (resolved := _resolve(name))
    }


def _reachable(start: str) -> set[str]:
    """Modules that importing ``start`` imports at module level (packages' __init__ too)."""
    parts = start.split(".")
    stack = [".".join(parts[:i]) for i in range(2, len(parts) + 1)]  # nmt.a, then nmt.a.b
    seen: set[str] = set(stack)
    while stack:
        for target in _nmt_imports(stack.pop(), in_function=False):
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # importing nmt.a.b runs nmt.a first
                name = ".".join(parts[:i])
                if name in MODULES and name not in seen:
                    seen.add(name)
                    stack.append(name)
    return seen


def test_the_translation_path_does_not_import_training() -> None:
    code = (
        "import sys, nmt.inference.files, nmt.cli.app; "
        "print(sorted(m for m in sys.modules if m.startswith('nmt.training')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_only_the_cli_imports_typer() -> None:
    users = [m for m, p in MODULES.items() if any(n.startswith("typer") for n, _ in _imports(p))]
    assert users and all(m.startswith("nmt.cli") for m in users), users


def test_inference_imports_neither_training_nor_the_cli() -> None:
    bad = [
        f"{m} -> {t}"
        for m in MODULES
        if m.startswith("nmt.inference")
        for t in _nmt_imports(m)
        if t.startswith(("nmt.training", "nmt.cli"))
    ]
    assert not bad, bad


def test_no_module_is_named_after_the_cli_or_imports_the_cli() -> None:
    named = [m for m in MODULES if "cli" in m.rpartition(".")[2] and not m.startswith("nmt.cli")]
    importers = [
        f"{m} -> {t}"
        for m in MODULES
        if not m.startswith("nmt.cli") and m != "nmt.__main__"  # python -m nmt: the entry point
        for t in _nmt_imports(m)
        if t.startswith("nmt.cli")
    ]
    assert not named and not importers, (named, importers)


def test_only_the_training_package_uses_torch_distributed() -> None:
    users = [
        m
        for m, p in MODULES.items()
        if any(n.startswith("torch.distributed") for n, _ in _imports(p))
    ]
    assert users and all(m.startswith("nmt.training") for m in users), users


def test_no_function_level_import_dodges_a_cycle() -> None:
    """An import inside a function is fine for a heavy or optional dependency, never to
    break a cycle: moved to the top of its module, it must not import that module back."""
    dodges = [
        f"{m} imports {t} in a function"
        for m in MODULES
        for t in _nmt_imports(m, in_function=True)
        if t == m or m in _reachable(t)
    ]
    assert not dodges, dodges


def test_modules_and_classes_stay_small() -> None:
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES and SIZE_REASON not in (ast.get_docstring(tree) or ""):
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                reason = SIZE_REASON in (ast.get_docstring(node) or "")
                if length > MAX_CLASS_LINES and not reason:
                    too_long.append(f"{path.relative_to(REPO)}: class {node.name} {length} lines")
    assert not too_long, too_long


def test_the_checks_above_can_fail() -> None:
    """The import walker sees what it must: function-level imports and the cli's typer."""
    assert ("typer", False) in _imports(MODULES["nmt.cli.app"])
    assert any(inner for _, inner in _imports(MODULES["nmt.cli.main"]))
    assert "nmt.inference.translator" in _reachable("nmt.inference.load")
