"""The house rules of src/bertforge, read from the source with `ast` (README, "Layout").

Layers only point down: a module may import its own layer and the layers below it, never one
above, and no chain of imports (inside functions included) may come back to where it started.
Imports inside functions are for the app layer only (the CLI keeps `--help` and error paths fast
by importing torch-heavy stages late); everywhere else they hid cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bertforge"

# The layer order written in the README's Layout section, bottom first. A name is a module or a
# package (all of its modules), relative to `bertforge`.
LAYERS = [
    ("base", ["errors", "files", "config", "runtime", "console", "finite", "fastops", "folders"]),
    ("parts", ["model", "tokenizer", "corpus", "checkpoint"]),
    ("data", ["masking", "templates", "pairs", "hf.keys"]),
    ("stages", ["shards", "evaluate", "infer", "generation", "hf.importer"]),
    ("training", ["budget", "train", "finetune"]),
    ("interop", ["hf.exporter", "hf.card"]),
    ("api", ["api"]),
    ("app", ["cli", "serve", "report", "viz", "plots", "chat", "demo", "bench", "__main__", "hf"]),
]
APP = len(LAYERS) - 1
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of the longest layer name that is `module` or a package above it."""
    best, best_len = None, -1
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = index, len(name)
    if best is None:
        raise AssertionError(f"bertforge.{module} is in no layer: add it to LAYERS here and to the README's Layout")
    return best


class Import:
    def __init__(self, target: str, names: list[str], line: int, in_function: bool):
        self.target, self.names, self.line, self.in_function = target, names, line, in_function


def imports_of(module: str) -> list[Import]:
    """Every `bertforge` import of a module, resolved to a module name (without `bertforge.`)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                found.extend(resolve_from(child, package, inside))
            elif isinstance(child, ast.Import):
                found.extend(
                    Import(a.name.removeprefix("bertforge").lstrip("."), [], child.lineno, inside)
                    for a in child.names if a.name.split(".")[0] == "bertforge"
                )
            visit(child, inside)

    visit(tree, False)
    return found


def resolve_from(node: ast.ImportFrom, package: list[str], in_function: bool) -> list[Import]:
    if node.level:
        base = package[: len(package) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    elif node.module and node.module.split(".")[0] == "bertforge":
        target = node.module.removeprefix("bertforge").lstrip(".")
    else:
        return []
    names = [a.name for a in node.names]
    # `from . import files` / `from .train import distributed` import modules: point at them
    submodules = [f"{target}.{n}".lstrip(".") for n in names if f"{target}.{n}".lstrip(".") in MODULES]
    if submodules:
        return [Import(m, [], node.lineno, in_function) for m in submodules]
    return [Import(target, names, node.lineno, in_function)]


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        if module:
            layer_of(module)


def test_imports_point_down():
    upward = []
    for module, imports in GRAPH.items():
        if not module:
            continue  # bertforge/__init__.py: lazy re-exports of the API (PEP 562), not imports
        for imp in imports:
            if imp.target and layer_of(imp.target) > layer_of(module):
                upward.append(
                    f"bertforge.{module} ({LAYERS[layer_of(module)][0]}) line {imp.line} imports "
                    f"bertforge.{imp.target} ({LAYERS[layer_of(imp.target)][0]})"
                )
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    graph = {m: {i.target for i in imports if i.target != m} for m, imports in GRAPH.items() if m}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(f"bertforge.{m}" for m in cycle)


def test_find_cycle_finds_one():
    """The checker itself: a cycle hidden two steps deep is found, a diamond is not a cycle."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
    assert layer_of("train.loop") == layer_of("finetune") > layer_of("shards") > layer_of("model")


def test_imports_inside_functions_only_in_the_app_layer():
    """Elsewhere an import inside a function hides a dependency (it hid a 10-module cycle)."""
    hidden = [
        f"bertforge.{m} line {i.line}: bertforge.{i.target}"
        for m, imports in GRAPH.items() if m and layer_of(m) != APP
        for i in imports if i.in_function
    ]
    assert not hidden, "imports inside functions below the app layer:\n" + "\n".join(hidden)


def test_no_private_name_imported_from_another_module():
    private = [
        f"bertforge.{m} line {i.line}: {name} from bertforge.{i.target}"
        for m, imports in GRAPH.items() for i in imports
        for name in i.names if name.startswith("_") and not name.startswith("__") and i.target != m
    ]
    assert not private, "private names used across modules:\n" + "\n".join(private)


def test_functions_are_short():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"bertforge.{module}.{node.name}: {length} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_readme_layout_names_every_layer(layer):
    readme = (SRC.parents[1] / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    assert layer in layout.split("\n## ")[0]
