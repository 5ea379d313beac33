"""The house rules of docs/architecture.md, checked over every ``import`` statement of the project.

Imports inside functions and under ``TYPE_CHECKING`` count like any other: a circle drawn lazily is
still a circle. Layers (lowest first): ``gateway.core`` imports nothing of ours; ``adapters`` import
the core and themselves; ``simulators`` import the core, themselves and the adapters' device
descriptions; everything else (runtime, sinks, services, CLI) sits above.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "adapters", "simulators", "dashboards")
MAX_LINES = 600
CORE = "gateway.core"
# below the adapters, beside the core: what an adapter may use besides it (they import only the core)
SHARED = ("gateway.video.health", "gateway.video.picture")
# what a simulator may not take from the adapters: the client side (links, adapters, tools), never the
# device descriptions and codecs (profiles, node maps, configs) that drive both sides
CLIENT_SIDE = ("adapter", "link", "client", "tools", "registry", "base")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


class Imports(ast.NodeVisitor):
    """Every project module a file imports, every private name it takes from another module."""

    def __init__(self, name: str, is_package: bool, modules: set[str]):
        self.name, self.modules = name, modules
        self.package = name if is_package else name.rpartition(".")[0]
        self.targets: set[str] = set()
        self.private: list[str] = []
        self.aliases: dict[str, str] = {}  # local name -> project module

    def _resolve(self, module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        base = self.package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def _ours(self, dotted: str) -> str | None:
        while dotted and dotted not in self.modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if target := self._ours(alias.name):
                self.targets.add(target)
                self.aliases[alias.asname or alias.name.split(".")[0]] = target if alias.asname else \
                    alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._resolve(node.module, node.level)
        if not self._ours(base):
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in self.modules:  # ``from gateway import signing``: the submodule
                self.targets.add(sub)
                self.aliases[alias.asname or alias.name] = sub
                continue
            self.targets.add(self._ours(base))
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                self.private.append(f"from {base} import {alias.name} (line {node.lineno})")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in self.aliases:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                self.private.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
        self.generic_visit(node)


def graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    files = sources()
    modules = set(files)
    edges, private = {}, {}
    for name, path in files.items():
        visitor = Imports(name, path.name == "__init__.py", modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        edges[name] = {t for t in visitor.targets if t != name and not name.startswith(t + ".")}
        if visitor.private:
            private[name] = visitor.private
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def allowed(importer: str, target: str) -> bool:
    """The one-way rule: which layer may import which."""
    if importer == CORE or importer.startswith(CORE + "."):
        return target.startswith(CORE)
    if importer in SHARED:
        return target.startswith(CORE) or target in SHARED
    if importer.startswith("adapters"):
        if target in SHARED:
            return True
        if importer in ("adapters", "adapters.registry"):  # the table of adapter kinds knows them all
            return target.startswith(("adapters", CORE))
        return target.startswith(CORE) or target in ("adapters", "adapters.base") or \
            target.split(".")[:2] == importer.split(".")[:2]
    if importer.startswith("simulators"):
        return target.startswith(("simulators", CORE)) or target == "adapters" or (
            target.startswith("adapters.") and target.rpartition(".")[2] not in CLIENT_SIDE)
    return True


def test_no_import_circles():
    edges, _ = graph()
    assert cycles(edges) == []


def test_no_module_takes_another_modules_private_names():
    _, private = graph()
    assert private == {}


def test_imports_run_one_way():
    edges, _ = graph()
    wrong = sorted(f"{importer} -> {target}" for importer, targets in edges.items() for target in targets
                   if not allowed(importer, target))
    assert wrong == []


def test_no_source_file_outside_tests_is_over_600_lines():
    # not under hidden folders (.venv, .cache: Node-RED's node_modules hold Python files of their own)
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if not any(part.startswith(".") for part in p.relative_to(ROOT).parts) and "tests" not in p.parts
            and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checker_sees_a_circle_a_private_name_and_a_wrong_way_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    visitor = Imports("gateway.x", False, {"gateway", "gateway.x", "gateway.y"})
    visitor.visit(ast.parse("def f():\n    from gateway.y import _hidden\n    from . import y\n    y._z()\n"))
    assert visitor.targets == {"gateway.y"}
    assert visitor.private == ["from gateway.y import _hidden (line 2)", "y._z (line 4)"]
    assert not allowed("adapters.modbus.adapter", "gateway.runtime")
    assert not allowed("adapters.modbus.adapter", "adapters.opcua.nodemap")
    assert allowed("simulators.opcua.server", "adapters.opcua.nodemap")
    assert not allowed("simulators.site", "gateway.config")
    assert not allowed("gateway.core.model", "gateway.config")
    assert allowed("adapters.onvif.adapter", "gateway.video.health")
    assert not allowed("gateway.video.health", "gateway.runtime")
