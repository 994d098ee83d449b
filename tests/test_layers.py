"""The floors of docs/architecture.md, kept by walking every import of the package (ast).

An import may only go down (or stay on its own floor), and no two modules may import each other,
directly or through others: function-local imports count too. There are no exemptions; a new module
must be given a floor here (and in docs/architecture.md) before it can import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vdiag"

# top to bottom; each floor lists the first name under vdiag/ (a subpackage or a top-level module)
FLOORS = (
    ("recipes", "__main__"),
    ("cli",),
    ("demo", "report", "doctor", "api"),
    ("viz",),
    ("diagnostics",),
    ("train",),
    ("methods",),
    ("losses", "koopman", "neighbours"),
    ("data", "models"),
    ("errors", "console", "io", "results", "distributed", "checkpoint", "catalog", "__init__"),
)


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str, package: Path) -> bool:
    base = package.parent / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path, package_dir: Path) -> list[tuple[str, int]]:
    """(imported vdiag module, line) for every import in the file, resolved to modules."""
    module = _module_name(path, package_dir)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:  # `from vdiag import koopman` imports the module vdiag.koopman
                sub = f"{origin}.{alias.name}"
                found.append((sub if _is_module(sub, package_dir) else origin, node.lineno))
    return [(name, line) for name, line in found if name == "vdiag" or name.startswith("vdiag.")]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _floor(module: str) -> int | None:
    for level, names in enumerate(FLOORS):
        if _unit(module) in names:
            return level
    return None


def _graph(package: Path = PACKAGE) -> dict[str, list[tuple[str, int]]]:
    return {_module_name(path, package): _imports(path, package) for path in sorted(package.rglob("*.py"))}


def test_every_module_has_a_floor():
    unplaced = sorted({_unit(m) for m in _graph() if _floor(m) is None})
    assert not unplaced, f"give these a floor in tests/test_layers.py and docs/architecture.md: {unplaced}"


def test_imports_only_go_down():
    upward = []
    for module, imports in _graph().items():
        for target, line in imports:
            if _floor(target) is not None and _floor(module) is not None and _floor(target) < _floor(module):
                upward.append(f"{module}:{line} imports {target} (floor {FLOORS[_floor(target)]} is above {FLOORS[_floor(module)]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _cycles(imports: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    graph = {module: sorted({t for t, _ in found if t != module and t != "vdiag"}) for module, found in imports.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_the_walker_sees_upward_and_cyclic_imports(tmp_path):
    """The checks above can fail: a planted upward import and a planted cycle are found."""
    fake = tmp_path / "vdiag"
    (fake / "losses").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "losses" / "__init__.py").write_text("")
    (fake / "losses" / "x.py").write_text("from vdiag.viz import thing\n")
    (fake / "io.py").write_text("def f():\n    from vdiag import results\n")
    (fake / "results.py").write_text("from vdiag.io import f\n")
    graph = _graph(fake)
    assert ("vdiag.viz", 1) in graph["vdiag.losses.x"]
    assert _floor("vdiag.viz") < _floor("vdiag.losses.x")
    assert _cycles(graph) == [["vdiag.io", "vdiag.results", "vdiag.io"]]
