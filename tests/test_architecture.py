"""The shape of the code: translation loads no training code, and no module or class
grows past what a reader takes in at once."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / "nmt"
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 200


def test_the_translation_path_does_not_import_training() -> None:
    code = (
        "import sys, nmt.inference.files, nmt.cli.app; "
        "print(sorted(m for m in sys.modules if m.startswith('nmt.training')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_training_package_uses_torch_distributed() -> None:
    users = [
        p.relative_to(REPO)
        for p in PACKAGE.rglob("*.py")
        if any(n.startswith("torch.distributed") for n in _imports(p))
    ]
    assert users and all(p.parts[:2] == ("nmt", "training") for p in users), users


def test_modules_and_classes_stay_small() -> None:
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    too_long.append(f"{path.relative_to(REPO)}: class {node.name} {length} lines")
    assert not too_long, too_long
