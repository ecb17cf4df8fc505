"""The package's import structure: one-way floors (docs/contributing.md).

Read from the source (``ast``), so a rule broken in any module fails here whether or not
a test imports it."""

import ast
import functools
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Imported where they are used, because a user may not have them: the extras of
# pyproject.toml, what torch or scikit-learn bring or not, a runtime on a target.
OPTIONAL = {"onnx", "onnxruntime", "openvino", "tensorrt", "torchvision", "timm",
            "torch_pruning", "PIL", "sklearn", "threadpoolctl", "torch.utils.tensorboard"}
# The command line imports the library inside its commands, so that building the parser
# never waits for torch (aows/cli/__init__.py); the remote runner runs on a target with
# only Python, and reports what is missing there (aows/latency/remote_runner.py).
LAZY_MODULES = ("aows.cli", "aows.latency.remote_runner")
# docs/contributing.md's floors, top first: a module imports from its floor and below
FLOORS = [
    ["aows.cli"],
    ["aows.pipeline", "aows.config", "aows.report", "aows.demo"],
    ["aows.refine", "aows.train"],
    ["aows.final", "aows.solve"],
    ["aows.latency"],
    ["aows.catalogue", "aows.model_code", "aows.presets"],
    ["aows.extract", "aows.nn", "aows.models", "aows.importance", "aows.onnx_export"],
    ["aows.space", "aows.terms", "aows.graph", "aows.chain", "aows.brute", "aows.spaces",
     "aows.size"],
    ["aows", "aows.io", "aows.errors", "aows.log", "aows.lock", "aows.registry",
     "aows.settings", "aows.defaults", "aows.threads", "aows.outputs", "aows.plots"],
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / "aows").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, mods: dict) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) of every import run at some point
    (imports under ``if TYPE_CHECKING:`` never run)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([child.module] if child.module else []))
                for a in child.names:  # `from pkg import module` imports that module
                    sub = f"{base}.{a.name}"
                    found.append((sub if sub in mods else base, child.lineno, in_function))
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


@functools.cache  # read once for the tests below
def _graph():
    mods = _modules()
    return mods, {m: _imports(m, p, mods) for m, p in mods.items()}


def test_no_import_circle():
    mods, imports = _graph()
    edges = {m: sorted({t for t, _, _ in imports[m] if t in mods and t != m}) for m in mods}
    state, path = {}, []

    def visit(m):  # depth-first; a module met again on the current path closes a circle
        state[m] = "open"
        path.append(m)
        for t in edges[m]:
            if state.get(t) == "open":
                raise AssertionError("import circle: " + " -> ".join(
                    path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = "done"

    for m in mods:
        if m not in state:
            visit(m)


def _floor(module: str) -> int | None:
    """Height of ``module``'s floor (0: the ground), by its longest matching prefix."""
    best = None
    for k, prefixes in enumerate(FLOORS):
        for p in prefixes:
            inside = module == p or (p != "aows" and module.startswith(p + "."))
            if inside and (best is None or len(p) > best[0]):
                best = (len(p), len(FLOORS) - 1 - k)
    return None if best is None else best[1]


def test_every_module_imports_from_its_floor_and_below():
    mods, imports = _graph()
    unplaced = [m for m in mods if _floor(m) is None]
    assert not unplaced, f"give these modules a floor in FLOORS: {unplaced}"
    climbs = sorted({f"{m} imports {t}" for m, found in imports.items() for t, _, _ in found
                     if t in mods and _floor(t) > _floor(m)})
    assert not climbs, "imports that climb a floor:\n" + "\n".join(climbs)


def test_imports_at_the_top_except_optional_dependencies():
    mods, imports = _graph()
    bad = []
    for m, found in imports.items():
        if m.startswith(LAZY_MODULES):
            continue
        for target, line, in_function in found:
            optional = any(target == o or target.startswith(o + ".") for o in OPTIONAL)
            if in_function and not optional:
                bad.append(f"{mods[m].relative_to(SRC)}:{line} imports {target}")
    assert not bad, "imports inside functions (move them to the top):\n" + "\n".join(bad)


def _loaded_after(code: str) -> list[str]:
    code += "; print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", "import sys; " + code], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_the_command_line_and_the_width_graph_load_without_torch():
    """``aows --help`` and a mistyped option answer without loading torch; the width graph,
    its solvers and the built-in spaces are plain numpy."""
    assert _loaded_after("import aows, aows.cli; aows.cli.build_parser()") == "[]"
    assert _loaded_after("import aows.space, aows.graph, aows.spaces") == "[]"
