"""The package's shape, as docs/architecture.md states it: checked, so it does not drift."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_lymphmet"
MAX_MODULE_LINES, MAX_CLASS_LINES = 400, 250

# Layers, lowest first: a module may import its own layer or lower ones, never higher.
LAYERS = [
    {"errors", "io", "figures"},
    {"wsi"},
    {"annotations", "tissue"},
    {"patches", "synthetic"},
    {"model"},
    {"inference"},
    {"evaluation"},
    {"workflows"},
    {"cli", "_napari", "__init__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.relative_to(PACKAGE).parts


def _topic(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py") if len(parts) > 1 or parts[0] != "__init__.py" else "__init__"


def _imports(path: Path, parts: tuple[str, ...]):
    """(topic imported from, names) for each of our own imports, lazy ones included."""
    package = list(parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if not target:  # "from .. import name" at the package root
                names = [a.name for a in node.names]
                yield ("__init__", names) if not all(n in RANK for n in names) else (names[0], [])
                continue
            yield target[0], [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari_lymphmet."):
            yield node.module.split(".")[1], [a.name for a in node.names]


# The only modules outside a topic package: the package's face and the error contract it documents.
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "errors.py"}


def _module_name(parts: tuple[str, ...]) -> str:
    return ".".join(p.removesuffix(".py") for p in parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports (``pkg.__init__`` for a package), lazy and TYPE_CHECKING ones too."""
    modules = {_module_name(parts): path for path, parts in _modules()}
    graph = {}
    for name, path in modules.items():
        package = name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                target = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari_lymphmet"):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                for candidate in (target + [alias.name], target, target + ["__init__"]):
                    if ".".join(candidate) in modules:
                        found.add(".".join(candidate))
                        break
        graph[name] = found - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    """Not even through a lazy import or a TYPE_CHECKING block: two modules that need each other are one idea
    split wrongly, or share a third that deserves its own home."""
    assert _cycles(_import_graph()) == []


def test_every_module_lives_in_a_topic_package():
    loose = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert set(loose) <= TOP_LEVEL_MODULES, set(loose) - TOP_LEVEL_MODULES
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(RANK), f"a package with no layer: {packages - set(RANK)}"


def test_no_module_or_class_too_long_without_a_reason():
    offenders = []
    for path, parts in _modules():
        text = path.read_text()
        tree = ast.parse(text)
        excused = "long because" in (ast.get_docstring(tree) or "")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and not excused:
            offenders.append(f"{'/'.join(parts)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES \
                    and not excused:
                offenders.append(f"{'/'.join(parts)}: class {node.name} {node.end_lineno - node.lineno + 1} lines")
    assert not offenders, offenders


def test_imports_never_run_up_a_layer_nor_reach_into_private_names():
    upward, private = [], []
    for path, parts in _modules():
        here = _topic(parts)
        for topic, names in _imports(path, parts):
            if topic == here:
                continue
            if topic in RANK and RANK[topic] > RANK[here] and not (here == "cli" and topic == "_napari"):
                upward.append(f"{'/'.join(parts)} imports {topic}")
            hidden = [n for n in names if n.startswith("_") and n != "__version__"]
            if hidden:
                private.append(f"{'/'.join(parts)} imports {hidden} from {topic}")
    assert not upward, upward
    assert not private, private


def test_no_private_napari_or_dask_attributes_read():
    """napari's ``_type_string`` and dask's array fields are never read. wsi/pyramid.py alone *sets*
    dask's three fields, as ``Array.__new__`` does (see its docstring for why; test_pyramid guards it)."""
    private = {"_type_string", "_meta", "_chunks", "_name", "_layer_type"}
    found = []
    for path, parts in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private:
                allowed = isinstance(node.ctx, ast.Store) and parts == ("wsi", "pyramid.py")
                if not allowed:
                    found.append(f"{'/'.join(parts)}:{node.lineno} {node.attr}")
    assert not found, found


@pytest.mark.parametrize("module", ["napari_lymphmet", "napari_lymphmet.workflows", "napari_lymphmet.cli",
                                    "napari_lymphmet._napari.widgets.detect"])
def test_importing_loads_no_tensorflow(module):
    code = f"import sys, {module}; assert 'tensorflow' not in sys.modules, 'tensorflow loaded'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_architecture_map_names_every_package_and_module():
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    unnamed = [f"{'/'.join(parts)}" for path, parts in _modules()
               if parts[-1] != "__init__.py" and parts[-1] not in text]
    unnamed += [f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists() and f"{p.name}/" not in text]
    assert not unnamed, f"docs/architecture.md does not name {unnamed}"
