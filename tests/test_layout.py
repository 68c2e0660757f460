"""The package's shape: its modules' imports of each other (lazy ones included) form no
circle, and no module imports another module's private names. Read from the source with
`ast`, so it runs in the fast tier."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("openrlhf_reward", "weval_tasks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p))
            for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The project modules a module imports, lazily inside functions too: a lazy import of
    our own light module is how a circle hides (checks -> ifeval -> checks did)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import submodule`
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out & known


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_imports_form_no_circle():
    modules = _modules()
    known = set(modules)
    # an edge to one's own package (its __init__) is how Python imports any submodule: not a circle
    graph = {name: sorted(_imports(tree, known) - {name} - _ancestors(name))
             for name, tree in modules.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    known = set(modules)
    offenders = []
    for name, tree in modules.items():
        for node in ast.walk(tree):  # lazy imports too
            if isinstance(node, ast.ImportFrom) and node.module in known and node.module != name:
                offenders += [f"{name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, offenders


def test_the_circle_check_has_teeth(tmp_path, monkeypatch):
    """Two modules that import each other, one of them lazily, are reported."""
    pkg = tmp_path / "openrlhf_reward"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from openrlhf_reward.b import x\n")
    (pkg / "b.py").write_text("x = 1\n\ndef f():\n    from openrlhf_reward import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGES", ("openrlhf_reward",))
    with pytest.raises(pytest.fail.Exception, match="import circle: openrlhf_reward.a -> openrlhf_reward.b"):
        test_imports_form_no_circle()
