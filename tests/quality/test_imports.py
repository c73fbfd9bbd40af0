"""The package's import graph: no module imports one that imports it back, and the layers
import only downwards (cli → service → cache → config → engine → core; the client apart).

The graph is read from the source with ``ast``, counting every import, the ones inside
functions too: a lazy import is still a dependency, and a cycle hidden in a function only
fails later, when that function first runs.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "signer"

# Highest first: a layer may import those after it, never one before it.
LAYERS = ("cli", "service", "cache", "config", "engine", "core")
APART = "client"  # installed by app servers: stands on its own


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is it a package's __init__)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports.

    ``from a.b import c`` depends on ``a.b.c`` if that is a module, else on ``a.b``. The
    parents Python imports on the way (``a`` for ``a.b``) are not counted: every module
    depends on its package's ``__init__`` that way, and that is no design choice."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    child = f"{source}.{alias.name}"
                    imported.add(child if child in modules else source)
        graph[name] = {target for target in imported if target in modules and target != name}
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


class TestImportGraph:
    def test_the_graph_sees_the_package(self) -> None:
        """The walk finds the modules and their imports, lazy ones included (a test of the
        test: an empty graph would pass everything below)."""
        graph = import_graph()
        assert {"signer.config", "signer.service.logs"} <= graph["signer.service.supervisor"]
        assert "signer.engine.worker" in graph["signer.service.supervisor"]  # in a function

    def test_no_module_imports_itself_back(self) -> None:
        """No cycle, however long, through any import (top-level or inside a function)."""
        try:
            graphlib.TopologicalSorter(import_graph()).prepare()
        except graphlib.CycleError as error:
            pytest.fail("import cycle: " + " -> ".join(error.args[1]))

    def test_layers_import_only_downwards(self) -> None:
        """cli → service → cache → config → engine → core: none imports a layer above it,
        the client imports no other layer, and no layer but the command line imports the
        client."""
        wrong = []
        for module, imported in import_graph().items():
            source = _layer(module)
            for target in imported:
                layer = _layer(target)
                if layer in ("", source):  # the package root (__version__) or the same layer
                    continue
                upwards = (
                    source in LAYERS
                    and layer in LAYERS
                    and LAYERS.index(layer) < LAYERS.index(source)
                )
                if upwards or source == APART or (layer == APART and source != "cli"):
                    wrong.append(f"{module} -> {target}")
        assert wrong == []
