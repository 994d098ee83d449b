"""Every public entry point says what it does: a docstring on each public module-level function and
class of the package, and a `Raises:` section wherever a function raises `VdiagError` itself.

Public means a name without a leading underscore in a module whose own name has none; click command
functions count too (their docstring is the command's help).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vdiag"


def _public_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if not any(part.startswith("_") and part != "__init__.py" for part in path.relative_to(PACKAGE).parts):
            yield path


def _raises_vdiag_error(function: ast.AST) -> bool:
    """A `raise VdiagError(...)` (or a subclass named …Error from vdiag.errors) in the function's own body."""
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue  # nested definitions document themselves
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            name = node.exc.func.id if isinstance(node.exc.func, ast.Name) else getattr(node.exc.func, "attr", "")
            if name in ("VdiagError", "DecodeError"):
                return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def _entry_points():
    for path in _public_modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                yield path.relative_to(PACKAGE.parent), node


def test_public_functions_and_classes_have_docstrings():
    missing = [f"{path}:{node.lineno} {node.name}" for path, node in _entry_points() if not ast.get_docstring(node)]
    assert not missing, f"{len(missing)} public entry points without a docstring:\n" + "\n".join(missing)


def test_functions_that_raise_say_so():
    missing = [
        f"{path}:{node.lineno} {node.name}"
        for path, node in _entry_points()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and _raises_vdiag_error(node)
        and "Raises:" not in (ast.get_docstring(node) or "")
    ]
    assert not missing, f"{len(missing)} public functions raise VdiagError without a `Raises:` section:\n" + "\n".join(missing)
