"""The package's import graph has no cycle: no cps_jax module imports, at its top or inside a
function, a module that imports it back."""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cps_jax")


def module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(ROOT))[: -len(".py")].replace(os.sep, ".")
    return rel.removesuffix(".__init__")


def imported(tree: ast.Module, modules: set, package: str) -> set:
    """cps_jax modules imported anywhere in `tree`."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cps_jax"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
    return {m for m in out if m in modules and m != package}


def test_no_import_cycle():
    paths = [
        os.path.join(d, f) for d, _, files in os.walk(ROOT) for f in files if f.endswith(".py")
    ]
    modules = {module_name(p) for p in paths}
    graph = {}
    for p in paths:
        name = module_name(p)
        graph[name] = imported(ast.parse(open(p).read()), modules, name)
    state, cycle = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycle, "import cycles: " + "; ".join(" -> ".join(c) for c in cycle)
