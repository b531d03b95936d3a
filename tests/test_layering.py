"""The import graph: the shared core imports no component, components import only the core, and
no module imports itself back through a cycle (read from the source, no import side effects)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = {"producer", "streaming", "batch", "serving"}
PACKAGES = COMPONENTS | {"streamrec"}
TREE = PACKAGES | {"bench", "tests"}  # the cycle check covers the whole tree


def _imports(path: Path, package: str, packages: set[str] = PACKAGES) -> set[str]:
    """Modules of our packages imported by `path` (relative imports resolved)."""
    tree, found = ast.parse(path.read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = f"{package}.{node.module}" if node.level else node.module or ""
            if node.level and not node.module:
                found |= {f"{package}.{a.name}" for a in node.names}
            else:
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in packages}


def _graph(packages: set[str] = PACKAGES) -> dict[str, set[str]]:
    modules = {f"{p}.{f.stem}": f for p in packages for f in (ROOT / p).glob("*.py") if f.stem != "__init__"}
    return {
        m: {i for i in _imports(f, m.split(".")[0], packages) if i in modules} for m, f in modules.items()
    }


def test_the_core_imports_no_component_and_components_not_each_other():
    def allowed(m: str, i: str) -> bool:
        home, target = m.split(".")[0], i.split(".")[0]
        return target == home or (home in COMPONENTS and target == "streamrec")

    wrong = [(m, i) for m, deps in _graph().items() for i in deps if not allowed(m, i)]
    assert not wrong, wrong


def test_there_are_no_import_cycles():
    graph, state, cycles = _graph(TREE), {}, []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in graph[m]:
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d) :] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
