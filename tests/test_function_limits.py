"""Every function of the package stays readable: at most 8 parameters (self and cls not
counted, *args and **kwargs counted) and at most 80 lines, decorators and docstring
included (README, "Layout")."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "advjax"
MAX_PARAMETERS, MAX_LINES = 8, 80


def functions():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.name, node


def parameters(node) -> int:
    a = node.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    extra = (a.vararg is not None) + (a.kwarg is not None)
    return len([n for n in names if n not in ("self", "cls")]) + extra


def lines(node) -> int:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return node.end_lineno - first + 1


def test_the_counts_are_right_on_a_known_function():
    [node] = ast.parse("@d\ndef f(self, a, b=1, *c, d, **e):\n    '''x'''\n    return a\n").body
    assert parameters(node) == 5 and lines(node) == 4


@pytest.mark.parametrize("limit", ["parameters", "lines"])
def test_no_function_exceeds_the_limits(limit):
    found = list(functions())
    assert len(found) > 300  # the walk sees the package
    over = [f"{file}:{node.lineno} {node.name}: {parameters(node)} parameters, {lines(node)} lines"
            for file, node in found
            if (parameters(node) > MAX_PARAMETERS if limit == "parameters" else lines(node) > MAX_LINES)]
    assert not over, "\n".join(over)
