"""The layering of advjax's modules (pyproject.toml's import-linter contract) and its
size limits: no import circle, no module importing more than 8 others of advjax."""

import ast
import os

import pytest

import advjax

PACKAGE = os.path.dirname(advjax.__file__)
ROOT = os.path.dirname(PACKAGE)
MAX_IMPORTS = 8


def advjax_imports(path: str) -> set[str]:
    """The modules of advjax a file imports (anywhere in it, type-checking imports included)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("advjax."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("advjax."))
    return found - {os.path.basename(path)[:-3]}


def test_no_module_imports_more_than_8_others():
    counts = {f: advjax_imports(os.path.join(PACKAGE, f)) for f in sorted(os.listdir(PACKAGE)) if f.endswith(".py")}
    over = {f: sorted(m) for f, m in counts.items() if len(m) > MAX_IMPORTS}
    assert not over, over
    assert advjax_imports(os.path.join(PACKAGE, "engine.py")) >= {"plan", "widths"}  # the count sees imports


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "pyproject.toml")), reason="needs the source tree")
def test_the_import_contract_holds():
    """`lint-imports` with pyproject.toml's layers: every module in a layer, imports only downwards."""
    from importlinter.cli import lint_imports

    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        assert lint_imports(config_filename="pyproject.toml", no_cache=True) == 0
    finally:
        os.chdir(cwd)
